"""``repair``: rebuild the index from the packs, and re-upload lost chunks from a worktree.

The index is only a cache of what the packs say about themselves (invariant 5), so it can
always be rebuilt:

1. every pack on the store is read; its blobs are listed from its footer (or, when the
   footer is damaged, by scanning the blob headers from the start) and each blob is
   decompressed and checked against its id — damaged blobs are left out;
2. chunks that some version needs but no intact pack holds are looked for in the
   worktree's files (every candidate is checked against its hash) and uploaded again in
   new packs;
3. one new index segment listing every intact blob is written; only then are the old
   segments deleted (they are derived data, and the new one covers every intact pack
   they listed). Packs are never deleted: repair cannot prove a pack unreachable.

What cannot be recovered is reported with the versions and files it affects.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from dataclasses import dataclass, field

from cas.chunking import Chunker
from cas.compression import compress
from cas.errors import CasError, ObjectNotFoundError
from cas.hashing import hash_bytes
from cas.ids import ObjectId
from cas.index import ChunkIndex, encode_segment
from cas.layout import INDEX, PACKS, index_key, pack_key, parse_object_key
from cas.objects import EntryKind
from cas.packs import (
    KIND_CHUNK,
    KIND_TREE,
    PackEntry,
    PackWriter,
    read_pack_entries,
    scan_pack,
)
from cas.paths import join_path
from cas.progress import NoProgress, Progress
from cas.repository import Repository, WriteSession
from cas.worktree import Worktree, read_path_content

log = logging.getLogger(__name__)


@dataclass
class RepairReport:
    """What repair found and did."""

    packs: int = 0
    blobs: int = 0
    damaged_blobs: list[str] = field(default_factory=list)
    damaged_packs: list[str] = field(default_factory=list)
    # Damaged packs whose blobs all verified: laid out again and written back under their
    # own name (the bytes that match it), so nothing needed repacking.
    restored_packs: list[str] = field(default_factory=list)
    # Packs the old index listed that the store does not show: lost, or (on Drive) still
    # being uploaded by another machine. The rebuilt index leaves them out; if they do
    # appear later, a second repair indexes them again.
    unseen_packs: list[str] = field(default_factory=list)
    repacked_blobs: int = 0
    reuploaded_chunks: int = 0
    reuploaded_bytes: int = 0
    segments_written: int = 0
    segments_removed: int = 0
    unrecoverable: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every version is complete again."""
        return not self.unrecoverable


def _read_pack(
    repo: Repository, pack_id: ObjectId, report: RepairReport | None
) -> tuple[bytes, list[PackEntry], bool]:
    """A pack's bytes, its blobs that verify, and whether the whole pack is intact."""
    key = pack_key(pack_id)
    data = repo.backend.read(key)
    try:
        entries = read_pack_entries(lambda n: data[-n:], len(data), key)
    except CasError:
        try:
            entries = list(scan_pack(data, key))
        except CasError:
            entries = []
    good = []
    for e in entries:
        stored = data[e.offset : e.offset + e.stored_len]
        try:
            repo.decode_blob(e.blob_id, e.codec, e.raw_len, stored, pack_id)
        except CasError:
            if report is not None:
                report.damaged_blobs.append(f"{e.blob_id.hex()} in pack {pack_id.hex()}")
            continue
        good.append(e)
    return data, good, hash_bytes(data) == pack_id


def _restore_in_place(
    repo: Repository, pack_id: ObjectId, data: bytes, good: list[PackEntry]
) -> tuple[bytes, list[PackEntry]] | None:
    """The pack laid out again from its blobs that verify, written back under its own
    name when that rebuilds it exactly (a damaged footer, trailer or blob header, every
    blob intact), with its entries; else None.

    The name is the hash of the bytes, so the bytes that match it are the only ones it
    may hold: writing them over a damaged copy replaces nothing a reader could rely on.
    Repacking instead would make the very same pack, whose create-only write would find
    the damaged copy there and keep it.
    """
    writer = PackWriter()
    for e in sorted(good, key=lambda e: e.offset):
        writer.add(e.blob_id, e.kind, e.codec, e.raw_len, data[e.offset : e.offset + e.stored_len])
    new_id, new_data, entries = writer.seal()
    if new_id != pack_id:
        return None  # a blob is lost or the layout differs: its good blobs are repacked
    repo.backend.write(pack_key(pack_id), new_data)  # replaces the damaged copy whole
    repo.cache.evict(pack_key(pack_id))
    return new_data, entries


def _needed_chunks(repo: Repository, index: ChunkIndex) -> dict[bytes, list[str]]:
    """Chunks some version lists that ``index`` lacks → where they are used."""
    needed: dict[bytes, list[str]] = defaultdict(list)
    seen: set[ObjectId] = set()
    commits: set[ObjectId] = set()
    for ref, _state in repo.refs.all_states().items():
        if ref == "HEAD":
            continue
        for entry in repo.refs.history(ref):
            if entry.target is not None:
                commits.add(entry.target)
    stack = list(commits)
    done: set[ObjectId] = set()
    while stack:
        cid = stack.pop()
        if cid in done:
            continue
        done.add(cid)
        try:
            commit = repo.load_commit(cid)
        except CasError:
            continue
        stack.extend(commit.parents)
        trees = [(commit.tree, "")]
        while trees:
            tid, prefix = trees.pop()
            if tid in seen:
                continue
            seen.add(tid)
            if tid not in index:
                needed[tid].append(f"version {cid.short}:{prefix or '/'} (a folder listing)")
            try:
                tree = repo.load_tree(tid, at_root=not prefix)
            except CasError:
                continue
            for e in tree.entries:
                path = join_path(prefix, e.name)
                if e.kind == EntryKind.DIR:
                    trees.append((e.oid, path))
                elif e.kind == EntryKind.FILE:
                    for c in e.chunks:
                        if c.chunk_id not in index and len(needed[c.chunk_id]) < 5:
                            needed[c.chunk_id].append(f"version {cid.short}:{path}")
    return needed


def repair_store(
    repo: Repository, worktree: Worktree | None = None, *, progress: Progress | None = None
) -> RepairReport:
    """Rebuild the index from the packs; re-upload missing chunks found in ``worktree``."""
    progress = progress or NoProgress()
    report = RepairReport()
    # A zero-byte segment is a Drive "ghost": another machine's upload still on its way.
    # It is neither read nor deleted (its packs may not be visible yet either).
    old_segments = {
        info.key: seg_id
        for info in repo.backend.list(INDEX)
        if (seg_id := parse_object_key(info.key, INDEX)) is not None and info.size
    }
    pack_ids = sorted(
        pid
        for info in repo.backend.list(PACKS)
        if (pid := parse_object_key(info.key, PACKS)) is not None
    )
    on_store = set(pack_ids)
    try:
        report.unseen_packs = sorted(
            pid.hex() for pid, _size in repo.load_index().iter_packs() if pid not in on_store
        )
    except CasError as exc:  # an index that cannot be loaded at all: rebuilt below
        log.info("index not loaded before the repair: %s", exc)
    rebuilt = ChunkIndex()
    intact: dict[ObjectId, tuple[int, list[PackEntry]]] = {}
    damaged: list[ObjectId] = []
    progress.start(len(pack_ids), "packs", "repair")
    for pid in pack_ids:
        try:
            data, good, whole = _read_pack(repo, pid, report)
        except ObjectNotFoundError:
            continue
        report.packs += 1
        report.blobs += len(good)
        if not whole and good:
            restored = _restore_in_place(repo, pid, data, good)
            if restored is not None:
                report.restored_packs.append(pid.hex())
                (data, good), whole = restored, True
        if whole:
            intact[pid] = (len(data), good)
            rebuilt.add_pack(pid, len(data), good)
        else:
            damaged.append(pid)
            report.damaged_packs.append(pid.hex())
        progress.advance(1)
    progress.finish()
    # From here on, reads and dedup go through the rebuilt index only.
    repo.replace_index(rebuilt, superseded=old_segments.values())
    with repo.new_session() as session:
        # The intact blobs of a damaged pack move to new packs, so that no index entry
        # points into a pack that does not match its id; the old pack becomes an orphan.
        for pid in damaged:
            data, good, _whole = _read_pack(repo, pid, None)
            for e in good:
                if session.reserve(e.blob_id):
                    stored = data[e.offset : e.offset + e.stored_len]
                    session.add(e.blob_id, e.kind, e.codec, e.raw_len, stored)
                    report.repacked_blobs += 1
        session.flush()
        needed = _needed_chunks(repo, repo.index)
        _reupload_cached_trees(repo, session, needed, report)
        if needed and worktree is not None:
            _reupload(repo, session, worktree, needed, report)
        session.flush()
        needed = {c: w for c, w in needed.items() if c not in repo.index}
    for oid, where in sorted(needed.items()):
        report.unrecoverable.append((f"blob {ObjectId(oid).hex()}", tuple(where)))
    # What this run wrote, by name: a segment of the repacked blobs may bear the name of
    # an old one (the same packs as a previous repair's), and must stay all the same.
    fresh = set(session.segment_keys)
    if intact:
        segment = encode_segment(intact)
        seg_key = index_key(hash_bytes(segment))
        repo.backend.write(seg_key, segment)
        fresh.add(seg_key)
        report.segments_written += 1
    # Only now, with every intact blob listed by a new segment, drop the old ones.
    for key in old_segments:
        if key not in fresh:
            repo.backend.delete(key)
            repo.cache.evict(key)
            report.segments_removed += 1
    return report


def _reupload_cached_trees(
    repo: Repository, session: WriteSession, needed: dict[bytes, list[str]], report: RepairReport
) -> None:
    """Store again folder listings that only the local cache still has (verified)."""
    for oid in list(needed):
        h = oid.hex()
        data = repo.cache.get(f"trees/{h[:2]}/{h}")
        if data is None or hash_bytes(data) != oid or not session.reserve(ObjectId(oid)):
            continue
        codec, stored = compress(data, repo.config.zstd_level)
        session.add(ObjectId(oid), KIND_TREE, codec, len(data), stored)
        report.reuploaded_chunks += 1
        report.reuploaded_bytes += len(data)


def _reupload(
    repo: Repository,
    session: WriteSession,
    wt: Worktree,
    needed: dict[bytes, list[str]],
    report: RepairReport,
) -> None:
    """Store again every needed chunk that a file in the worktree still holds."""
    chunker = Chunker(repo.config.chunker)
    cache = wt.load_stat_cache()
    want = set(needed)
    for path, e in sorted(wt.scan().items()):
        if not want:
            break
        if e.kind != EntryKind.FILE:
            continue
        content = cache.lookup(e)
        if content is None:
            content = read_path_content(wt.abspath(path), chunker, size_hint=e.size)
            cache.record(e, content)
        offset = 0
        hits = []
        for c in content.chunks:
            if c.chunk_id in want:
                hits.append((offset, c))
            offset += c.size
        if not hits:
            continue
        with open(wt.abspath(path), "rb") as f:
            for off, c in hits:
                data = os.pread(f.fileno(), c.size, off)
                # The file may have changed since it was hashed: trust only what verifies.
                if hash_bytes(data) != c.chunk_id or not session.reserve(c.chunk_id):
                    continue
                codec, stored = compress(data, repo.config.zstd_level, planes=repo.config.planes)
                session.add(c.chunk_id, KIND_CHUNK, codec, len(data), stored)
                want.discard(c.chunk_id)
                report.reuploaded_chunks += 1
                report.reuploaded_bytes += len(data)
    wt.save_stat_cache(cache)
