"""Commit: worktree files → chunks → packs, then trees, the commit and the ref entry.

Pipeline (each stage releases the GIL in its C code, so threads use every core)::

    walk (lstat every path) ─► folder unchanged? ──yes──► reuse its recorded tree id
                                   │ no
                                   ▼
                               file: stat cache hit? ──yes──► reuse the recorded chunks
                                   │ no
                                   ▼
    file workers: read ─► FastCDC ─► BLAKE3 ─► seen before? ──yes──► only record the id
    (small files in batches)                       │ no
                                                   ▼
    zstd (raw if it does not shrink): in the reader's thread for a file read whole, on
    the compress workers for a streamed one ─► WriteSession (pack, upload)

Back-pressure: at most ``2 × workers`` chunks of streamed files wait for compression and
at most two packs wait for upload, so memory does not grow with the size of a file or of the dataset
(invariant 9). Then, in the order of invariant 2: flush packs and the index segment,
store the trees (inside packs), write the commit, and append the ref entry — the commit
point. A crash before the ref entry leaves only unreferenced objects.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from stat import S_IMODE, S_ISDIR, S_ISREG

from cas._faults import crash_point
from cas.chunking import Chunker
from cas.compression import compress
from cas.errors import RefConflictError, WorktreeReadError
from cas.hashing import hash_bytes
from cas.ids import ObjectId
from cas.objects import Commit, CommitStats, EntryKind, Tree, TreeEntry
from cas.packs import KIND_CHUNK
from cas.progress import NoProgress, Progress
from cas.refs import RefState, RefUpdate
from cas.repository import Repository, WriteSession, commit_id_of
from cas.worktree import (
    FileContent,
    Stat,
    StatCache,
    Worktree,
    listing_digest,
    read_path_content,
)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The result of storing a worktree's content: its root tree and the numbers."""

    tree_id: ObjectId
    stats: CommitStats


# Files the walk may find (and queue for reading) ahead of the oldest one not read yet.
# Each costs about 1 KB until its folder's tree is built (its future, its content, its
# share of the folder's listing): 4096 bound that to a few MB, and let the walk of most
# asset folders finish early, so the progress bar knows its total (and its ETA) early.
READ_AHEAD = 4096

# A task of the read pool reads up to this many files or bytes (see _BoundedReads).
BATCH_FILES = 64
BATCH_BYTES = 4 << 20


def default_workers() -> int:
    """Worker threads for hashing and compression."""
    return max(2, min(8, os.cpu_count() or 2))


class _ChunkSink:
    """Compresses and stores new chunks on a pool, with bounded queueing."""

    def __init__(self, session: WriteSession, level: int, planes: bool, workers: int) -> None:
        self._session = session
        self._level = level
        self._planes = planes
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="cas-zstd")
        self._slots = threading.BoundedSemaphore(2 * workers)
        self._errors: list[BaseException] = []
        self._stopped = False

    def __call__(self, chunk_id: ObjectId, view: memoryview) -> None:
        if self._stopped:
            raise _Stopped
        if self._errors:
            raise self._errors[0]
        if not self._session.reserve(chunk_id):
            return
        obj = view.obj
        if type(obj) is bytes:
            # A file read whole (at most WHOLE_READ_LIMIT bytes) is compressed here, in
            # its reader's thread: handing a small chunk to another thread (a future, a
            # wake-up, the GIL passed back and forth) costs more than compressing it, and
            # the readers already keep the cores busy. No copy of a one-chunk file.
            self._store(chunk_id, obj if len(obj) == len(view) else view)
            return
        # The stream chunker reuses its buffer after this call: copy.
        data = bytes(view)
        self._slots.acquire()
        fut = self._pool.submit(self._store, chunk_id, data)
        fut.add_done_callback(self._done)

    def _store(self, chunk_id: ObjectId, data: bytes | memoryview) -> None:
        codec, stored = compress(data, self._level, planes=self._planes)
        self._session.add(chunk_id, KIND_CHUNK, codec, len(data), stored)

    def _done(self, fut: Future[None]) -> None:
        self._slots.release()
        exc = fut.exception()
        if exc is not None:
            self._errors.append(exc)

    def close(self) -> None:
        """Wait for queued chunks; re-raise the first failure."""
        self._pool.shutdown(wait=True)
        if self._errors:
            raise self._errors[0]

    def stop(self) -> None:
        """Make every reader stop at its next chunk (the commit failed or was interrupted)."""
        self._stopped = True

    def abort(self) -> None:
        """Stop the readers, drop queued work, wait for the chunks being compressed."""
        self._stopped = True
        self._pool.shutdown(wait=True, cancel_futures=True)


class _Stopped(Exception):
    """Raised in a reader thread once the commit has failed elsewhere; never seen outside."""


def snapshot_worktree(
    repo: Repository,
    wt: Worktree,
    session: WriteSession,
    stat_cache: StatCache,
    *,
    progress: Progress | None = None,
    workers: int | None = None,
) -> Snapshot:
    """Store every file of ``wt`` that the store lacks and build its trees.

    Walks the worktree one directory at a time, sub-directories first. A directory whose
    listing (names, lstat data, link targets, sub-directory tree ids) has the digest the
    stat cache recorded with its tree id, and whose tree and chunks the store has, keeps
    that tree id: its files are neither looked up nor read, its tree not built again. In
    any other directory, files whose fingerprint matches the stat cache, and whose chunks
    the store has, are not read; the others are read as the walk finds them, at most
    ``READ_AHEAD`` queued at a time. A directory's tree is built as soon as its files are read
    and its sub-directories built, and then forgotten, so memory follows the folders
    being worked on, not the size of the worktree. Returns the root tree id; the caller
    flushes the session.
    """
    progress = progress or NoProgress()
    workers = workers or default_workers()
    index = repo.load_index()
    vouched = stat_cache.index_vouched(repo.index_segments())
    seen_ns = time.time_ns()  # before the walk's first lstat
    clean: dict[bytes, ObjectId] = {}  # unchanged folders whose parent is not walked yet
    built: dict[bytes, ObjectId] = {}  # rebuilt folders whose parent is not walked yet
    waiting: dict[bytes, _Dir] = {}  # walked folders whose tree cannot be built yet
    walked: set[bytes] = set()
    files = dirs = symlinks = nbytes = total = 0
    progress.start(0, "B", "commit")  # the total grows as the walk finds files to read
    sink = _ChunkSink(session, repo.config.zstd_level, repo.config.planes, workers)
    local = threading.local()
    root = os.fsencode(wt.root)

    on_chunk = _advancing(sink, progress)

    def read_one(d: _Dir, i: int) -> FileContent:
        chunker = getattr(local, "chunker", None)
        if chunker is None:
            chunker = local.chunker = Chunker(repo.config.chunker)
        rel = (d.rel + b"/" if d.rel else b"") + d.listing[i][0]
        try:
            return read_path_content(
                root + b"/" + rel, chunker, on_chunk, size_hint=d.listing[i][2]
            )
        except OSError as exc:
            raise WorktreeReadError(os.fsdecode(rel), exc) from exc

    def done_with(d: _Dir) -> None:
        """One thing ``d`` waited for is there; build it (and its parents) when ready."""
        d.waiting -= 1
        while d.waiting == 0:
            tree_id = _build_tree(session, d, stat_cache, seen_ns)
            waiting.pop(d.rel, None)
            parent = d.parent
            if parent is None:
                built[d.rel] = tree_id
                return
            parent.subtrees[d.rel.rpartition(b"/")[2]] = tree_id
            parent.waiting -= 1
            d = parent

    reads = _BoundedReads(read_one, READ_AHEAD, workers)
    try:
        for rel, listing in wt.walk():
            walked.add(rel)
            prefix = rel + b"/" if rel else b""
            subtrees: dict[bytes, ObjectId] = {}
            children: list[_Dir] = []  # sub-directories still waiting
            whole = True  # every sub-directory unchanged
            for e in listing:
                mode = e[1]
                if S_ISREG(mode):
                    files += 1
                    nbytes += e[2]
                elif S_ISDIR(mode):
                    dirs += 1
                    sub = prefix + e[0]
                    tid = clean.pop(sub, None)
                    if tid is not None:
                        subtrees[e[0]] = tid
                        continue
                    whole = False
                    tid = built.pop(sub, None)
                    if tid is not None:
                        subtrees[e[0]] = tid
                    else:
                        children.append(waiting[sub])
                else:
                    symlinks += 1
            if whole:
                digest = listing_digest(listing, list(subtrees.values()))
                tid = stat_cache.reuse_tree(rel, digest, index, vouched=vouched)
                if tid is not None:
                    clean[rel] = tid
                    continue
            # Waits for its children, its files to read, and the end of this loop.
            d = _Dir(rel, listing, subtrees, {}, 1 + len(children))
            waiting[rel] = d
            for child in children:
                child.parent = d
            for i, (name, mode, size, mtime, ino, ctime, _target) in enumerate(listing):
                if not S_ISREG(mode):
                    continue
                hit = stat_cache.find(rel, name, size, mtime, ino, ctime)
                if hit is None or not all(c.chunk_id in index for c in hit[0].chunks):
                    d.waiting += 1
                    total += size
                    progress.expect(size)
                    for rd, ri, content in reads.submit(d, i, size):
                        rd.contents[ri] = content
                        done_with(rd)
            done_with(d)
        for rd, ri, content in reads.drain():
            rd.contents[ri] = content
            done_with(rd)
        sink.close()
    except BaseException:
        reads.cancel()
        sink.stop()
        reads.close()
        sink.abort()
        raise
    finally:
        reads.close()
        progress.finish()
    assert not waiting, "every folder's tree is built"
    tree_id = clean[b""] if b"" in clean else built[b""]
    stat_cache.keep_dirs(walked)
    stats = CommitStats(
        files=files, dirs=dirs, symlinks=symlinks, bytes=nbytes, scanned_bytes=total
    )
    return Snapshot(tree_id, stats)


def _advancing(
    sink: Callable[[ObjectId, memoryview], None], progress: Progress
) -> Callable[[ObjectId, memoryview], None]:
    def on_chunk(chunk_id: ObjectId, view: memoryview) -> None:
        sink(chunk_id, view)
        progress.advance(len(view))

    return on_chunk


class _BoundedReads:
    """Reads files on a pool, in batches, at most ``window`` files queued; the contents
    come back in submission order, from :meth:`submit` (once the window is full) and
    :meth:`drain`.

    Files go to the pool in batches of up to ``BATCH_FILES`` files or ``BATCH_BYTES``
    bytes, one task each: a task per file (its future, a thread woken, the GIL handed
    back and forth) cost more than reading a small image. A batch leaves early while a
    reader is idle, so a slow walk (a Drive folder) never keeps files from the readers.

    On a failure (or Ctrl-C in the calling thread) the caller calls :meth:`cancel`, which
    drops the files not started yet, then makes the running ones stop early its own way,
    then :meth:`close`, which waits for them.
    """

    def __init__(self, read: Callable[[_Dir, int], FileContent], window: int, workers: int) -> None:
        self._read = read
        self._window = window
        self._workers = workers
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="cas-read")
        self._pending: deque[tuple[list[tuple[_Dir, int]], Future[list[FileContent]]]] = deque()
        self._batch: list[tuple[_Dir, int]] = []
        self._batch_bytes = 0
        self._queued = 0  # files in self._pending
        self._lock = threading.Lock()
        self._running = 0  # batches submitted and not finished

    def submit(self, d: _Dir, i: int, size: int) -> list[tuple[_Dir, int, FileContent]]:
        """Queue file ``i`` of ``d`` (``size`` bytes); return the oldest contents that are
        ready (waiting for them only while the window is full), so trees are built as
        early as reads finish in order, however far ahead the walk is."""
        self._batch.append((d, i))
        self._batch_bytes += size
        if (
            len(self._batch) >= BATCH_FILES
            or self._batch_bytes >= BATCH_BYTES
            or self._running < self._workers
        ):
            self._dispatch()
        out: list[tuple[_Dir, int, FileContent]] = []
        pending = self._pending
        while pending and (self._queued + len(self._batch) >= self._window or pending[0][1].done()):
            self._take(out)
        return out

    def _dispatch(self) -> None:
        batch = self._batch
        self._batch = []
        self._batch_bytes = 0
        with self._lock:
            self._running += 1
        fut = self._pool.submit(self._read_batch, batch)
        self._pending.append((batch, fut))
        self._queued += len(batch)

    def _read_batch(self, batch: list[tuple[_Dir, int]]) -> list[FileContent]:
        try:
            return [self._read(d, i) for d, i in batch]
        finally:
            with self._lock:
                self._running -= 1

    def _take(self, out: list[tuple[_Dir, int, FileContent]]) -> None:
        batch, fut = self._pending.popleft()
        self._queued -= len(batch)
        out.extend((d, i, c) for (d, i), c in zip(batch, fut.result(), strict=True))

    def drain(self) -> Iterator[tuple[_Dir, int, FileContent]]:
        """Every remaining content, oldest first."""
        if self._batch:
            self._dispatch()
        while self._pending:
            out: list[tuple[_Dir, int, FileContent]] = []
            self._take(out)
            yield from out

    def cancel(self) -> None:
        """Drop the files not started yet."""
        for _batch, fut in self._pending:
            fut.cancel()
        self._pending.clear()
        self._batch = []

    def close(self) -> None:
        """Wait for the running reads and stop the threads."""
        self._pool.shutdown(wait=True, cancel_futures=True)


@dataclass(slots=True, eq=False)
class _Dir:
    """A walked folder whose tree is to be built, and what it still waits for."""

    rel: bytes
    listing: list[Stat]
    subtrees: dict[bytes, ObjectId]  # name → tree id of each sub-directory known so far
    contents: dict[int, FileContent]  # listing position → content, for the files read
    waiting: int  # files being read, sub-directories not built, and the walk itself
    parent: _Dir | None = None  # set once the parent is walked


def _build_tree(session: WriteSession, d: _Dir, stat_cache: StatCache, seen_ns: int) -> ObjectId:
    """Build and store the tree of folder ``d`` (its sub-directories are built).

    Records its tree id, listing digest and file rows in ``stat_cache``. A file not read
    is one the stat cache matched during the walk (nothing changes its rows until this
    folder is recorded here).
    """
    rows: list[TreeEntry] = []
    subtrees: list[bytes] = []
    files: list[tuple[bytes, int, int, int, int, int, FileContent]] = []
    for i, (name, mode, size, mtime, ino, ctime, target) in enumerate(d.listing):
        text = os.fsdecode(name)
        if S_ISREG(mode):
            c = d.contents.get(i)
            seen = seen_ns
            if c is None:
                hit = stat_cache.find(d.rel, name, size, mtime, ino, ctime)
                assert hit is not None  # matched during the walk
                c, seen = hit
            rows.append(
                TreeEntry(text, EntryKind.FILE, S_IMODE(mode), mtime, size, c.oid, c.chunks)
            )
            files.append((name, size, mtime, ino, ctime, seen, c))
        elif S_ISDIR(mode):
            sub = d.subtrees[name]
            subtrees.append(sub)
            rows.append(TreeEntry(text, EntryKind.DIR, S_IMODE(mode), mtime, 0, sub))
        else:
            rows.append(
                TreeEntry(
                    text,
                    EntryKind.SYMLINK,
                    S_IMODE(mode),
                    mtime,
                    size,
                    hash_bytes(target),
                    target=os.fsdecode(target),
                )
            )
    tree_id = session.store_tree(Tree(tuple(rows)))
    stat_cache.set_dir(d.rel, files, tree_id, listing_digest(d.listing, subtrees))
    d.contents.clear()
    d.listing = []
    return tree_id


@dataclass(frozen=True, slots=True)
class CommitOutcome:
    """What ``commit_snapshot`` wrote; ``tag`` is the tag's entry, claimed and still to
    be published (:meth:`RefStore.publish`, or :meth:`RefStore.release` on failure)."""

    commit_id: ObjectId
    commit: Commit
    diverged: bool
    tag: RefUpdate | None = None


def commit_snapshot(
    repo: Repository,
    session: WriteSession,
    snapshot: Snapshot,
    *,
    branch: str,
    parents: tuple[ObjectId, ...],
    message: str,
    author: str,
    before_ref: Callable[[ObjectId], None] | None = None,
    tag: str | None = None,
    tag_state: RefState | None = None,
) -> CommitOutcome:
    """Flush the session, write the commit, then the branch's ref entry (commit point).

    The claims of the branch's step and of ``tag`` (a new tag on the commit, whose
    ``tag_state`` the caller read when it checked the name was free) are written beside
    the commit object, not after it: on a Drive mount each small write is a dozen round
    trips. The branch's entry follows the commit object; the tag's is left to the caller.

    Raises:
        RefConflictError: the branch moved since ``parents`` were chosen, or another
            writer claimed the branch's or the tag's next step.
    """
    refs = repo.refs
    state = repo.branch_state(branch)
    current = state.target if state.exists else None
    if state.diverged:
        heads = ", ".join(h.entry.target.short for h in state.live_heads if h.entry.target)
        raise RefConflictError(
            f"branch {branch!r} has diverged (heads {heads}): two writers committed to it at once",
            hint=f"pick its head first with `cas branch -f {branch} COMMIT` (see "
            "`cas log --all`), or commit on a new branch: `cas branch NAME`, "
            "`cas checkout NAME`, `cas commit`",
        )
    if current != (parents[0] if parents else None):
        raise RefConflictError(
            f"branch {branch!r} moved to {current.short if current else 'nothing'} "
            f"since this worktree's version {parents[0].short if parents else '(none)'}",
            hint="another writer committed; to keep your changes, commit them on a new "
            "branch: `cas branch NAME`, `cas checkout NAME`, `cas commit`",
        )
    session.flush()
    stats = dataclasses.replace(
        snapshot.stats,
        new_chunks=session.new_blobs,
        new_bytes=session.new_bytes,
        stored_bytes=session.stored_bytes,
    )
    commit = Commit(snapshot.tree_id, parents, message, author, time.time_ns(), stats)
    commit_id = commit_id_of(commit)
    updates = [refs.prepare(f"heads/{branch}", target=commit_id, expected=state)]
    if tag is not None:
        ref = f"tags/{tag}"
        updates.append(refs.prepare(ref, target=commit_id, expected=tag_state or refs.state(ref)))
    try:
        with ThreadPoolExecutor(len(updates), thread_name_prefix="cas-claim") as pool:
            claims = [pool.submit(refs.claim, u) for u in updates]
            repo.save_commit(commit)
            if before_ref is not None:
                before_ref(commit_id)
        for claimed in claims:
            claimed.result()
        crash_point("before-ref-update")
        refs.publish(updates[0])
    except BaseException:
        for u in updates:
            refs.release(u)
        raise
    after = refs.state(updates[0].ref)
    crash_point("after-ref-update")
    return CommitOutcome(commit_id, commit, after.diverged, updates[1] if tag else None)


__all__ = ["CommitOutcome", "Snapshot", "commit_snapshot", "snapshot_worktree"]
