"""Commit: worktree files → chunks → packs, then trees, the commit and the ref entry.

Pipeline (each stage releases the GIL in its C code, so threads use every core)::

    scan (lstat every path) ─► stat cache hit? ──yes──► reuse the recorded chunks
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
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from cas._faults import crash_point
from cas.chunking import Chunker
from cas.compression import compress
from cas.errors import RefConflictError
from cas.hashing import hash_bytes
from cas.ids import ObjectId
from cas.objects import Commit, CommitStats, EntryKind, Tree, TreeEntry
from cas.packs import KIND_CHUNK
from cas.progress import NoProgress, Progress
from cas.repository import Repository, WriteSession
from cas.worktree import FileContent, LocalEntry, StatCache, Worktree, read_file_content


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The result of storing a worktree's content: its root tree and the numbers."""

    tree_id: ObjectId
    stats: CommitStats
    contents: dict[str, FileContent]


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

    def __call__(self, chunk_id: ObjectId, view: memoryview) -> None:
        if self._errors:
            raise self._errors[0]
        if not self._session.reserve(chunk_id):
            return
        data = bytes(view)  # the chunker reuses its buffer after this call
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

    def abort(self) -> None:
        """Drop queued work."""
        self._pool.shutdown(wait=True, cancel_futures=True)


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

    Files whose stat fingerprint matches the stat cache, and whose chunks the store
    has, are not read. Returns the root tree id; the caller flushes the session.
    """
    progress = progress or NoProgress()
    workers = workers or default_workers()
    entries = wt.scan()
    index = repo.load_index()
    contents: dict[str, FileContent] = {}
    to_read: list[LocalEntry] = []
    for e in entries.values():
        if e.kind != EntryKind.FILE:
            continue
        known = stat_cache.lookup(e)
        if known is not None and all(c.chunk_id in index for c in known.chunks):
            contents[e.path] = known
        else:
            to_read.append(e)

    total = sum(e.size for e in to_read)
    progress.start(total, "B", "commit")
    sink = _ChunkSink(session, repo.config.zstd_level, workers)
    local = threading.local()

    def read_one(e: LocalEntry) -> tuple[LocalEntry, FileContent]:
        chunker = getattr(local, "chunker", None)
        if chunker is None:
            chunker = local.chunker = Chunker(repo.config.chunker)
        with open(wt.abspath(e.path), "rb") as f:
            content = read_file_content(f, chunker, _advancing(sink, progress))
        return e, content

    try:
        _run_bounded(read_one, to_read, workers, lambda r: contents.__setitem__(r[0].path, r[1]))
        sink.close()
    except BaseException:
        sink.abort()
        raise
    finally:
        progress.finish()
    for e, c in ((entries[p], contents[p]) for p in contents):
        stat_cache.record(e, c)
    tree_id = build_trees(session, entries, contents)
    files = [e for e in entries.values() if e.kind == EntryKind.FILE]
    stats = CommitStats(
        files=len(files),
        dirs=sum(1 for e in entries.values() if e.kind == EntryKind.DIR),
        symlinks=sum(1 for e in entries.values() if e.kind == EntryKind.SYMLINK),
        bytes=sum(e.size for e in files),
        scanned_bytes=total,
    )
    return Snapshot(tree_id, stats, contents)


def _advancing(
    sink: Callable[[ObjectId, memoryview], None], progress: Progress
) -> Callable[[ObjectId, memoryview], None]:
    def on_chunk(chunk_id: ObjectId, view: memoryview) -> None:
        sink(chunk_id, view)
        progress.advance(len(view))

    return on_chunk


def _run_bounded(
    fn: Callable[[LocalEntry], tuple[LocalEntry, FileContent]],
    items: list[LocalEntry],
    workers: int,
    collect: Callable[[tuple[LocalEntry, FileContent]], None],
) -> None:
    """Run ``fn`` over ``items`` on a pool with a bounded window; collect in order."""
    if not items:
        return
    # Largest files first, so a big file does not start last and run alone.
    order = sorted(items, key=lambda e: e.size, reverse=True)
    window = 4 * workers
    with ThreadPoolExecutor(workers, thread_name_prefix="cas-read") as pool:
        pending: list[Future[tuple[LocalEntry, FileContent]]] = []
        try:
            for item in order:
                pending.append(pool.submit(fn, item))
                if len(pending) >= window:
                    collect(pending.pop(0).result())
            for fut in pending:
                collect(fut.result())
        except BaseException:
            for fut in pending:
                fut.cancel()
            raise


def build_trees(
    session: WriteSession, entries: dict[str, LocalEntry], contents: dict[str, FileContent]
) -> ObjectId:
    """Build and store the trees of a scanned worktree, bottom-up; return the root id."""
    children: dict[str, list[LocalEntry]] = defaultdict(list)
    for e in entries.values():
        parent = e.path.rpartition("/")[0]
        children[parent].append(e)
    dirs = sorted(
        (p for p, e in entries.items() if e.kind == EntryKind.DIR),
        key=lambda p: p.count("/"),
        reverse=True,
    )
    tree_ids: dict[str, ObjectId] = {}
    for d in [*dirs, ""]:
        rows = []
        for e in children.get(d, []):
            name = e.path.rpartition("/")[2]
            if e.kind == EntryKind.FILE:
                c = contents[e.path]
                rows.append(TreeEntry(name, e.kind, e.mode, e.mtime_ns, e.size, c.oid, c.chunks))
            elif e.kind == EntryKind.DIR:
                rows.append(TreeEntry(name, e.kind, e.mode, e.mtime_ns, 0, tree_ids[e.path]))
            else:
                rows.append(
                    TreeEntry(
                        name,
                        e.kind,
                        e.mode,
                        e.mtime_ns,
                        e.size,
                        hash_bytes(os.fsencode(e.target)),
                        target=e.target,
                    )
                )
        rows.sort(key=lambda r: os.fsencode(r.name))
        tree_ids[d] = session.store_tree(Tree(tuple(rows)))
    return tree_ids[""]


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
