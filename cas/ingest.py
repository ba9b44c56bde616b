"""Commit: worktree files → chunks → packs, then trees, the commit and the ref entry.

Pipeline (each stage releases the GIL in its C code, so threads use every core)::

    walk (lstat every path) ─► folder unchanged? ──yes──► reuse its recorded tree id
                                   │ no
                                   ▼
                               file: stat cache hit? ──yes──► reuse the recorded chunks
                                   │ no
                                   ▼
    file workers: read ─► FastCDC ─► BLAKE3 ─► seen before? ──yes──► only record the id
                                                   │ no
                                                   ▼
    compress workers: zstd (raw if it does not shrink) ─► WriteSession (pack, upload)

Back-pressure: at most ``2 × workers`` chunks wait for compression and at most two packs
wait for upload, so memory does not grow with the size of a file or of the dataset
(invariant 9). Then, in the order of invariant 2: flush packs and the index segment,
store the trees (inside packs), write the commit, and append the ref entry — the commit
point. A crash before the ref entry leaves only unreferenced objects.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from stat import S_IMODE, S_ISDIR, S_ISREG
from typing import TypeVar

from cas._faults import crash_point
from cas.chunking import Chunker
from cas.compression import compress
from cas.errors import RefConflictError, WorktreeReadError
from cas.hashing import hash_bytes
from cas.ids import ObjectId
from cas.objects import Commit, CommitStats, EntryKind, Tree, TreeEntry
from cas.packs import KIND_CHUNK
from cas.progress import NoProgress, Progress
from cas.repository import Repository, WriteSession
from cas.worktree import (
    FileContent,
    Stat,
    StatCache,
    Worktree,
    listing_digest,
    read_file_content,
)

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The result of storing a worktree's content: its root tree and the numbers."""

    tree_id: ObjectId
    stats: CommitStats


def default_workers() -> int:
    """Worker threads for hashing and compression."""
    return max(2, min(8, os.cpu_count() or 2))


class _ChunkSink:
    """Compresses and stores new chunks on a pool, with bounded queueing."""

    def __init__(self, session: WriteSession, level: int, workers: int) -> None:
        self._session = session
        self._level = level
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
        # The stream chunker reuses its buffer after this call: copy, unless the chunk is
        # a whole small file read into a bytes object of its own (no copy, no new memory).
        obj = view.obj
        data = obj if type(obj) is bytes and len(obj) == len(view) else bytes(view)
        self._slots.acquire()
        fut = self._pool.submit(self._store, chunk_id, data)
        fut.add_done_callback(self._done)

    def _store(self, chunk_id: ObjectId, data: bytes) -> None:
        codec, stored = compress(data, self._level)
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
    the store has, are not read. Returns the root tree id; the caller flushes the session.
    """
    progress = progress or NoProgress()
    workers = workers or default_workers()
    index = repo.load_index()
    seen_ns = time.time_ns()  # before the walk's first lstat
    clean: dict[bytes, ObjectId] = {}  # unchanged folders whose parent is not walked yet
    dirty: list[_Dir] = []  # folders to build, sub-directories first
    walked: set[bytes] = set()
    to_read: list[tuple[_Dir, int]] = []  # (folder, index of the file in its listing)
    files = dirs = symlinks = nbytes = 0
    for rel, listing in wt.walk():
        walked.add(rel)
        prefix = rel + b"/" if rel else b""
        subtrees: dict[bytes, ObjectId] = {}
        whole = True  # every sub-directory unchanged
        for e in listing:
            mode = e[1]
            if S_ISREG(mode):
                files += 1
                nbytes += e[2]
            elif S_ISDIR(mode):
                dirs += 1
                tid = clean.pop(prefix + e[0], None)
                if tid is None:
                    whole = False
                else:
                    subtrees[e[0]] = tid
            else:
                symlinks += 1
        if whole:
            digest = listing_digest(listing, list(subtrees.values()))
            tid = stat_cache.reuse_tree(rel, digest, index)
            if tid is not None:
                clean[rel] = tid
                continue
        d = _Dir(rel, listing, subtrees, [None] * len(listing))
        for i, (name, mode, size, mtime, ino, ctime, _target) in enumerate(listing):
            if not S_ISREG(mode):
                continue
            hit = stat_cache.find(rel, name, size, mtime, ino, ctime)
            if hit is not None and all(c.chunk_id in index for c in hit[0].chunks):
                d.contents[i] = hit
            else:
                to_read.append((d, i))
        dirty.append(d)

    total = sum(d.listing[i][2] for d, i in to_read)
    progress.start(total, "B", "commit")
    sink = _ChunkSink(session, repo.config.zstd_level, workers)
    local = threading.local()
    root = os.fsencode(wt.root)

    def read_one(item: tuple[_Dir, int]) -> FileContent:
        chunker = getattr(local, "chunker", None)
        if chunker is None:
            chunker = local.chunker = Chunker(repo.config.chunker)
        d, i = item
        rel = (d.rel + b"/" if d.rel else b"") + d.listing[i][0]
        try:
            with open(root + b"/" + rel, "rb") as f:
                return read_file_content(
                    f, chunker, _advancing(sink, progress), size_hint=d.listing[i][2]
                )
        except OSError as exc:
            raise WorktreeReadError(os.fsdecode(rel), exc) from exc

    def collect(item: tuple[_Dir, int], content: FileContent) -> None:
        d, i = item
        d.contents[i] = (content, seen_ns)

    try:
        _run_bounded(
            read_one, to_read, lambda it: it[0].listing[it[1]][2], workers, collect, sink.stop
        )
        sink.close()
    except BaseException:
        sink.abort()
        raise
    finally:
        progress.finish()
    tree_id = clean[b""] if b"" in clean else build_trees(session, dirty, stat_cache)
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


def _run_bounded(
    fn: Callable[[T], R],
    items: list[T],
    size: Callable[[T], int],
    workers: int,
    collect: Callable[[T, R], None],
    stop: Callable[[], None],
) -> None:
    """Run ``fn`` over ``items`` on a pool with a bounded window; collect in order.

    On the first failure (or Ctrl-C in the calling thread) the queued items are dropped
    and ``stop`` is called before waiting for the running ones, so that they can end
    early instead of reading their files to the end.
    """
    if not items:
        return
    # Largest files first, so a big file does not start last and run alone.
    order = sorted(items, key=size, reverse=True)
    window = 4 * workers
    with ThreadPoolExecutor(workers, thread_name_prefix="cas-read") as pool:
        pending: list[tuple[T, Future[R]]] = []
        try:
            for item in order:
                pending.append((item, pool.submit(fn, item)))
                if len(pending) >= window:
                    done, fut = pending.pop(0)
                    collect(done, fut.result())
            for done, fut in pending:
                collect(done, fut.result())
        except BaseException:
            for _, fut in pending:
                fut.cancel()
            stop()
            raise


@dataclass(slots=True)
class _Dir:
    """A folder whose tree is built: its listing, and what is known of its entries."""

    rel: bytes
    listing: list[Stat]
    subtrees: dict[bytes, ObjectId]  # name → tree id of each unchanged sub-directory
    contents: list[tuple[FileContent, int] | None]  # per file: content and seen_ns


def build_trees(session: WriteSession, dirty: list[_Dir], stat_cache: StatCache) -> ObjectId:
    """Build and store the trees of ``dirty`` folders (children first); return the root's.

    Records each folder's tree id, listing digest and file rows in ``stat_cache``.
    """
    built: dict[bytes, ObjectId] = {}  # built trees whose parent is not built yet
    for d in dirty:
        prefix = d.rel + b"/" if d.rel else b""
        rows: list[TreeEntry] = []
        subtrees: list[bytes] = []
        files: list[tuple[bytes, int, int, int, int, int, FileContent]] = []
        for (name, mode, size, mtime, ino, ctime, target), known in zip(
            d.listing, d.contents, strict=True
        ):
            text = os.fsdecode(name)
            if S_ISREG(mode):
                assert known is not None  # every file was looked up or read
                c, seen = known
                rows.append(
                    TreeEntry(text, EntryKind.FILE, S_IMODE(mode), mtime, size, c.oid, c.chunks)
                )
                files.append((name, size, mtime, ino, ctime, seen, c))
            elif S_ISDIR(mode):
                sub = d.subtrees.get(name)
                if sub is None:
                    sub = built.pop(prefix + name)
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
        tree_id = built[d.rel] = session.store_tree(Tree(tuple(rows)))
        stat_cache.set_dir(d.rel, files, tree_id, listing_digest(d.listing, subtrees))
        d.contents.clear()  # the stat cache holds what is still needed
    return built[b""]  # the root comes last


@dataclass(frozen=True, slots=True)
class CommitOutcome:
    """What ``commit_snapshot`` wrote."""

    commit_id: ObjectId
    commit: Commit
    diverged: bool


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
) -> CommitOutcome:
    """Flush the session, write the commit, then the branch's ref entry (commit point).

    Raises:
        RefConflictError: the branch moved since ``parents`` were chosen.
    """
    state = repo.branch_state(branch)
    current = state.target if state.exists else None
    if state.diverged or current != (parents[0] if parents else None):
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
    commit_id = repo.save_commit(commit)
    if before_ref is not None:
        before_ref(commit_id)
    crash_point("before-ref-update")
    after = repo.refs.update(f"heads/{branch}", target=commit_id, expected=state)
    crash_point("after-ref-update")
    return CommitOutcome(commit_id, commit, after.diverged)


__all__ = ["CommitOutcome", "Snapshot", "build_trees", "commit_snapshot", "snapshot_worktree"]
