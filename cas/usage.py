"""``du``: how much each version holds and what it costs in the store.

* **logical bytes** of a version: the sum of its file sizes;
* **unique bytes** of a version: the stored (compressed) bytes of the chunks that no
  other version references — what deleting only this version could free;
* the store's **dedup ratio**: logical bytes of every version ÷ raw bytes of the distinct
  chunks; its **compression ratio**: raw bytes of the distinct chunks ÷ their stored bytes.

Versions are the commits reachable from any branch or tag.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass

from cas.history import iter_log
from cas.ids import ObjectId
from cas.layout import PACKS
from cas.objects import Commit, EntryKind, TreeEntry
from cas.repository import Repository


@dataclass(frozen=True, slots=True)
class VersionUsage:
    """One version's figures."""

    commit_id: ObjectId
    commit: Commit
    names: tuple[str, ...]
    files: int
    logical_bytes: int
    unique_stored_bytes: int


@dataclass(frozen=True, slots=True)
class UsageReport:
    """The whole store's figures."""

    versions: tuple[VersionUsage, ...]
    logical_bytes: int
    distinct_raw_bytes: int
    distinct_stored_bytes: int
    pack_bytes: int
    packs: int

    @property
    def dedup_ratio(self) -> float:
        """Logical bytes of all versions per distinct raw byte."""
        return self.logical_bytes / self.distinct_raw_bytes if self.distinct_raw_bytes else 1.0

    @property
    def compression_ratio(self) -> float:
        """Distinct raw bytes per stored byte."""
        return (
            self.distinct_raw_bytes / self.distinct_stored_bytes
            if self.distinct_stored_bytes
            else 1.0
        )


def _chunks_of_tree(
    repo: Repository, tree_id: ObjectId, memo: dict[ObjectId, frozenset[bytes]]
) -> frozenset[bytes]:
    """Every chunk below a tree (each tree read once, its result kept in ``memo``).

    Iterative, children before parents (a stack of the folders being summed, not one call
    per level), so that any depth is measured.
    """
    got = memo.get(tree_id)
    if got is not None:
        return got
    # Each frame: a tree, its entries not looked at yet, and the chunks found so far.
    stack: list[tuple[ObjectId, Iterator[TreeEntry], set[bytes]]] = [
        (tree_id, iter(repo.load_tree(tree_id).entries), set())
    ]
    while True:
        tid, entries, acc = stack[-1]
        for e in entries:
            if e.kind == EntryKind.FILE:
                acc.update(c.chunk_id for c in e.chunks)
            elif e.kind == EntryKind.DIR:
                sub = memo.get(e.oid)
                if sub is None:
                    stack.append((e.oid, iter(repo.load_tree(e.oid).entries), set()))
                    break  # this frame resumes once the sub-tree is summed
                acc |= sub
        else:
            result = memo[tid] = frozenset(acc)
            stack.pop()
            if not stack:
                return result
            stack[-1][2].update(result)


def measure_usage(repo: Repository) -> UsageReport:
    """Compute the report (reads every tree of every version once)."""
    names: dict[ObjectId, list[str]] = defaultdict(list)
    for ref, state in repo.refs.all_states().items():
        if ref == "HEAD":
            continue
        for h in state.live_heads:
            if h.entry.target is not None:
                names[h.entry.target].append(ref.partition("/")[2])
    index = repo.load_index()
    memo: dict[ObjectId, frozenset[bytes]] = {}
    per_commit: list[tuple[ObjectId, Commit, frozenset[bytes]]] = []
    users: dict[bytes, int] = defaultdict(int)
    for cid, commit in iter_log(repo, list(names)):
        chunks = _chunks_of_tree(repo, commit.tree, memo)
        per_commit.append((cid, commit, chunks))
        for c in chunks:
            users[c] += 1
    raw = stored = 0
    for c in users:
        loc = index.lookup(c)
        if loc is not None:
            raw += loc.raw_len
            stored += loc.stored_len
    versions = []
    for cid, commit, chunks in per_commit:
        unique = 0
        for c in chunks:
            if users[c] == 1:
                loc = index.lookup(c)
                unique += loc.stored_len if loc is not None else 0
        versions.append(
            VersionUsage(
                cid,
                commit,
                tuple(sorted(names.get(cid, []))),
                commit.stats.files,
                commit.stats.bytes,
                unique,
            )
        )
    pack_infos = list(repo.backend.list(PACKS))
    return UsageReport(
        versions=tuple(versions),
        logical_bytes=sum(v.logical_bytes for v in versions),
        distinct_raw_bytes=raw,
        distinct_stored_bytes=stored,
        pack_bytes=sum(i.size for i in pack_infos),
        packs=len(pack_infos),
    )
