"""``verify``: check that every version in the store can be restored, and report all problems.

Levels:

* **structure** (always): every ref entry is readable; every commit a ref (or a ref's
  history) names exists and decodes; every tree below it decodes and is safe; every chunk
  a file lists is in the index; every indexed pack exists on the remote with the size the
  index records. Packs on the remote that no index segment lists are reported as
  *orphans* (leftovers of interrupted commits; not an error).
* **data** (``read_data``): every pack is downloaded, checked against its id, and every
  blob in it is decompressed and checked against its own id. With ``subset`` only that
  fraction of the packs is read, rotating through all packs across runs (the position is
  kept in the local cache; losing it only restarts the rotation).

Nothing is raised for a damaged object: each is a :class:`Problem` naming the object and
the versions and files it affects, collected in a :class:`VerifyReport`.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from dataclasses import dataclass, field

from cas.errors import (
    CasError,
    CorruptObjectError,
    IntegrityError,
    MissingDataError,
    ObjectNotFoundError,
)
from cas.hashing import hash_bytes
from cas.ids import ObjectId
from cas.layout import PACKS, pack_key, parse_object_key
from cas.objects import EntryKind
from cas.packs import KIND_TREE, read_pack_entries
from cas.paths import join_path
from cas.progress import NoProgress, Progress
from cas.repository import Repository

log = logging.getLogger(__name__)

MAX_EXAMPLES = 5


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing that is wrong, and what it breaks."""

    kind: str
    object: str
    detail: str
    affects: tuple[str, ...] = ()

    def __str__(self) -> str:
        tail = f" (affects {', '.join(self.affects)})" if self.affects else ""
        return f"{self.kind}: {self.object}: {self.detail}{tail}"


@dataclass
class VerifyReport:
    """What verify looked at and what it found."""

    problems: list[Problem] = field(default_factory=list)
    orphan_packs: list[str] = field(default_factory=list)
    pending_refs: list[str] = field(default_factory=list)
    refs: int = 0
    commits: int = 0
    trees: int = 0
    files: int = 0
    chunks: int = 0
    packs: int = 0
    packs_read: int = 0
    bytes_read: int = 0

    @property
    def ok(self) -> bool:
        """True when nothing is damaged or missing."""
        return not self.problems


class _Usage:
    """Which versions and files use each blob (a few examples per blob)."""

    def __init__(self) -> None:
        self.by_blob: dict[bytes, list[str]] = defaultdict(list)

    def add(self, blob: bytes, where: str) -> None:
        uses = self.by_blob[blob]
        if len(uses) < MAX_EXAMPLES:
            uses.append(where)

    def of(self, blobs: list[bytes] | set[bytes]) -> tuple[str, ...]:
        out: list[str] = []
        for b in blobs:
            for w in self.by_blob.get(b, []):
                if w not in out:
                    out.append(w)
                if len(out) >= MAX_EXAMPLES:
                    return tuple(out)
        return tuple(out)


def verify_store(
    repo: Repository,
    *,
    read_data: bool = False,
    subset: float | None = None,
    progress: Progress | None = None,
) -> VerifyReport:
    """Check the store; see the module docstring for the levels."""
    progress = progress or NoProgress()
    report = VerifyReport()
    try:
        index = repo.load_index()
    except IntegrityError as exc:
        report.problems.append(Problem("corrupt-index", "index", str(exc)))
        return report
    usage = _Usage()
    _check_history(repo, report, usage)
    _check_packs(repo, report, usage)
    if read_data or subset is not None:
        packs = sorted(pid for pid, _size in index.iter_packs())
        chosen = _rotate(repo, packs, subset) if subset is not None else packs
        blobs_by_pack: dict[ObjectId, list[bytes]] = defaultdict(list)
        for bid, loc in index.iter_blobs():
            blobs_by_pack[loc.pack_id].append(bid)
        progress.start(sum(index.pack_size(p) or 0 for p in chosen), "B", "verify")
        try:
            for pid in chosen:
                _read_pack(repo, pid, blobs_by_pack[pid], report, usage)
                progress.advance(index.pack_size(pid) or 0)
        finally:
            progress.finish()
    return report


def _check_history(repo: Repository, report: VerifyReport, usage: _Usage) -> None:
    starts: dict[ObjectId, list[str]] = defaultdict(list)
    for ref, state in repo.refs.all_states().items():
        report.refs += 1
        report.pending_refs.extend(state.unreadable)
        if ref == "HEAD":
            continue
        label = ref.partition("/")[2]
        for entry in repo.refs.history(ref):
            if entry.target is not None:
                starts[entry.target].append(label)
    seen_commits: set[ObjectId] = set()
    seen_trees: set[ObjectId] = set()
    stack = list(starts)
    while stack:
        cid = stack.pop()
        if cid in seen_commits:
            continue
        seen_commits.add(cid)
        where = ", ".join(sorted(set(starts.get(cid, [])))) or cid.short
        try:
            commit = repo.load_commit(cid)
        except ObjectNotFoundError:
            report.problems.append(
                Problem(
                    "missing-commit", f"commit {cid.hex()}", "named by a ref but absent", (where,)
                )
            )
            continue
        except CasError as exc:
            report.problems.append(
                Problem("corrupt-commit", f"commit {cid.hex()}", str(exc), (where,))
            )
            continue
        report.commits += 1
        stack.extend(commit.parents)
        _walk_tree(repo, commit.tree, "", f"version {cid.short}", seen_trees, report, usage)


def _walk_tree(
    repo: Repository,
    tree_id: ObjectId,
    prefix: str,
    version: str,
    seen: set[ObjectId],
    report: VerifyReport,
    usage: _Usage,
) -> None:
    usage.add(tree_id, f"{version}:{prefix or '/'}")
    if tree_id in seen:
        return
    seen.add(tree_id)
    try:
        tree = repo.load_tree(tree_id, at_root=not prefix)
    except (ObjectNotFoundError, MissingDataError) as exc:
        report.problems.append(
            Problem(
                "missing-tree", f"tree {tree_id.hex()}", str(exc), (f"{version}:{prefix or '/'}",)
            )
        )
        return
    except CasError as exc:
        report.problems.append(
            Problem(
                "corrupt-tree", f"tree {tree_id.hex()}", str(exc), (f"{version}:{prefix or '/'}",)
            )
        )
        return
    report.trees += 1
    chunk_index = repo.load_index()
    for e in tree.entries:
        path = join_path(prefix, e.name)
        if e.kind == EntryKind.DIR:
            _walk_tree(repo, e.oid, path, version, seen, report, usage)
        elif e.kind == EntryKind.FILE:
            report.files += 1
            for c in e.chunks:
                report.chunks += 1
                usage.add(c.chunk_id, f"{version}:{path}")
                if c.chunk_id not in chunk_index:
                    report.problems.append(
                        Problem(
                            "missing-chunk",
                            f"chunk {c.chunk_id.hex()}",
                            "in no indexed pack",
                            (f"{version}:{path}",),
                        )
                    )


def _check_packs(repo: Repository, report: VerifyReport, usage: _Usage) -> None:
    index = repo.load_index()
    remote: dict[ObjectId, int] = {}
    for info in repo.backend.list(PACKS):
        pid = parse_object_key(info.key, PACKS)
        if pid is not None:
            remote[pid] = info.size
    blobs_by_pack: dict[ObjectId, list[bytes]] = defaultdict(list)
    for bid, loc in index.iter_blobs():
        blobs_by_pack[loc.pack_id].append(bid)
    for pid, size in index.iter_packs():
        report.packs += 1
        actual = remote.get(pid)
        if actual is None:
            report.problems.append(
                Problem(
                    "missing-pack",
                    f"pack {pid.hex()}",
                    "listed in the index, absent on the store",
                    usage.of(blobs_by_pack[pid]),
                )
            )
        elif actual != size:
            report.problems.append(
                Problem(
                    "pack-size",
                    f"pack {pid.hex()}",
                    f"{actual} bytes on the store, {size} in the index (truncated?)",
                    usage.of(blobs_by_pack[pid]),
                )
            )
    known = {pid for pid, _s in index.iter_packs()}
    report.orphan_packs = sorted(pid.hex() for pid in remote if pid not in known)


def _read_pack(
    repo: Repository, pack_id: ObjectId, blobs: list[bytes], report: VerifyReport, usage: _Usage
) -> None:
    """Download one pack; check it against its id and every blob against its own."""
    index = repo.load_index()
    key = pack_key(pack_id)
    try:
        data = repo.backend.read(key)
    except ObjectNotFoundError:
        return  # already reported as missing-pack
    report.packs_read += 1
    report.bytes_read += len(data)
    damaged: list[bytes] = []
    for bid in blobs:
        loc = index.lookup(bid)
        if loc is None or loc.pack_id != pack_id:
            continue
        stored = data[loc.offset : loc.offset + loc.stored_len]
        try:
            repo.decode_blob(ObjectId(bid), loc.codec, loc.raw_len, stored, pack_id)
        except CasError as exc:
            damaged.append(bid)
            what = "tree" if loc.kind == KIND_TREE else "chunk"
            detail = (
                exc.reason if isinstance(exc, CorruptObjectError) else "bytes do not match its id"
            )
            report.problems.append(
                Problem(
                    f"corrupt-{what}",
                    f"{what} {bid.hex()} in pack {pack_id.hex()}",
                    detail,
                    usage.of([bid]),
                )
            )
    if hash_bytes(data) != pack_id:
        detail = "content does not match its id"
        try:
            read_pack_entries(lambda n: data[-n:], len(data), key)
        except CasError as exc:
            detail += f"; {exc}"
        report.problems.append(
            Problem(
                "corrupt-pack",
                f"pack {pack_id.hex()}",
                f"{detail}; {len(damaged)} of {len(blobs)} blobs damaged",
                usage.of(damaged),
            )
        )
        repo.cache.evict(key)


def _rotate(repo: Repository, packs: list[ObjectId], subset: float) -> list[ObjectId]:
    """The next ``subset`` share of ``packs``, continuing where the last run stopped."""
    if not packs:
        return []
    count = max(1, round(len(packs) * subset))
    state_key = "verify-rotation.json"
    start = 0
    raw = repo.cache.get(state_key)
    if raw is not None:
        try:
            start = int(json.loads(raw)["next"]) % len(packs)
        except (ValueError, KeyError, TypeError):
            start = 0
    chosen = [packs[(start + i) % len(packs)] for i in range(min(count, len(packs)))]
    repo.cache.put(state_key, json.dumps({"next": (start + count) % len(packs)}).encode())
    return chosen
