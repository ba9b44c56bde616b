"""The worktree: the user's asset folder plus the ``.cas`` folder at its root.

``.cas/`` holds only accelerators and pointers, never data (invariant 11)::

    .cas/worktree.json   {"format": 1, "store": <location>}
    .cas/HEAD.json       {"branch": "main" | null, "commit": <hex> | null}
    .cas/statcache       msgpack: path → [size, mtime_ns, ino, ctime_ns, seen_ns, file id,
                         chunk ids, chunk sizes], so an unchanged file is not read again
    .cas/lock            flock'ed while a command changes the worktree

Scanning walks the folder without following symlinks, skips ``.cas``, anything matched by
``.casignore`` (gitignore syntax) and cas's own temp files, and yields one
:class:`LocalEntry` per file, directory and symlink.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import msgpack
import pathspec

from cas.chunking import Chunker
from cas.errors import (
    AlreadyExistsError,
    CasError,
    CorruptObjectError,
    LockedError,
    WorktreeNotFoundError,
)
from cas.hashing import StreamHasher, hash_bytes
from cas.ids import ID_SIZE, ObjectId
from cas.objects import ChunkRef, EntryKind
from cas.paths import join_path

log = logging.getLogger(__name__)

WT_DIR = ".cas"
IGNORE_FILE = ".casignore"
TEMP_MARK = ".cas-tmp-"
WORKTREE_FORMAT = 1
# "Racy clean": a file whose ctime or mtime is within one timestamp tick of the moment
# its stat was taken may have changed again in that same tick, invisibly. Such entries are
# not saved in the stat cache. Ticks are taken as 1 s where the filesystem shows coarse
# (whole-millisecond or coarser) times, else 50 ms (above the kernel's coarse clock).
RACY_FINE_NS = 50_000_000
RACY_COARSE_NS = 1_000_000_000


def is_racy(mtime_ns: int, ctime_ns: int, seen_ns: int) -> bool:
    """True when a stat taken at ``seen_ns`` cannot vouch for the file's content."""
    coarse = mtime_ns % 1_000_000 == 0 and ctime_ns % 1_000_000 == 0
    window = RACY_COARSE_NS if coarse else RACY_FINE_NS
    return max(mtime_ns, ctime_ns) >= seen_ns - window


@dataclass(frozen=True, slots=True)
class LocalEntry:
    """What ``lstat`` says about one path in the worktree."""

    path: str
    kind: EntryKind
    mode: int
    size: int
    mtime_ns: int
    ino: int
    ctime_ns: int
    target: str = ""
    seen_ns: int = 0  # a time no later than the lstat that produced this entry


@dataclass(frozen=True, slots=True)
class FileContent:
    """A file's id (whole-file BLAKE3) and its chunks."""

    oid: ObjectId
    chunks: tuple[ChunkRef, ...]


@dataclass(frozen=True, slots=True)
class WorktreeHead:
    """Which branch (or detached commit) the worktree is on, and its base commit."""

    branch: str | None
    commit: ObjectId | None


def entry_from_stat(
    path: str, st: os.stat_result, target: str = "", seen_ns: int = 0
) -> LocalEntry | None:
    """A :class:`LocalEntry` for a regular file, directory or symlink; None otherwise."""
    if stat.S_ISREG(st.st_mode):
        kind = EntryKind.FILE
    elif stat.S_ISDIR(st.st_mode):
        kind = EntryKind.DIR
    elif stat.S_ISLNK(st.st_mode):
        kind = EntryKind.SYMLINK
    else:
        return None
    size = (
        len(os.fsencode(target))
        if kind == EntryKind.SYMLINK
        else (st.st_size if kind == EntryKind.FILE else 0)
    )
    return LocalEntry(
        path,
        kind,
        stat.S_IMODE(st.st_mode),
        size,
        st.st_mtime_ns,
        st.st_ino,
        st.st_ctime_ns,
        target,
        seen_ns,
    )


def read_file_content(
    f: BinaryIO,
    chunker: Chunker,
    on_chunk: Callable[[ObjectId, memoryview], None] | None = None,
) -> FileContent:
    """Chunk and hash an open file; call ``on_chunk(id, bytes)`` for every chunk.

    Memory stays bounded by the chunker's buffer whatever the file's size.
    """
    whole = StreamHasher()
    chunks: list[ChunkRef] = []
    for view in chunker.iter_chunks(f):
        chunk_id = hash_bytes(view)
        whole.update(view)
        chunks.append(ChunkRef(chunk_id, len(view)))
        if on_chunk is not None:
            on_chunk(chunk_id, view)
    return FileContent(whole.digest(), tuple(chunks))


class StatCache:
    """path → (stat fingerprint, content) for files whose content is known."""

    def __init__(
        self, rows: dict[str, tuple[int, int, int, int, int, FileContent]] | None = None
    ) -> None:
        self.rows = rows or {}

    def lookup(self, e: LocalEntry) -> FileContent | None:
        """The content recorded for ``e`` if its fingerprint is unchanged."""
        row = self.rows.get(e.path)
        if row is None or row[:4] != (e.size, e.mtime_ns, e.ino, e.ctime_ns):
            return None
        return row[5]

    def record(self, e: LocalEntry, content: FileContent) -> None:
        """Remember ``content`` for the fingerprint of ``e``."""
        self.rows[e.path] = (e.size, e.mtime_ns, e.ino, e.ctime_ns, e.seen_ns, content)

    def encode(self) -> bytes:
        """Bytes for ``.cas/statcache``, without racily clean entries."""
        out = {}
        for path, (size, mtime, ino, ctime, seen, c) in self.rows.items():
            if is_racy(mtime, ctime, seen):
                continue
            # Paths as raw bytes: a Linux file name need not be valid UTF-8.
            out[os.fsencode(path)] = [
                size,
                mtime,
                ino,
                ctime,
                seen,
                bytes(c.oid),
                b"".join(r.chunk_id for r in c.chunks),
                [r.size for r in c.chunks],
            ]
        return msgpack.packb({"v": 3, "rows": out}, use_bin_type=True)  # type: ignore[no-any-return]

    @classmethod
    def decode(cls, data: bytes) -> StatCache:
        """Parse ``.cas/statcache``; a damaged file is an empty cache, never an error."""
        try:
            m = msgpack.unpackb(data, raw=False, strict_map_key=False)
            if m["v"] != 3:
                return cls()
            rows = {}
            for raw_path, (size, mtime, ino, ctime, seen, oid, ids, sizes) in m["rows"].items():
                path = os.fsdecode(raw_path)
                chunks = tuple(
                    ChunkRef(ObjectId(ids[i * ID_SIZE : (i + 1) * ID_SIZE]), s)
                    for i, s in enumerate(sizes)
                )
                rows[path] = (size, mtime, ino, ctime, seen, FileContent(ObjectId(oid), chunks))
            return cls(rows)
        except (ValueError, TypeError, KeyError, AttributeError, msgpack.UnpackException):
            log.warning("stat cache unreadable; files will be read again")
            return cls()


class Worktree:
    """A folder attached to a store."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.meta = root / WT_DIR
        self._excluded: set[str] = set()

    def exclude(self, *paths: Path) -> None:
        """Never scan these folders (the store or the cache, when they sit inside)."""
        for p in paths:
            try:
                rel = p.resolve().relative_to(self.root.resolve())
            except ValueError:
                continue
            if rel.parts:
                self._excluded.add(rel.as_posix())

    # ------------------------------------------------------------------ attach / find

    @classmethod
    def find(cls, start: Path) -> Worktree:
        """The worktree containing ``start`` (searching upward, like git).

        Raises:
            WorktreeNotFoundError: no ``.cas`` folder in ``start`` or a parent.
        """
        start = start.resolve()
        for d in (start, *start.parents):
            if (d / WT_DIR / "worktree.json").is_file():
                return cls(d)
        raise WorktreeNotFoundError(str(start))

    @classmethod
    def create(cls, root: Path, store: str) -> Worktree:
        """Attach ``root`` (created if missing) to ``store``.

        Raises:
            AlreadyExistsError: ``root`` already is a worktree.
        """
        root = root.resolve()
        if (root / WT_DIR / "worktree.json").exists():
            raise AlreadyExistsError(
                f"worktree {root}", hint="it is already attached; use `cas status` there"
            )
        (root / WT_DIR).mkdir(parents=True, exist_ok=True)
        wt = cls(root)
        wt._write_json("worktree.json", {"format": WORKTREE_FORMAT, "store": store})
        wt.write_head(WorktreeHead("main", None))
        return wt

    @property
    def store_location(self) -> str:
        """Where the store is (as given at init/clone)."""
        return str(self._read_json("worktree.json")["store"])

    def _read_json(self, name: str) -> dict[str, object]:
        try:
            with open(self.meta / name, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, ValueError) as exc:
            raise CorruptObjectError(f"worktree file {self.meta / name}", str(exc)) from exc
        if not isinstance(data, dict):
            raise CorruptObjectError(f"worktree file {self.meta / name}", "not a JSON object")
        return data

    def _write_json(self, name: str, data: dict[str, object]) -> None:
        self._write_file(name, json.dumps(data, indent=1, sort_keys=True).encode())

    def _write_file(self, name: str, data: bytes) -> None:
        tmp = self.meta / f"{name}{TEMP_MARK}"
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.meta / name)

    # ------------------------------------------------------------------ HEAD, stat cache

    def read_head(self) -> WorktreeHead:
        """The worktree's branch and base commit."""
        d = self._read_json("HEAD.json")
        branch = d.get("branch")
        commit = d.get("commit")
        try:
            oid = ObjectId.parse(commit) if isinstance(commit, str) else None
        except ValueError as exc:
            raise CorruptObjectError(f"worktree file {self.meta / 'HEAD.json'}", str(exc)) from exc
        return WorktreeHead(branch if isinstance(branch, str) else None, oid)

    def write_head(self, head: WorktreeHead) -> None:
        """Record the worktree's branch and base commit."""
        self._write_json(
            "HEAD.json",
            {"branch": head.branch, "commit": None if head.commit is None else head.commit.hex()},
        )

    def write_pending_commit(self, branch: str, commit: ObjectId) -> None:
        """Record that ``commit`` is about to become the head of ``branch``.

        If the process dies between the ref entry and the update of ``HEAD.json``, the
        next command finds this record and, if the branch does point at ``commit``,
        moves the worktree onto it (:meth:`read_pending_commit`).
        """
        self._write_json("pending-commit.json", {"branch": branch, "commit": commit.hex()})

    def read_pending_commit(self) -> tuple[str, ObjectId] | None:
        """The pending commit record, if a commit was interrupted at its last step."""
        if not (self.meta / "pending-commit.json").exists():
            return None
        try:
            d = self._read_json("pending-commit.json")
            return str(d["branch"]), ObjectId.parse(str(d["commit"]))
        except (CasError, KeyError, ValueError):
            self.clear_pending_commit()
            return None

    def clear_pending_commit(self) -> None:
        """Forget the pending commit record."""
        with contextlib.suppress(FileNotFoundError):
            (self.meta / "pending-commit.json").unlink()

    def load_stat_cache(self) -> StatCache:
        """The stat cache (empty if missing or damaged)."""
        try:
            data = (self.meta / "statcache").read_bytes()
        except OSError:
            return StatCache()
        return StatCache.decode(data)

    def save_stat_cache(self, cache: StatCache) -> None:
        """Persist the stat cache (best effort)."""
        try:
            self._write_file("statcache", cache.encode())
        except OSError as exc:
            log.warning("could not save the stat cache: %s", exc)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the worktree lock (one changing command at a time).

        Raises:
            LockedError: another cas process holds it.
        """
        fd = os.open(self.meta / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise LockedError(
                    f"worktree {self.root} is busy: another cas command is running in it",
                    hint="wait for it to finish, then rerun",
                ) from None
            yield
        finally:
            os.close(fd)

    # ------------------------------------------------------------------ scanning

    def ignore_spec(self) -> pathspec.GitIgnoreSpec:
        """The rules of ``.casignore`` (gitignore syntax)."""
        try:
            lines = (self.root / IGNORE_FILE).read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            lines = []
        except (OSError, UnicodeDecodeError) as exc:
            raise CasError(f"cannot read {self.root / IGNORE_FILE}: {exc}") from exc
        return pathspec.GitIgnoreSpec.from_lines(lines)

    def scan(self, *, under: str = "") -> dict[str, LocalEntry]:
        """Every file, directory and symlink of the worktree (or below ``under``).

        Symlinks are reported as links, never followed. Sockets, FIFOs and devices are
        skipped with a warning.
        """
        spec = self.ignore_spec()
        seen_ns = time.time_ns()
        out: dict[str, LocalEntry] = {}
        stack = [under]
        while stack:
            rel = stack.pop()
            with os.scandir(self.root / rel if rel else self.root) as it:
                dirents = list(it)
            for de in dirents:
                name = de.name
                if (not rel and name == WT_DIR) or TEMP_MARK in name:
                    continue
                path = join_path(rel, name)
                if path in self._excluded:
                    continue
                try:
                    st = de.stat(follow_symlinks=False)
                    target = os.readlink(de.path) if stat.S_ISLNK(st.st_mode) else ""
                except FileNotFoundError:
                    continue
                is_dir = stat.S_ISDIR(st.st_mode)
                if spec.match_file(path + "/" if is_dir else path):
                    continue
                e = entry_from_stat(path, st, target, seen_ns)
                if e is None:
                    log.warning("skipping %s: not a file, directory or symlink", path)
                    continue
                out[path] = e
                if is_dir:
                    stack.append(path)
        return out

    def abspath(self, path: str) -> Path:
        """The absolute path of a worktree-relative path."""
        return self.root / path if path else self.root
