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
import functools
import logging
import os
import secrets
import shutil
import stat
import threading
import time
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, TypeVar

from cas._faults import crash_point
from cas.chunking import Chunker
from cas.compression import CODEC_RAW, decompress
from cas.errors import (
    CorruptObjectError,
    HashMismatchError,
    IntegrityError,
    MissingDataError,
    NoSpaceError,
    ObjectNotFoundError,
    PathNotFoundError,
    UnsafePathError,
)
from cas.hashing import StreamHasher, hash_bytes
from cas.history import committed_file_ids, lookup_path
from cas.ids import ObjectId
from cas.index import BlobLocation
from cas.layout import pack_key
from cas.objects import EntryKind, TreeEntry
from cas.paths import join_path, split_path
from cas.progress import NoProgress, Progress
from cas.repository import Repository
from cas.store.local import filesystem_type
from cas.worktree import (
    RACY_FINE_NS,
    WT_DIR,
    FileContent,
    LocalEntry,
    StatCache,
    Worktree,
    read_path_content,
)

log = logging.getLogger(__name__)

# Fetch a whole pack when at least this share of its bytes is needed.
WHOLE_PACK_SHARE = 0.5
# Merge two needed ranges of a pack when the gap between them is at most this.
RANGE_GAP = 1 << 20
# What a worker reads in one step: a piece of a pack, a cached pack or a worktree file,
# cut at blob boundaries (a larger blob is read alone). With the workers, this bounds the
# bytes in flight (invariant 9).
WINDOW = 4 << 20
# At most this many checkout workers, whatever the store's connections: each holds a
# piece of up to WINDOW and its decoded bytes. On S3 (16 connections) sixteen workers
# peaked at 202 MB restoring the medium preset, eight at 148 MB, and were not slower.
MAX_WORKERS = 8
# A job copying chunks from a worktree file covers at most this span, so that several
# workers share a large file.
_LOCAL_JOB = 4 * WINDOW
# Idle descriptors of staged files written in pieces that stay open between pieces.
_FD_CACHE = 64
# A chunk's destination packed in one int: staged file number << _OFF_BITS | offset.
_OFF_BITS = 48
_OFF_MASK = (1 << _OFF_BITS) - 1
# Staged files are spread over folders of 2**_STAGE_DIR_BITS consecutive files. In one
# folder, the readers creating files at once queued on its lock (a spinning one, which
# burns the other core), and renaming out of a folder of 100k names cost more.
_STAGE_DIR_BITS = 8
_READ_LOCAL = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
# Filesystems whose fallocate(2) reserves blocks natively (elsewhere glibc's
# posix_fallocate would write zeros over the whole file first).
PREALLOCATING_FILESYSTEMS = frozenset(
    {"ext4", "xfs", "btrfs", "f2fs", "tmpfs", "bcachefs", "overlay"}  # overlay: its upper fs
)


@dataclass
class CheckoutPlan:
    """What a checkout will do.

    ``target`` holds the version's entries the checkout acts on: those of ``writes``,
    of ``meta_only`` and every folder (their modes and mtimes are set last); files left
    as they are only count in ``files``.
    """

    target: dict[str, TreeEntry]
    writes: list[str] = field(default_factory=list)
    meta_only: list[str] = field(default_factory=list)
    mkdirs: list[str] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    local_content: dict[str, FileContent] = field(default_factory=dict)
    files: int = 0  # files and symlinks of the version (within the paths checked out)

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
    content = read_path_content(wt.abspath(e.path), chunker, size_hint=e.size)
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
    """Decide what to write, delete and keep; collect conflicts (does not raise on them).

    Folder by folder: each folder's target tree, its base tree (only where it differs
    from the target's) and its listing on disk are compared, and only what the plan
    acts on is kept — the entries to write or fix, the folders, and the disk entries
    written over or deleted. A file already right is looked at (its stat-cache row, or
    its bytes) and forgotten, so planning a switch between two close versions of a
    folder of a million files holds their differences, not a million entries.
    """
    scopes = None if paths is None else tuple("/".join(split_path(p)) for p in paths)
    if scopes is not None:
        missing = [
            s
            for s in scopes
            if s
            and not _has_path(repo, target_tree, s)
            and not (base_tree is not None and _has_path(repo, base_tree, s))
        ]
        if missing:
            raise PathNotFoundError(missing[0], "the version to check out")
    planner = _Planner(repo, wt, stat_cache, scopes)
    planner.walk(target_tree, None if base_tree == target_tree else base_tree)
    plan = planner.plan
    for names in (plan.writes, plan.meta_only, plan.mkdirs, plan.deletes, plan.conflicts):
        names.sort()
    _add_unchanged_sources(plan, stat_cache, planner.kept)
    _validate_parents(wt, plan, planner.kept)
    return plan


class _Planner:
    """The walk of :func:`plan_checkout` and what it keeps."""

    def __init__(
        self, repo: Repository, wt: Worktree, stat_cache: StatCache, scopes: tuple[str, ...] | None
    ) -> None:
        self.repo = repo
        self.wt = wt
        self.stat_cache = stat_cache
        self.scopes = scopes
        self.chunker = Chunker(repo.config.chunker)
        self.plan = CheckoutPlan(target={})
        # The disk entries later steps look at: every folder (parents of what is
        # written), and every file or link that is written over or deleted.
        self.kept: dict[str, LocalEntry] = {}
        self._committed: set[bytes] | None = None

    def walk(self, target_tree: ObjectId, base_tree: ObjectId | None) -> None:
        """Plan every folder, from the root down."""
        listing = self.wt.lister()
        # (folder, its target tree, its base tree where it differs from the target's,
        # whether it is a folder on disk, doomed): a doomed folder is one the plan
        # deletes, with everything in it.
        folders: list[tuple[str, ObjectId | None, ObjectId | None, bool, bool]] = [
            ("", target_tree, base_tree, True, False)
        ]
        while folders:
            folder, t_tree, b_tree, on_disk, doomed = folders.pop()
            targets = self._named(t_tree, folder)
            bases = self._named(b_tree, folder)
            local = listing(folder) if on_disk else {}
            for name in sorted(targets.keys() | local.keys()):
                path = join_path(folder, name)
                if not self._in_view(path):
                    continue
                t, lo, b = targets.get(name), local.get(name), bases.get(name)
                t_sub = t.oid if t is not None and t.kind == EntryKind.DIR else None
                b_sub = b.oid if b is not None and b.kind == EntryKind.DIR else None
                if b is not None and (b == t or not self._in_scope(path)):
                    b = None  # equal to the target's entry, it decides nothing
                deleted = self._entry(path, t, lo, b, doomed)
                lo_dir = lo is not None and lo.kind == EntryKind.DIR
                if t_sub is not None or lo_dir:
                    # A folder on disk that the plan deletes goes with all it holds.
                    folders.append(
                        (
                            path,
                            t_sub,
                            None if b_sub == t_sub else b_sub,
                            lo_dir,
                            doomed or (lo_dir and deleted),
                        )
                    )

    def _named(self, tree_id: ObjectId | None, folder: str) -> dict[str, TreeEntry]:
        if tree_id is None:
            return {}
        return {e.name: e for e in self.repo.load_tree(tree_id, at_root=not folder).entries}

    def _in_scope(self, path: str) -> bool:
        return _in_scope(path, self.scopes)

    def _in_view(self, path: str) -> bool:
        return self.scopes is None or (
            _in_scope(path, self.scopes) or _is_under_scope_parent(path, self.scopes)
        )

    def _entry(
        self,
        path: str,
        t: TreeEntry | None,
        lo: LocalEntry | None,
        b: TreeEntry | None,
        doomed: bool,
    ) -> bool:
        """Plan one path: ``t`` the target's entry, ``lo`` the disk's, ``b`` the base's
        (only where it differs from ``t``). True when the disk entry is deleted."""
        plan = self.plan
        if t is not None:
            if t.kind == EntryKind.DIR:
                plan.target[path] = t
            else:
                plan.files += 1
        if lo is not None and lo.kind == EntryKind.DIR:
            self.kept[path] = lo
        deleted = False
        if t is not None and lo is not None:
            if self._already(path, t, lo):
                return False
            if not self._clean(lo, b):
                plan.conflicts.append(path)
            self.kept[path] = lo
            if lo.kind == EntryKind.DIR or t.kind == EntryKind.DIR:
                # A folder replaces a file or link, or the reverse: remove the old first.
                plan.deletes.append(path)
                deleted = True
            if t.kind != EntryKind.DIR and lo.kind == EntryKind.FILE:
                self._content(lo)  # its chunks are the best source for its new version
        if t is not None:
            if t.kind == EntryKind.DIR:
                if lo is None or lo.kind != EntryKind.DIR:
                    plan.mkdirs.append(path)
            else:
                plan.writes.append(path)
                plan.target[path] = t
        elif lo is not None and (doomed or self._in_scope(path)):
            # The version lacks it: it goes, so that the folder is exactly the version.
            # Content that is in no commit (new work) is a conflict unless forced. A
            # folder is removed only once empty; ignored files (.casignore) keep theirs.
            if lo.kind != EntryKind.DIR and not self._clean(lo, b):
                plan.conflicts.append(path)
            plan.deletes.append(path)
            self.kept[path] = lo
            deleted = True
        return deleted

    def _already(self, path: str, t: TreeEntry, lo: LocalEntry) -> bool:
        """True when the disk entry is what the target wants (its metadata fixed if not)."""
        plan = self.plan
        if t.kind == lo.kind == EntryKind.DIR:
            if t.mode != lo.mode and self._in_scope(path):
                plan.meta_only.append(path)
            return True
        if t.kind == lo.kind == EntryKind.SYMLINK and t.target == lo.target:
            if t.mtime_ns != lo.mtime_ns:
                plan.meta_only.append(path)
                plan.target[path] = t
            return True
        if t.kind == lo.kind == EntryKind.FILE and t.size == lo.size:
            # The stat cache's file id when it vouches for the file: no chunk list built.
            oid = self.stat_cache.known_id(lo)
            if oid is None:
                oid = self._content(lo).oid
            if oid != t.oid:
                return False
            if t.mode != lo.mode or t.mtime_ns != lo.mtime_ns:
                plan.meta_only.append(path)
                plan.target[path] = t
            # Not kept: one content per file of the version would add up. If its chunks
            # are needed elsewhere, _add_unchanged_sources finds them in the stat cache.
            plan.local_content.pop(path, None)
            return True
        return False

    def _content(self, e: LocalEntry) -> FileContent:
        c = self.plan.local_content.get(e.path)
        if c is None:
            c = self.plan.local_content[e.path] = local_content(
                self.wt, e, self.stat_cache, self.chunker
            )
        return c

    def _clean(self, e: LocalEntry, b: TreeEntry | None) -> bool:
        """True when losing the disk entry loses nothing: it is in some commit."""
        if b is not None and b.kind == e.kind:
            if e.kind == EntryKind.DIR:
                return True
            if e.kind == EntryKind.SYMLINK and b.target == e.target:
                return True
            if e.kind == EntryKind.FILE and b.size == e.size and self._content(e).oid == b.oid:
                return True
        if e.kind == EntryKind.DIR:
            return False
        # Not the base version's content: it may still be in another commit (say, a
        # version checked out for these paths only). Only then is it safe to replace.
        if self._committed is None:
            self._committed = committed_file_ids(self.repo)
        if e.kind == EntryKind.SYMLINK:
            return hash_bytes(os.fsencode(e.target)) in self._committed
        return self._content(e).oid in self._committed


def _has_path(repo: Repository, tree_id: ObjectId, path: str) -> bool:
    try:
        lookup_path(repo, tree_id, path, "the version")
    except PathNotFoundError:
        return False
    return True


def _add_unchanged_sources(
    plan: CheckoutPlan, stat_cache: StatCache, local: dict[str, LocalEntry]
) -> None:
    """Add to ``plan.local_content`` files of the worktree that hold chunks the plan
    writes and no other local source has: the stat cache knows which (what it records
    of files left as they are was checked while planning; a row gone stale since only
    costs a fetch, as :meth:`_Staging.copy_local` hashes what it reads). Only files in
    folders the planning walk saw on disk are used."""
    needed: set[bytes] = set()
    for path in plan.writes:
        t = plan.target[path]
        if t.kind == EntryKind.FILE:
            needed.update(c.chunk_id for c in t.chunks)
    for c in plan.local_content.values():
        needed.difference_update(ch.chunk_id for ch in c.chunks)
    if not needed:
        return
    for path, known in stat_cache.holding(needed):
        parent = path.rpartition("/")[0]
        folder = local.get(parent)
        if path in plan.local_content or not (
            parent == "" or (folder is not None and folder.kind == EntryKind.DIR)
        ):
            continue
        plan.local_content[path] = known
        needed.difference_update(ch.chunk_id for ch in known.chunks)
        if not needed:
            return


def _validate_parents(wt: Worktree, plan: CheckoutPlan, local: dict[str, LocalEntry]) -> None:
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
            lo = local.get(parent)
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


class _Stopped(Exception):
    """A worker gives up its job because another one failed (or Ctrl-C)."""


class _Slot:
    """A staged file arriving in pieces: its descriptor (-1 while closed), how many
    workers are writing through it, the bytes still to come, and whether it exists."""

    __slots__ = ("created", "fd", "left", "users")

    def __init__(self, left: int) -> None:
        self.fd = -1
        self.users = 0
        self.left = left
        self.created = False


def _pwrite_all(fd: int, data: bytes | memoryview, offset: int) -> None:
    n = os.pwrite(fd, data, offset)
    if n == len(data):
        return
    view = memoryview(data)
    while n < len(view):
        k = os.pwrite(fd, view[n:], offset + n)
        if k <= 0:
            raise OSError(errno.ENOSPC, "short write")
        n += k


def _size_staged(fd: int, size: int, preallocate: bool) -> None:
    """Give a staged file written in pieces its final length: its blocks reserved where
    the filesystem does that natively, else as a sparse file.

    Reserved blocks matter beyond an early ``ENOSPC``: ext4 (``auto_da_alloc``) writes out
    a file's delayed-allocation blocks when it is renamed over an existing file — seconds
    for a GB-sized weight file replaced in a switch, spent waiting on the disk. A file
    whose blocks were reserved up front has none, so its rename is a bare rename.
    """
    if preallocate:
        try:
            os.posix_fallocate(fd, 0, size)
            return
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL, errno.ENOSYS):
                raise
    os.ftruncate(fd, size)


def _finish(fd: int, t: TreeEntry) -> None:
    """Give a completely written staged file its mode and mtime (through its descriptor)."""
    os.fchmod(fd, t.mode)
    os.utime(fd, ns=(t.mtime_ns, t.mtime_ns))


class _Stager:
    """Staged files under ``.cas/tmp``, each named by its number in ``plan.writes``.

    A file is created at its first write (``O_EXCL``, mode 0600) and finished at its last:
    mode and mtime are set through its descriptor, which is then closed, so putting it in
    place is a bare rename. A file that arrives in one piece (most small files) is
    created, written and finished by one worker, with no shared state. A file that
    arrives in pieces — possibly from several workers at once — is sized to its final
    length when created and shares one descriptor, kept open between pieces (at most
    ``_FD_CACHE`` idle ones, least recently used closed first). Symlinks and empty files
    are made up front.

    The files live in a folder of their own below ``.cas/tmp``, and once :meth:`close` is
    called nothing new is opened: a worker that outlived its checkout (a second Ctrl-C
    while the first one waited for the workers) can never write into a later checkout's
    staged files, nor through a descriptor number that was closed and reused.
    """

    def __init__(self, wt: Worktree, plan: CheckoutPlan) -> None:
        self.dir = wt.meta / "tmp"
        shutil.rmtree(self.dir, ignore_errors=True)
        run = self.dir / secrets.token_hex(4)
        run.mkdir(parents=True)
        self._prefix = f"{run}{os.sep}"
        for k in range((len(plan.writes) >> _STAGE_DIR_BITS) + 1):
            os.mkdir(f"{run}{os.sep}{k}")
        self._closed = False
        self._preallocate = filesystem_type(run) in PREALLOCATING_FILESYSTEMS
        self._writes = plan.writes
        self._target = plan.target
        self._lock = threading.Lock()
        self._slots: dict[int, _Slot] = {}  # files begun in pieces and not finished
        self._idle: OrderedDict[int, None] = OrderedDict()  # slots with an fd, no writer
        self._open = 0  # descriptors held by slots
        self._expected = 0  # files that need writing
        self._finished = 0
        for n, path in enumerate(plan.writes):
            t = plan.target[path]
            if t.kind == EntryKind.SYMLINK:
                os.symlink(t.target, self.path(n))
                with contextlib.suppress(OSError):
                    os.utime(self.path(n), ns=(t.mtime_ns, t.mtime_ns), follow_symlinks=False)
            elif t.size == 0:
                fd = os.open(self.path(n), _CREATE, 0o600)
                try:
                    _finish(fd, t)
                finally:
                    os.close(fd)
            else:
                self._expected += 1

    def path(self, n: int) -> str:
        """Where staged file ``n`` is."""
        return f"{self._prefix}{n >> _STAGE_DIR_BITS}{os.sep}{n}"

    def write(self, n: int, offset: int, data: bytes | memoryview) -> None:
        """Write verified bytes of staged file ``n`` at ``offset``."""
        if self._closed:
            raise _Stopped
        t = self._target[self._writes[n]]
        if offset == 0 and len(data) == t.size:  # the whole file at once
            fd = os.open(self.path(n), _CREATE, 0o600)
            try:
                _pwrite_all(fd, data, 0)
                _finish(fd, t)
            finally:
                os.close(fd)
            with self._lock:
                self._finished += 1
            return
        slot = self._acquire(n, t.size)
        written = 0
        try:
            _pwrite_all(slot.fd, data, offset)
            written = len(data)
        finally:
            last = self._release(n, slot, written)
        if last:
            try:
                _finish(slot.fd, t)
            finally:
                os.close(slot.fd)
            with self._lock:
                self._finished += 1

    def _acquire(self, n: int, size: int) -> _Slot:
        """File ``n``'s slot with an open descriptor, counted as in use."""
        with self._lock:
            if self._closed:
                raise _Stopped
            slot = self._slots.get(n)
            if slot is None:
                slot = self._slots[n] = _Slot(size)
            if slot.fd < 0:
                self._make_room()
                if slot.created:
                    slot.fd = os.open(self.path(n), os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
                else:
                    fd = os.open(self.path(n), _CREATE, 0o600)
                    try:
                        _size_staged(fd, size, self._preallocate)
                    except BaseException:
                        os.close(fd)
                        raise
                    slot.fd, slot.created = fd, True
                self._open += 1
            elif slot.users == 0:
                del self._idle[n]
            slot.users += 1
            return slot

    def _release(self, n: int, slot: _Slot, written: int) -> bool:
        """Count ``written`` bytes; True when they were the file's last (the caller then
        owns the descriptor and finishes the file)."""
        with self._lock:
            slot.users -= 1
            slot.left -= written
            if slot.users:
                return False
            if self._closed:  # the checkout is over: the last user closes the descriptor
                if slot.fd >= 0:
                    os.close(slot.fd)
                    slot.fd = -1
                return False
            if slot.left == 0:
                del self._slots[n]
                self._open -= 1
                return True
            self._idle[n] = None
            return False

    def _make_room(self) -> None:
        """Close idle descriptors, oldest first, until fewer than ``_FD_CACHE`` are open."""
        while self._open >= _FD_CACHE and self._idle:
            m, _ = self._idle.popitem(last=False)
            slot = self._slots[m]
            os.close(slot.fd)
            slot.fd = -1
            self._open -= 1

    def check_complete(self) -> None:
        """Raise unless every staged file was written in full and finished."""
        if self._finished != self._expected or self._slots:
            raise RuntimeError(
                f"checkout staged {self._finished} of {self._expected} files completely; "
                "nothing in the worktree was changed"
            )

    def close(self) -> None:
        """Open nothing more; close the descriptors nobody is writing through (one in use
        is closed by its writer when it is done with it)."""
        with self._lock:
            self._closed = True
            for slot in self._slots.values():
                if slot.fd >= 0 and not slot.users:
                    os.close(slot.fd)
                    slot.fd = -1
            self._idle.clear()

    def discard(self) -> None:
        """Close and remove everything staged."""
        self.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class _Budget:
    """Bytes read and not yet written out, capped: a worker waits before reading more.

    Each worker holds one piece (at most ``WINDOW``, or one larger blob) at a time, so
    with a cap of ``workers × WINDOW`` the wait is only for oversized blobs; the cap makes
    the bound explicit, and ``peak`` shows it held.
    """

    def __init__(self, limit: int, stop: threading.Event) -> None:
        self.limit = limit
        self.used = 0
        self.peak = 0
        self._stop = stop
        self._cond = threading.Condition()

    @contextlib.contextmanager
    def hold(self, n: int) -> Iterator[None]:
        """Count ``n`` bytes as in flight for the duration of the block."""
        with self._cond:
            while self.used and self.used + n > self.limit:
                if self._stop.is_set():
                    raise _Stopped
                self._cond.wait(0.1)
            self.used += n
            self.peak = max(self.peak, self.used)
        try:
            yield
        finally:
            with self._cond:
                self.used -= n
                self._cond.notify_all()


def _new_budget(limit: int, stop: threading.Event) -> _Budget:
    """The budget of one checkout (a seam for tests, which keep it to read ``peak``)."""
    return _Budget(limit, stop)


@dataclass
class _Tally:
    """What one job did."""

    worktree: int = 0
    cache: int = 0
    fetched: int = 0
    packs: int = 0
    ranges: int = 0
    failed: list[bytes] = field(default_factory=list)  # worktree chunks that did not verify


# A run of items of one file or pack, sorted by offset: (offset, length, chunk id, ...).
_Item = TypeVar("_Item", bound=tuple[Any, ...])


def _coalesce(items: list[_Item], gap: int) -> list[tuple[int, int, list[_Item]]]:
    """Group items sorted by offset into ranges ``(start, end, items)``: an item joins the
    previous range when the gap between them is at most ``gap``."""
    groups: list[tuple[int, int, list[_Item]]] = []
    for item in items:
        off, length = item[0], item[1]
        if groups and off - groups[-1][1] <= gap:
            start, end, members = groups[-1]
            members.append(item)
            groups[-1] = (start, max(end, off + length), members)
        else:
            groups.append((off, off + length, [item]))
    return groups


def _pieces(
    items: list[_Item], start: int, end: int, limit: int
) -> Iterator[tuple[int, int, list[_Item]]]:
    """Cut ``[start, end)`` into pieces ``(pos, cut, items inside)`` of at most ``limit``
    bytes, never through an item; an item larger than ``limit`` is a piece of its own.
    Every byte of the span is in some piece (a whole pack is hashed as it streams)."""
    i, pos = 0, start
    while pos < end:
        cut = min(end, pos + limit)
        j = i
        while j < len(items):
            off, length = items[j][0], items[j][1]
            if off >= cut:
                break
            if off + length > cut:
                if off == pos:
                    cut = off + length
                    j += 1
                else:
                    cut = off
                break
            j += 1
        yield pos, cut, items[i:j]
        pos, i = cut, j


def _verified(cid: bytes, loc: BlobLocation, stored: memoryview) -> bytes | memoryview:
    """A blob's raw bytes, checked against its id (invariant 6); a raw blob is not copied.

    Raises:
        IntegrityError: the stored bytes are damaged.
    """
    what = f"chunk {cid.hex()} in pack {loc.pack_id.hex()}"
    if loc.codec == CODEC_RAW:
        if len(stored) != loc.raw_len:
            raise CorruptObjectError(
                what, f"raw chunk of {len(stored)} bytes, expected {loc.raw_len}"
            )
        raw: bytes | memoryview = stored
    else:
        raw = decompress(loc.codec, stored, loc.raw_len, what)
    actual = hash_bytes(raw)
    if actual != cid:
        raise HashMismatchError(what, cid.hex(), actual.hex())
    return raw


def _dest_list(v: int | list[int]) -> Iterable[int]:
    return (v,) if isinstance(v, int) else v


class _Staging:
    """One checkout's staging: which chunk goes where, and the jobs that put it there.

    ``dests`` maps each needed chunk to its destinations, each packed in one int: the
    staged file's number (its index in ``plan.writes``) ``<< _OFF_BITS | offset``.
    Jobs run on a pool of ``workers`` threads; each reads one piece at a time (a budget
    caps the bytes in flight), verifies every chunk in it, and writes it with ``pwrite``
    to each of its destinations. zstd and BLAKE3 release the GIL, so reading, decoding,
    hashing and writing overlap across the workers.
    """

    def __init__(
        self,
        repo: Repository,
        wt: Worktree,
        plan: CheckoutPlan,
        stager: _Stager,
        dests: dict[bytes, int | list[int]],
        progress: Progress,
        workers: int,
    ) -> None:
        self.repo = repo
        self.wt = wt
        self.plan = plan
        self.stager = stager
        self.dests = dests
        self.progress = progress
        self.workers = max(1, workers)
        self.stop = threading.Event()
        self.budget = _new_budget(self.workers * WINDOW, self.stop)
        self.index = repo.load_index()

    # -- writing

    def write(self, cid: bytes, raw: bytes | memoryview) -> int:
        """Write a verified chunk to every destination; return the bytes written."""
        total = 0
        for d in _dest_list(self.dests[cid]):
            self.stager.write(d >> _OFF_BITS, d & _OFF_MASK, raw)
            self.progress.advance(len(raw))
            total += len(raw)
        return total

    def deliver(self, cid: bytes, loc: BlobLocation, stored: memoryview) -> int:
        """Verify a blob from a pack, then write it (or raise, naming its files)."""
        try:
            raw = _verified(cid, loc, stored)
        except IntegrityError as exc:
            raise self._named(cid, exc) from exc
        return self.write(cid, raw)

    def _named(self, cid: bytes, exc: Exception) -> IntegrityError:
        files = self.files_of(cid)
        return IntegrityError(
            f"{exc}; it belongs to {', '.join(files[:3])}"
            + (f" and {len(files) - 3} more" if len(files) > 3 else "")
            + "; nothing in the worktree was changed",
        )

    def files_of(self, cid: bytes) -> list[str]:
        """The paths a chunk is written to, sorted."""
        return sorted({self.plan.writes[d >> _OFF_BITS] for d in _dest_list(self.dests[cid])})

    def check(self) -> None:
        """Give up the current job if another one failed."""
        if self.stop.is_set():
            raise _Stopped

    # -- planning

    def by_pack(self, cids: Iterable[bytes]) -> dict[ObjectId, list[bytes]]:
        """Group chunks by the pack holding them, before anything is fetched.

        Raises:
            MissingDataError: a chunk is in no indexed pack (after re-reading the index).
        """
        cids = list(cids)
        if any(cid not in self.index for cid in cids):
            self.index = self.repo.load_index(refresh=True)  # another writer committed
        groups: dict[ObjectId, list[bytes]] = defaultdict(list)
        for cid in cids:
            loc = self.index.lookup(cid)
            if loc is None:
                raise MissingDataError(
                    f"chunk {cid.hex()} of {self._files_of([cid])} is in no indexed pack; "
                    "nothing in the worktree was changed"
                )
            groups[loc.pack_id].append(cid)
        return groups

    # -- running

    def run(self, jobs: Iterable[Callable[[], _Tally]]) -> list[_Tally]:
        """Run jobs on the pool; the first error stops the rest and is raised."""
        results: list[_Tally] = []
        with ThreadPoolExecutor(self.workers, thread_name_prefix="cas-checkout") as pool:
            pending = {pool.submit(job) for job in jobs}
            try:
                while pending:
                    done, pending = wait(pending, return_when=FIRST_EXCEPTION)
                    results.extend(f.result() for f in done)
            except BaseException:
                self.stop.set()
                for f in pending:
                    f.cancel()
                raise  # leaving the pool waits for the running jobs to stop
        return results

    # -- jobs

    def copy_local(self, path: str, items: list[tuple[int, int, bytes]]) -> _Tally:
        """Copy chunks from a file in the worktree (re-hashed: it may have changed)."""
        t = _Tally()
        self.check()
        try:
            # Non-blocking: what is there now may no longer be a file (say, a FIFO).
            fd = os.open(self.wt.abspath(path), _READ_LOCAL)
        except OSError:
            t.failed = [cid for _o, _l, cid in items]
            return t
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            t.failed = [cid for _o, _l, cid in items]
            return t
        try:
            for start, end, group in _coalesce(items, RANGE_GAP):
                for pos, cut, part in _pieces(group, start, end, WINDOW):
                    if not part:
                        continue
                    self.check()
                    with self.budget.hold(cut - pos):
                        self._use_local(memoryview(os.pread(fd, cut - pos, pos)), pos, part, t)
        finally:
            os.close(fd)
        return t

    def _use_local(
        self, view: memoryview, pos: int, part: list[tuple[int, int, bytes]], t: _Tally
    ) -> None:
        for off, length, cid in part:
            chunk = view[off - pos : off - pos + length]
            if len(chunk) != length or hash_bytes(chunk) != cid:
                t.failed.append(cid)  # changed since it was hashed: fetch it instead
                continue
            t.worktree += self.write(cid, chunk)

    def fetch_pack(self, pack_id: ObjectId, cids: list[bytes]) -> _Tally:
        """Stage a pack's needed chunks: from the cached pack, else the whole pack when
        at least ``WHOLE_PACK_SHARE`` of it is needed, else coalesced ranges."""
        self.check()
        blobs: list[tuple[int, int, bytes, BlobLocation]] = []
        for cid in cids:
            loc = self.index.lookup(cid)
            if loc is None:  # found by by_pack moments ago: the index only grows
                raise MissingDataError(f"chunk {cid.hex()} left the index during checkout")
            blobs.append((loc.offset, loc.stored_len, cid, loc))
        blobs.sort(key=lambda b: b[0])
        key = pack_key(pack_id)
        fd = self.repo.cache.open_read(key)
        if fd is not None:
            self.repo.cache.touch(key)
            try:
                return self._from_cache(key, fd, blobs)
            finally:
                os.close(fd)
        size = self.index.pack_size(pack_id) or 0
        try:
            if size and sum(b[1] for b in blobs) >= WHOLE_PACK_SHARE * size:
                return self._whole(pack_id, key, size, blobs)
            return self._ranges(key, blobs)
        except ObjectNotFoundError as exc:  # indexed, so once stored: lost since
            raise MissingDataError(
                f"pack {pack_id.hex()} is missing from the store; it holds data of "
                f"{self._files_of(cids)}"
            ) from exc

    def _files_of(self, cids: Iterable[bytes]) -> str:
        """The worktree files that chunks ``cids`` go to, a few named."""
        files = sorted(
            {self.plan.writes[d >> _OFF_BITS] for cid in cids for d in _dest_list(self.dests[cid])}
        )
        more = f" and {len(files) - 3} more" if len(files) > 3 else ""
        return ", ".join(files[:3]) + more

    def _whole(
        self,
        pack_id: ObjectId,
        key: str,
        size: int,
        blobs: list[tuple[int, int, bytes, BlobLocation]],
    ) -> _Tally:
        """Stream the whole pack in pieces: hash it, cache it if it matches its id (only
        where caching data pays, see ``Capabilities.cache_data``), and use its blobs one by
        one in any case (each is verified on its own)."""
        t = _Tally(packs=1)
        cache_it = self.repo.backend.capabilities.cache_data
        sink = self.repo.cache.begin(key) if cache_it else None
        hasher = StreamHasher() if sink is not None else None  # only to decide on caching
        try:
            for pos, cut, part in _pieces(blobs, 0, size, WINDOW):
                self.check()
                with self.budget.hold(cut - pos):
                    data = self.repo.backend.read_range(key, pos, cut - pos)
                    if sink is not None and hasher is not None:
                        hasher.update(data)
                        sink.write(data)
                    self._use_pack(memoryview(data), pos, part)
                    del data
                t.fetched += cut - pos
        except BaseException:
            if sink is not None:
                sink.abort()
            raise
        if sink is not None and hasher is not None:
            if hasher.digest() == pack_id:
                sink.commit()
            else:
                sink.abort()
                log.warning(
                    "pack %s does not match its id; its chunks were checked one by one", pack_id
                )
        return t

    def _ranges(self, key: str, blobs: list[tuple[int, int, bytes, BlobLocation]]) -> _Tally:
        """Read the needed blobs in coalesced ranges (not cached)."""
        t = _Tally()
        for start, end, group in _coalesce(blobs, RANGE_GAP):
            for pos, cut, part in _pieces(group, start, end, WINDOW):
                if not part:
                    continue
                self.check()
                with self.budget.hold(cut - pos):
                    self._use_pack(
                        memoryview(self.repo.backend.read_range(key, pos, cut - pos)), pos, part
                    )
                t.fetched += cut - pos
            t.ranges += 1
        return t

    def _use_pack(
        self, view: memoryview, pos: int, part: list[tuple[int, int, bytes, BlobLocation]]
    ) -> None:
        for off, length, cid, loc in part:
            self.deliver(cid, loc, view[off - pos : off - pos + length])

    def _from_cache(
        self, key: str, fd: int, blobs: list[tuple[int, int, bytes, BlobLocation]]
    ) -> _Tally:
        """Read the needed blobs from the cached pack; a blob that does not verify means
        a damaged copy: it is evicted and that blob read from the remote."""
        t = _Tally()
        for start, end, group in _coalesce(blobs, RANGE_GAP):
            for pos, cut, part in _pieces(group, start, end, WINDOW):
                if not part:
                    continue
                self.check()
                with self.budget.hold(cut - pos):
                    self._use_cached(key, memoryview(os.pread(fd, cut - pos, pos)), pos, part, t)
        return t

    def _use_cached(
        self,
        key: str,
        view: memoryview,
        pos: int,
        part: list[tuple[int, int, bytes, BlobLocation]],
        t: _Tally,
    ) -> None:
        for off, length, cid, loc in part:
            try:
                raw = _verified(cid, loc, view[off - pos : off - pos + length])
            except IntegrityError:
                self.repo.cache.evict(key)  # a damaged copy: that blob from the remote
                t.fetched += length
                self.deliver(cid, loc, memoryview(self.repo.backend.read_range(key, off, length)))
                continue
            self.write(cid, raw)
            t.cache += loc.raw_len


def _destinations(plan: CheckoutPlan) -> dict[bytes, int | list[int]]:
    """Each needed chunk → its destinations (staged file number << _OFF_BITS | offset)."""
    dests: dict[bytes, int | list[int]] = {}
    for n, path in enumerate(plan.writes):
        t = plan.target[path]
        if t.kind != EntryKind.FILE:
            continue
        off = 0
        for c in t.chunks:
            d = n << _OFF_BITS | off
            cur = dests.get(c.chunk_id)
            if cur is None:
                dests[c.chunk_id] = d
            elif isinstance(cur, int):
                dests[c.chunk_id] = [cur, d]
            else:
                cur.append(d)
            off += c.size
    return dests


def _local_sources(
    plan: CheckoutPlan, dests: dict[bytes, int | list[int]]
) -> dict[str, list[tuple[int, int, bytes]]]:
    """Per worktree file, the needed chunks it holds (the first place each is found)."""
    sources: dict[str, list[tuple[int, int, bytes]]] = defaultdict(list)
    seen: set[bytes] = set()
    for path, c in plan.local_content.items():
        off = 0
        for ch in c.chunks:
            if ch.chunk_id in dests and ch.chunk_id not in seen:
                seen.add(ch.chunk_id)
                sources[path].append((off, ch.size, ch.chunk_id))
            off += ch.size
    return sources


def _stage(staging: _Staging, sources: dict[str, list[tuple[int, int, bytes]]]) -> _Tally:
    """Stage every file: chunks from the worktree, then the cache, then the remote."""
    local = {cid for items in sources.values() for _o, _l, cid in items}
    by_pack = staging.by_pack(cid for cid in staging.dests if cid not in local)

    def jobs() -> Iterator[Callable[[], _Tally]]:
        for path, items in sources.items():
            items.sort()
            for start, end, group in _coalesce(items, RANGE_GAP):
                for _p, _c, part in _pieces(group, start, end, _LOCAL_JOB):
                    if part:
                        yield functools.partial(staging.copy_local, path, part)
        while by_pack:
            pack_id, cids = by_pack.popitem()
            yield functools.partial(staging.fetch_pack, pack_id, cids)

    total = _Tally()
    results = staging.run(jobs())
    failed = [cid for r in results for cid in r.failed]
    if failed:  # worktree files that changed since they were hashed: fetch those chunks
        again = staging.by_pack(failed)
        results += staging.run(
            functools.partial(staging.fetch_pack, p, c) for p, c in again.items()
        )
    for r in results:
        total.worktree += r.worktree
        total.cache += r.cache
        total.fetched += r.fetched
        total.packs += r.packs
        total.ranges += r.ranges
    return total


def apply_checkout(
    repo: Repository,
    wt: Worktree,
    plan: CheckoutPlan,
    stat_cache: StatCache,
    *,
    progress: Progress | None = None,
    workers: int = 4,
    before_changes: Callable[[], None] | None = None,
) -> CheckoutStats:
    """Carry out a plan (conflicts must have been dealt with by the caller).

    ``before_changes`` runs once every file is staged, before the worktree is touched: if
    it raises, the staged files are dropped and the worktree is left as it was.
    """
    progress = progress or NoProgress()
    dests = _destinations(plan)
    sources = _local_sources(plan, dests)
    stager = _Stager(wt, plan)
    staging = _Staging(repo, wt, plan, stager, dests, progress, workers)
    progress.start(plan.bytes_to_write, "B", "checkout")
    try:
        try:
            tally = _stage(staging, sources)
            stager.check_complete()
        finally:
            stager.close()
        if before_changes is not None:
            before_changes()
        crash_point("mid-checkout")
        _put_in_place(wt, plan, stager)
        renamed_ns = time.time_ns()
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
    del staging, dests, sources
    stats = CheckoutStats(
        files_written=len(plan.writes),
        files_deleted=len(plan.deletes),
        files_unchanged=plan.files - len(plan.writes),
        bytes_written=plan.bytes_to_write,
        bytes_from_worktree=tally.worktree,
        bytes_from_cache=tally.cache,
        bytes_fetched=tally.fetched,
        packs_fetched=tally.packs,
        ranges_fetched=tally.ranges,
    )
    # A plan is applied once. Its tables hold an entry per path of the version: they are
    # released here (the written files' entries one by one as their stat-cache rows are
    # made) rather than when the caller drops the plan, after saving the stat cache.
    plan.local_content.clear()
    _record_written(wt, plan, stat_cache, renamed_ns)
    plan.target.clear()
    return stats


def _record_written(
    wt: Worktree, plan: CheckoutPlan, stat_cache: StatCache, renamed_ns: int
) -> None:
    """Stat-cache rows for every written or metadata-fixed file; deleted paths leave. The
    entries of those files leave ``plan.target`` as they are recorded.

    The renames gave the written files a ctime up to ``renamed_ns``; a row whose ctime is
    that close to the moment of its lstat would be racily clean and not saved, and the
    next command would read the file again. So the lstats wait until the last rename is
    ``RACY_FINE_NS`` old (at most that long).
    """
    root = str(wt.root)
    if plan.writes:
        time.sleep(max(0, renamed_ns + RACY_FINE_NS + 1_000_000 - time.time_ns()) / 1e9)
    seen_ns = time.time_ns()
    for path in [*plan.writes, *plan.meta_only]:
        t = plan.target.pop(path)
        if t.kind != EntryKind.FILE:
            continue
        try:
            st = os.lstat(f"{root}/{path}")
        except FileNotFoundError:
            continue
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


def _check_dir_chain(root: str, path: str, verified: set[str]) -> None:
    """Raise unless every parent of ``path`` inside ``root`` is a real directory."""
    parts = path.split("/")[:-1]
    for i in range(len(parts)):
        sub = "/".join(parts[: i + 1])
        if sub in verified:
            continue
        try:
            st = os.lstat(f"{root}/{sub}")
        except FileNotFoundError:
            return
        if not stat.S_ISDIR(st.st_mode):
            raise UnsafePathError(
                path, f"{sub} is not a directory (a symlink?); refusing to write through it"
            )
        verified.add(sub)


def _remove(path: str) -> None:
    st = os.lstat(path)
    if stat.S_ISDIR(st.st_mode):
        os.rmdir(path)
    else:
        os.unlink(path)


def _put_in_place(wt: Worktree, plan: CheckoutPlan, stager: _Stager) -> None:
    root = str(wt.root)
    verified: set[str] = set()  # folders seen to be real directories
    crash_point("before-checkout-delete")
    # Deepest first, so a folder is empty by the time it is removed.
    for path in sorted(plan.deletes, key=lambda p: p.count("/"), reverse=True):
        with contextlib.suppress(FileNotFoundError):
            try:
                _remove(f"{root}/{path}")
            except OSError as exc:
                if exc.errno != errno.ENOTEMPTY:
                    raise
                log.warning("kept folder %s: it holds files ignored by .casignore", path)
    for path in sorted(plan.mkdirs, key=lambda p: p.count("/")):
        _check_dir_chain(root, path + "/x", verified)
        p = f"{root}/{path}"
        with contextlib.suppress(FileExistsError):
            os.mkdir(p, 0o700)
        if not stat.S_ISDIR(os.lstat(p).st_mode):
            raise UnsafePathError(path, "exists and is not a directory")
        verified.add(path)
    half = len(plan.writes) // 2
    for n, path in enumerate(plan.writes):
        if n == half:
            crash_point("mid-checkout-rename")
        if path.partition("/")[0] == WT_DIR:
            raise UnsafePathError(path, "reserved for cas's own metadata")
        parent = path.rpartition("/")[0]
        if parent and parent not in verified:
            _check_dir_chain(root, path, verified)
            os.makedirs(f"{root}/{parent}", exist_ok=True)
            _check_dir_chain(root, path, verified)
        # Mode and mtime were set when the file was staged: a rename puts it in place.
        try:
            os.replace(stager.path(n), f"{root}/{path}")
        except IsADirectoryError:
            raise UnsafePathError(path, "a folder holding ignored files is in the way") from None
    for path in plan.meta_only:
        t = plan.target[path]
        p = f"{root}/{path}"
        if t.kind == EntryKind.FILE:
            os.chmod(p, t.mode)
            os.utime(p, ns=(t.mtime_ns, t.mtime_ns))
        elif t.kind == EntryKind.SYMLINK:
            with contextlib.suppress(OSError):
                os.utime(p, ns=(t.mtime_ns, t.mtime_ns), follow_symlinks=False)
    # Directory modes and mtimes last (writing into a folder changes its mtime).
    dirs = [p for p, e in plan.target.items() if e.kind == EntryKind.DIR]
    for path in sorted(dirs, key=lambda p: p.count("/"), reverse=True):
        t = plan.target[path]
        p = f"{root}/{path}"
        with contextlib.suppress(FileNotFoundError):
            os.chmod(p, t.mode)
            os.utime(p, ns=(t.mtime_ns, t.mtime_ns))


__all__ = ["MAX_WORKERS", "CheckoutPlan", "CheckoutStats", "apply_checkout", "plan_checkout"]
