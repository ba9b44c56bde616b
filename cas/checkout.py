"""Checkout: make the worktree (or some paths of it) equal to a version.

Two steps, as in ``plan → apply``:

* :func:`plan_checkout` compares the target version, the worktree's base version and
  what is on disk, and decides per path: write, fix metadata only, create a directory,
  delete, or leave alone. A path whose current content is neither in the base version
  nor equal to the target is a *conflict*: checkout refuses (invariant 7) unless forced.
  Paths the target lacks are removed, so the folder is exactly the version; only files
  matched by ``.casignore`` are never touched.
* :func:`apply_checkout` stages every new file under ``.cas/tmp`` (same filesystem),
  taking chunks first from files already in the worktree, then from the local cache,
  then from the remote — planned per pack: a whole pack when most of it is needed,
  otherwise coalesced byte ranges — verifying every chunk before it is written
  (invariant 6). Only when every file is staged does it touch the worktree: delete,
  create directories (never through a symlink, invariant 8), rename staged files into
  place, set modes and mtimes. An interrupted checkout leaves old or new files, never
  halves; a failed fetch leaves the worktree as it was.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import stat
import threading
import time
from collections import defaultdict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from cas._faults import crash_point
from cas.chunking import Chunker
from cas.errors import (
    IntegrityError,
    MissingDataError,
    NoSpaceError,
    PathNotFoundError,
    UnsafePathError,
)
from cas.hashing import hash_bytes
from cas.history import committed_file_ids, flatten_tree
from cas.ids import ObjectId
from cas.index import BlobLocation
from cas.layout import pack_key
from cas.objects import EntryKind, TreeEntry
from cas.paths import split_path
from cas.progress import NoProgress, Progress
from cas.repository import Repository
from cas.worktree import WT_DIR, FileContent, LocalEntry, StatCache, Worktree, read_file_content

log = logging.getLogger(__name__)

# Fetch a whole pack when at least this share of its bytes is needed.
WHOLE_PACK_SHARE = 0.5
# Merge two needed ranges of a pack when the gap between them is at most this.
RANGE_GAP = 1 << 20
_FD_CACHE = 64


@dataclass
class CheckoutPlan:
    """What a checkout will do."""

    target: dict[str, TreeEntry]
    writes: list[str] = field(default_factory=list)
    meta_only: list[str] = field(default_factory=list)
    mkdirs: list[str] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    local: dict[str, LocalEntry] = field(default_factory=dict)
    local_content: dict[str, FileContent] = field(default_factory=dict)

    @property
    def bytes_to_write(self) -> int:
        """Bytes of the files that will be (re)written."""
        return sum(
            self.target[p].size for p in self.writes if self.target[p].kind == EntryKind.FILE
        )


@dataclass(frozen=True, slots=True)
class CheckoutStats:
    """What a checkout did."""

    files_written: int = 0
    files_deleted: int = 0
    files_unchanged: int = 0
    bytes_written: int = 0
    bytes_from_worktree: int = 0
    bytes_from_cache: int = 0
    bytes_fetched: int = 0
    packs_fetched: int = 0
    ranges_fetched: int = 0


def _in_scope(path: str, scopes: tuple[str, ...] | None) -> bool:
    if scopes is None:
        return True
    return any(path == s or path.startswith(s + "/") or s == "" for s in scopes)


def _is_under_scope_parent(path: str, scopes: tuple[str, ...] | None) -> bool:
    """True for the parent directories of a scope (needed to reach it)."""
    return scopes is not None and any(s.startswith(path + "/") for s in scopes)


def local_content(
    wt: Worktree, e: LocalEntry, stat_cache: StatCache, chunker: Chunker
) -> FileContent:
    """A local file's content: from the stat cache, else by reading it."""
    known = stat_cache.lookup(e)
    if known is not None:
        return known
    with open(wt.abspath(e.path), "rb") as f:
        content = read_file_content(f, chunker)
    stat_cache.record(e, content)
    return content


def plan_checkout(
    repo: Repository,
    wt: Worktree,
    target_tree: ObjectId,
    base_tree: ObjectId | None,
    stat_cache: StatCache,
    *,
    paths: Iterable[str] | None = None,
) -> CheckoutPlan:
    """Decide what to write, delete and keep; collect conflicts (does not raise on them)."""
    scopes = None if paths is None else tuple("/".join(split_path(p)) for p in paths)
    target = {
        p: e
        for p, e in flatten_tree(repo, target_tree).items()
        if _in_scope(p, scopes) or _is_under_scope_parent(p, scopes)
    }
    base = (
        {p: e for p, e in flatten_tree(repo, base_tree).items() if _in_scope(p, scopes)}
        if base_tree is not None
        else {}
    )
    local = {
        p: e
        for p, e in wt.scan().items()
        if _in_scope(p, scopes) or _is_under_scope_parent(p, scopes)
    }
    if scopes is not None:
        missing = [s for s in scopes if s and s not in target and s not in base]
        if missing:
            raise PathNotFoundError(missing[0], "the version to check out")
    chunker = Chunker(repo.config.chunker)
    plan = CheckoutPlan(target=target, local=local)

    def content(e: LocalEntry) -> FileContent:
        c = plan.local_content.get(e.path)
        if c is None:
            c = plan.local_content[e.path] = local_content(wt, e, stat_cache, chunker)
        return c

    committed: set[bytes] | None = None

    def clean(e: LocalEntry) -> bool:
        """True when losing the local entry loses nothing: it is in some commit."""
        nonlocal committed
        b = base.get(e.path)
        if b is not None and b.kind == e.kind:
            if e.kind == EntryKind.DIR:
                return True
            if e.kind == EntryKind.SYMLINK and b.target == e.target:
                return True
            if e.kind == EntryKind.FILE and b.size == e.size and content(e).oid == b.oid:
                return True
        if e.kind == EntryKind.DIR:
            return False
        # Not the base version's content: it may still be in another commit (say, a
        # version checked out for these paths only). Only then is it safe to replace.
        if committed is None:
            committed = committed_file_ids(repo)
        if e.kind == EntryKind.SYMLINK:
            return hash_bytes(os.fsencode(e.target)) in committed
        return content(e).oid in committed

    for path in sorted(target.keys() | local.keys()):
        t, lo = target.get(path), local.get(path)
        if t is not None and lo is not None:
            if t.kind == lo.kind == EntryKind.DIR:
                if t.mode != lo.mode and _in_scope(path, scopes):
                    plan.meta_only.append(path)
                continue
            if t.kind == lo.kind == EntryKind.SYMLINK and t.target == lo.target:
                if t.mtime_ns != lo.mtime_ns:
                    plan.meta_only.append(path)
                continue
            if (
                t.kind == lo.kind == EntryKind.FILE
                and t.size == lo.size
                and content(lo).oid == t.oid
            ):
                if t.mode != lo.mode or t.mtime_ns != lo.mtime_ns:
                    plan.meta_only.append(path)
                continue
            if not clean(lo):
                plan.conflicts.append(path)
            if lo.kind == EntryKind.DIR or t.kind == EntryKind.DIR:
                # A folder replaces a file or link, or the reverse: remove the old first.
                plan.deletes.append(path)
            if t.kind == EntryKind.DIR:
                plan.mkdirs.append(path)
            else:
                plan.writes.append(path)
        elif t is not None:
            (plan.mkdirs if t.kind == EntryKind.DIR else plan.writes).append(path)
        elif lo is not None and _in_scope(path, scopes):
            # The version lacks it: it goes, so that the folder is exactly the version.
            # Content that is in no commit (new work) is a conflict unless forced. A
            # folder is removed only once empty; ignored files (.casignore) keep theirs.
            if lo.kind != EntryKind.DIR and not clean(lo):
                plan.conflicts.append(path)
            plan.deletes.append(path)
    # Files that are not ours to delete but sit inside a directory we must replace.
    doomed_dirs = [p for p in plan.deletes if local[p].kind == EntryKind.DIR]
    for d in doomed_dirs:
        for p in local:
            if p.startswith(d + "/") and p not in plan.deletes and p not in target:
                if not clean(local[p]):
                    plan.conflicts.append(p)
                plan.deletes.append(p)
    for path in plan.writes:
        e = local.get(path)
        if e is not None and e.kind == EntryKind.FILE:
            content(e)  # its chunks are the best source for its new version
    _validate_parents(wt, plan)
    return plan


def _validate_parents(wt: Worktree, plan: CheckoutPlan) -> None:
    """Refuse, before anything changes, to write below anything but a real folder.

    A parent that is a symlink or a file must be one the plan deletes first; a parent
    the scan did not see (ignored) must be a real directory or absent (invariant 8).
    """
    doomed = set(plan.deletes)
    checked: set[str] = set()
    for path in [*plan.writes, *plan.mkdirs]:
        parts = path.split("/")[:-1]
        for i in range(len(parts)):
            parent = "/".join(parts[: i + 1])
            if parent in checked:
                continue
            checked.add(parent)
            lo = plan.local.get(parent)
            if lo is not None:
                if lo.kind != EntryKind.DIR and parent not in doomed:
                    raise UnsafePathError(
                        path, f"{parent} is a {lo.kind.name.lower()}, not a folder"
                    )
                continue
            try:
                st = os.lstat(wt.abspath(parent))
            except FileNotFoundError:
                continue
            if not stat.S_ISDIR(st.st_mode):
                raise UnsafePathError(
                    path, f"{parent} is not a folder; refusing to write through it"
                )


class _Stager:
    """Writes staged files under ``.cas/tmp`` with positional writes."""

    def __init__(self, wt: Worktree, plan: CheckoutPlan) -> None:
        self.dir = wt.meta / "tmp"
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        self.paths: dict[str, Path] = {}
        self._fds: dict[str, list[int]] = {}  # path → [fd, writers using it]
        self._lock = threading.Lock()
        for i, p in enumerate(plan.writes):
            t = plan.target[p]
            tmp = self.dir / f"{i}"
            self.paths[p] = tmp
            if t.kind == EntryKind.FILE:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                try:
                    os.ftruncate(fd, t.size)
                finally:
                    os.close(fd)
            else:
                os.symlink(t.target, tmp)

    def write(self, path: str, offset: int, data: bytes) -> None:
        fd = self._acquire(path)
        try:
            n = os.pwrite(fd, data, offset)
        finally:
            self._release(path)
        if n != len(data):
            raise OSError(errno.ENOSPC, "short write")

    def _acquire(self, path: str) -> int:
        """An open fd for ``path``, counted as in use until :meth:`_release`."""
        with self._lock:
            slot = self._fds.get(path)
            if slot is None:
                self._close_idle(keep=_FD_CACHE - 1)
                slot = self._fds[path] = [os.open(self.paths[path], os.O_WRONLY), 0]
            slot[1] += 1
            return slot[0]

    def _release(self, path: str) -> None:
        with self._lock:
            self._fds[path][1] -= 1

    def _close_idle(self, keep: int) -> None:
        """Close fds nobody is writing through until at most ``keep`` stay open."""
        for p in [p for p, (_fd, users) in self._fds.items() if users == 0]:
            if len(self._fds) <= keep:
                break
            os.close(self._fds.pop(p)[0])

    def close(self) -> None:
        with self._lock:
            for fd, _users in self._fds.values():
                os.close(fd)
            self._fds.clear()

    def discard(self) -> None:
        self.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def apply_checkout(
    repo: Repository,
    wt: Worktree,
    plan: CheckoutPlan,
    stat_cache: StatCache,
    *,
    progress: Progress | None = None,
    workers: int = 4,
) -> CheckoutStats:
    """Carry out a plan (conflicts must have been dealt with by the caller)."""
    progress = progress or NoProgress()
    # chunk id → destinations (path, offset)
    needed: dict[bytes, list[tuple[str, int]]] = defaultdict(list)
    sizes: dict[bytes, int] = {}
    for path in plan.writes:
        t = plan.target[path]
        if t.kind != EntryKind.FILE:
            continue
        off = 0
        for c in t.chunks:
            needed[c.chunk_id].append((path, off))
            sizes[c.chunk_id] = c.size
            off += c.size
    stager = _Stager(wt, plan)
    counters: dict[str, int] = defaultdict(int)
    progress.start(plan.bytes_to_write, "B", "checkout")
    try:
        try:
            remaining = _copy_from_worktree(wt, plan, needed, stager, counters, progress)
            _fetch_remote(repo, remaining, needed, plan, stager, counters, progress, workers)
        finally:
            stager.close()
        crash_point("mid-checkout")
        _put_in_place(wt, plan, stager)
    except OSError as exc:
        stager.discard()
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise NoSpaceError(
                f"no space left in {wt.root} while writing the checkout; "
                "the worktree was left as it was",
            ) from exc
        raise
    except BaseException:
        stager.discard()
        raise
    finally:
        progress.finish()
    stager.discard()
    seen_ns = time.time_ns()
    for path in [*plan.writes, *plan.meta_only]:
        t = plan.target[path]
        if t.kind != EntryKind.FILE:
            continue
        with contextlib.suppress(FileNotFoundError):
            st = os.lstat(wt.abspath(path))
            stat_cache.record(
                LocalEntry(
                    path,
                    EntryKind.FILE,
                    stat.S_IMODE(st.st_mode),
                    st.st_size,
                    st.st_mtime_ns,
                    st.st_ino,
                    st.st_ctime_ns,
                    seen_ns=seen_ns,
                ),
                FileContent(t.oid, t.chunks),
            )
    for path in plan.deletes:
        stat_cache.rows.pop(path, None)
    return CheckoutStats(
        files_written=len(plan.writes),
        files_deleted=len(plan.deletes),
        files_unchanged=sum(1 for e in plan.target.values() if e.kind != EntryKind.DIR)
        - len(plan.writes),
        bytes_written=plan.bytes_to_write,
        bytes_from_worktree=counters["worktree"],
        bytes_from_cache=counters["cache"],
        bytes_fetched=counters["fetched"],
        packs_fetched=counters["packs"],
        ranges_fetched=counters["ranges"],
    )


def _copy_from_worktree(
    wt: Worktree,
    plan: CheckoutPlan,
    needed: dict[bytes, list[tuple[str, int]]],
    stager: _Stager,
    counters: dict[str, int],
    progress: Progress,
) -> set[bytes]:
    """Copy chunks that files in the worktree already hold; return the rest."""
    sources: dict[bytes, tuple[str, int, int]] = {}
    for path, c in plan.local_content.items():
        off = 0
        for ch in c.chunks:
            if ch.chunk_id in needed and ch.chunk_id not in sources:
                sources[ch.chunk_id] = (path, off, ch.size)
            off += ch.size
    remaining = set(needed)
    by_file: dict[str, list[tuple[bytes, int, int]]] = defaultdict(list)
    for cid, (path, off, size) in sources.items():
        by_file[path].append((cid, off, size))
    for path, items in by_file.items():
        try:
            fd = os.open(wt.abspath(path), os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            for cid, off, size in sorted(items, key=lambda x: x[1]):
                data = os.pread(fd, size, off)
                if len(data) != size or hash_bytes(data) != cid:
                    continue  # changed since it was hashed: fetch instead
                for dest, doff in needed[cid]:
                    stager.write(dest, doff, data)
                    progress.advance(size)
                    counters["worktree"] += size
                remaining.discard(cid)
        finally:
            os.close(fd)
    return remaining


def _coalesce(
    locs: list[tuple[bytes, BlobLocation]],
) -> list[tuple[int, int, list[tuple[bytes, BlobLocation]]]]:
    """Group a pack's needed blobs into ranges ``(start, end, blobs)``."""
    groups: list[tuple[int, int, list[tuple[bytes, BlobLocation]]]] = []
    for cid, loc in sorted(locs, key=lambda x: x[1].offset):
        end = loc.offset + loc.stored_len
        if groups and loc.offset - groups[-1][1] <= RANGE_GAP:
            start, _old_end, blobs = groups[-1]
            blobs.append((cid, loc))
            groups[-1] = (start, max(end, _old_end), blobs)
        else:
            groups.append((loc.offset, end, [(cid, loc)]))
    return groups


def _fetch_remote(
    repo: Repository,
    remaining: set[bytes],
    needed: dict[bytes, list[tuple[str, int]]],
    plan: CheckoutPlan,
    stager: _Stager,
    counters: dict[str, int],
    progress: Progress,
    workers: int,
) -> None:
    """Fetch the chunks no local file has: per pack, whole or in coalesced ranges."""
    if not remaining:
        return
    index = repo.load_index()
    if any(cid not in index for cid in remaining):
        index = repo.load_index(refresh=True)  # another writer may have committed since
    by_pack: dict[ObjectId, list[tuple[bytes, BlobLocation]]] = defaultdict(list)
    for cid in remaining:
        loc = index.lookup(cid)
        if loc is None:
            files = sorted({p for p, _o in needed[cid]})
            raise MissingDataError(
                f"chunk {cid.hex()} of {', '.join(files[:3])} is in no indexed pack; "
                "nothing in the worktree was changed"
            )
        by_pack[loc.pack_id].append((cid, loc))
    lock = threading.Lock()

    def deliver(cid: bytes, loc: BlobLocation, stored: bytes) -> None:
        try:
            raw = repo.decode_blob(ObjectId(cid), loc.codec, loc.raw_len, stored, loc.pack_id)
        except IntegrityError as exc:
            files = sorted({p for p, _o in needed[cid]})
            raise IntegrityError(
                f"{exc}; it belongs to {', '.join(files[:3])}"
                + (f" and {len(files) - 3} more" if len(files) > 3 else "")
                + "; nothing in the worktree was changed",
            ) from exc
        for dest, doff in needed[cid]:
            stager.write(dest, doff, raw)
            progress.advance(len(raw))

    def fetch_pack(pack_id: ObjectId, locs: list[tuple[bytes, BlobLocation]]) -> None:
        key = pack_key(pack_id)
        size = index.pack_size(pack_id) or 0
        want = sum(loc.stored_len for _c, loc in locs)
        if repo.cache.has(key):
            repo.cache.touch(key)
            for cid, loc in locs:
                stored = repo.read_pack_range(pack_id, loc.offset, loc.stored_len)
                try:
                    deliver(cid, loc, stored)
                except IntegrityError:
                    repo.cache.evict(key)  # damaged cached copy: retry from the remote
                    stored = repo.backend.read_range(key, loc.offset, loc.stored_len)
                    deliver(cid, loc, stored)
                with lock:
                    counters["cache"] += loc.raw_len
            return
        if size and want >= WHOLE_PACK_SHARE * size:
            data, _intact = repo.fetch_pack(pack_id)
            for cid, loc in locs:
                deliver(cid, loc, data[loc.offset : loc.offset + loc.stored_len])
            with lock:
                counters["fetched"] += len(data)
                counters["packs"] += 1
            return
        for start, end, blobs in _coalesce(locs):
            data = repo.backend.read_range(key, start, end - start)
            for cid, loc in blobs:
                deliver(cid, loc, data[loc.offset - start : loc.offset - start + loc.stored_len])
            with lock:
                counters["fetched"] += len(data)
                counters["ranges"] += 1

    with ThreadPoolExecutor(max(1, workers), thread_name_prefix="cas-fetch") as pool:
        futures = [pool.submit(fetch_pack, pid, locs) for pid, locs in by_pack.items()]
        try:
            for fut in futures:
                fut.result()
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise


def _check_dir_chain(root: Path, path: str, verified: set[str]) -> None:
    """Raise unless every parent of ``path`` inside ``root`` is a real directory."""
    parts = path.split("/")[:-1]
    for i in range(len(parts)):
        sub = "/".join(parts[: i + 1])
        if sub in verified:
            continue
        try:
            st = os.lstat(root / sub)
        except FileNotFoundError:
            return
        if not stat.S_ISDIR(st.st_mode):
            raise UnsafePathError(
                path, f"{sub} is not a directory (a symlink?); refusing to write through it"
            )
        verified.add(sub)


def _remove(path: Path) -> None:
    st = os.lstat(path)
    if stat.S_ISDIR(st.st_mode):
        os.rmdir(path)
    else:
        os.unlink(path)


def _put_in_place(wt: Worktree, plan: CheckoutPlan, stager: _Stager) -> None:
    root = wt.root
    verified: set[str] = set()
    crash_point("before-checkout-delete")
    # Deepest first, so a folder is empty by the time it is removed.
    for path in sorted(plan.deletes, key=lambda p: p.count("/"), reverse=True):
        with contextlib.suppress(FileNotFoundError):
            try:
                _remove(root / path)
            except OSError as exc:
                if exc.errno != errno.ENOTEMPTY:
                    raise
                log.warning("kept folder %s: it holds files ignored by .casignore", path)
    for path in sorted(plan.mkdirs, key=lambda p: p.count("/")):
        _check_dir_chain(root, path + "/x", verified)
        p = root / path
        with contextlib.suppress(FileExistsError):
            os.mkdir(p, 0o700)
        st = os.lstat(p)
        if not stat.S_ISDIR(st.st_mode):
            raise UnsafePathError(path, "exists and is not a directory")
    half = len(plan.writes) // 2
    for i, path in enumerate(plan.writes):
        if i == half:
            crash_point("mid-checkout-rename")
        if path.split("/")[0] == WT_DIR:
            raise UnsafePathError(path, "reserved for cas's own metadata")
        _check_dir_chain(root, path, verified)
        parent = (root / path).parent
        parent.mkdir(parents=True, exist_ok=True)
        _check_dir_chain(root, path, verified)
        t = plan.target[path]
        tmp = stager.paths[path]
        if t.kind == EntryKind.FILE:
            os.chmod(tmp, t.mode)
            os.utime(tmp, ns=(t.mtime_ns, t.mtime_ns))
        else:
            with contextlib.suppress(OSError):
                os.utime(tmp, ns=(t.mtime_ns, t.mtime_ns), follow_symlinks=False)
        try:
            os.replace(tmp, root / path)
        except IsADirectoryError:
            raise UnsafePathError(path, "a folder holding ignored files is in the way") from None
    for path in plan.meta_only:
        t = plan.target[path]
        if t.kind == EntryKind.FILE:
            os.chmod(root / path, t.mode)
            os.utime(root / path, ns=(t.mtime_ns, t.mtime_ns))
        elif t.kind == EntryKind.SYMLINK:
            with contextlib.suppress(OSError):
                os.utime(root / path, ns=(t.mtime_ns, t.mtime_ns), follow_symlinks=False)
    # Directory modes and mtimes last (writing into a folder changes its mtime).
    dirs = [p for p, e in plan.target.items() if e.kind == EntryKind.DIR]
    for path in sorted(dirs, key=lambda p: p.count("/"), reverse=True):
        t = plan.target[path]
        p = root / path
        with contextlib.suppress(FileNotFoundError):
            os.chmod(p, t.mode)
            os.utime(p, ns=(t.mtime_ns, t.mtime_ns))


__all__ = ["CheckoutPlan", "CheckoutStats", "apply_checkout", "plan_checkout"]
