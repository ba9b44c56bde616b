"""``verify``: check that every version in the store can be restored, and report all problems.

Levels:

* **structure** (always): every index segment is read from the store and checked against
  its id and decoded (a damaged one is a ``corrupt-index`` problem); every ref entry is
  readable; every commit a ref (or a ref's history) names exists and decodes; every tree
  below it decodes and is safe; every chunk a file lists is in the index; every indexed
  pack exists on the remote with the size the index records. Packs on the remote that no
  readable segment lists are listed from their footers: those holding data a version
  needs are a problem (``unindexed-data``: `cas repair` rebuilds the index), the others
  are *orphans* (leftovers of interrupted commits; not an error), or *damaged* when
  their footer does not verify (kept by repair; nothing refers to them).
* **data** (``read_data``): every pack is downloaded, checked against its id, and every
  blob in it is decompressed and checked against its own id. With ``subset`` only that
  fraction of the indexed packs is read, rotating through all of them across runs (the
  position is kept in the local cache; without one, a run starts at a random pack).

Nothing is raised for a damaged object: each is a :class:`Problem` naming the object and
every version it affects (with one path in each), collected in a :class:`VerifyReport`.
Trees shared by several versions are read once; the versions that reach each tree are
recorded as the walk goes (:class:`_Reach`), so a problem is charged to all of them.
"""

from __future__ import annotations

import json
import logging
import random
from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from cas.codec import decode_tree
from cas.errors import (
    CasError,
    CorruptObjectError,
    IntegrityError,
    MissingDataError,
    ObjectNotFoundError,
)
from cas.hashing import hash_bytes
from cas.ids import ObjectId
from cas.index import ChunkIndex, ParsedSegment, parse_segment
from cas.layout import INDEX, PACKS, pack_key, parse_object_key
from cas.objects import EntryKind, Tree, TreeEntry
from cas.packs import KIND_TREE, PackEntry, read_pack_entries
from cas.paths import join_path
from cas.progress import NoProgress, Progress
from cas.repository import Repository

log = logging.getLogger(__name__)

# Affected versions shown in a problem's message (the report keeps all of them).
MAX_EXAMPLES = 5
# Where the next --read-data-subset run starts, in the local cache.
ROTATION_KEY = "verify-rotation.json"
REPAIR_HINT = "`cas repair` rebuilds the index from the packs"
# Picks where a run without a rotation position starts (a test installs a seeded one).
_RANDOM = random.Random()

# A blob's place in a pack: (blob id, kind, codec, offset, stored_len, raw_len).
_Placed = tuple[bytes, int, int, int, int, int]


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing that is wrong, and what it breaks.

    ``affects`` names every affected version once (``version <short id>:<path>``, newest
    first), or the refs naming a commit that cannot be read; ``str()`` shows the first
    :data:`MAX_EXAMPLES`.
    """

    kind: str
    object: str
    detail: str
    affects: tuple[str, ...] = ()

    def __str__(self) -> str:
        shown = self.affects[:MAX_EXAMPLES]
        more = len(self.affects) - len(shown)
        tail = ""
        if shown:
            tail = f" (affects {', '.join(shown)}{f' and {more} more' if more else ''})"
        return f"{self.kind}: {self.object}: {self.detail}{tail}"


@dataclass
class VerifyReport:
    """What verify looked at and what it found."""

    problems: list[Problem] = field(default_factory=list)
    # Packs no readable index segment lists, by what they are (full hex ids, sorted):
    # leftovers that hold nothing a version needs; packs that hold what versions need (the
    # `unindexed-data` problem); packs whose footer does not verify or, with read_data,
    # whose bytes do not match their id (kept by repair; nothing refers to them).
    orphan_packs: list[str] = field(default_factory=list)
    unindexed_packs: list[str] = field(default_factory=list)
    damaged_packs: list[str] = field(default_factory=list)
    pending_refs: list[str] = field(default_factory=list)
    # Index segments that are empty on the store: a Drive "ghost" of an upload still in
    # progress elsewhere (or lost); not a problem by themselves (keys).
    pending_segments: list[str] = field(default_factory=list)
    segments: int = 0
    refs: int = 0
    commits: int = 0
    trees: int = 0
    files: int = 0
    chunks: int = 0
    packs: int = 0
    packs_read: int = 0
    bytes_read: int = 0
    # The packs read whole by this run, in the order read (full hex ids).
    read_packs: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing is damaged or missing."""
        return not self.problems

    def notes(self) -> list[str]:
        """What is worth knowing but not a problem, one line each (for the CLI)."""
        out = []
        n = len(self.orphan_packs)
        if n:
            out.append(
                f"{n} {'pack is' if n == 1 else 'packs are'} not in any index (left by an "
                "interrupted commit; harmless)"
            )
        out += [
            f"pack {p}: damaged and not in any index (`cas repair` restores or repacks "
            "what is intact in it)"
            for p in self.damaged_packs
        ]
        n = len(self.pending_segments)
        if n:
            out.append(
                f"{n} index {'segment is' if n == 1 else 'segments are'} empty (an upload "
                "still in progress elsewhere? if it lasts, `cas repair`)"
            )
        n = len(self.pending_refs)
        if n:
            out.append(
                f"{n} {'ref entry is' if n == 1 else 'ref entries are'} not readable yet "
                "(upload pending?)"
            )
        return out


@dataclass(frozen=True, slots=True)
class _Draft:
    """A problem whose affected versions are worked out once the walk is complete."""

    kind: str
    object: str
    detail: str
    blobs: tuple[bytes, ...] = ()  # the versions that use these are affected
    fixed: tuple[str, ...] = ()  # or these, as they are


class _Reach:
    """Which versions reach each tree, and by which path.

    The walk reads each tree once, but records every way it is reached: the commits whose
    root it is and every (parent tree, name) that lists it. The versions of a tree are
    worked out only for trees that a problem names (iteratively, parents first, each tree
    once); a tree with one parent shares its parent's set.
    """

    def __init__(self) -> None:
        self.parents: dict[ObjectId, list[tuple[ObjectId, str]]] = defaultdict(list)
        self.roots: dict[ObjectId, list[ObjectId]] = defaultdict(list)
        self.times: dict[ObjectId, int] = {}
        self._versions: dict[ObjectId, frozenset[ObjectId]] = {}

    def is_tree(self, oid: bytes) -> bool:
        """True when the walk met ``oid`` as a tree (read or not)."""
        return oid in self.parents or oid in self.roots

    def versions(self, tree_id: ObjectId) -> frozenset[ObjectId]:
        """Every commit whose tree contains ``tree_id`` (or is it)."""
        memo = self._versions
        stack = [tree_id]
        while stack:
            t = stack[-1]
            if t in memo:
                stack.pop()
                continue
            edges = self.parents.get(t, ())
            todo = [p for p, _name in edges if p not in memo]
            if todo:
                stack.extend(todo)
                continue
            stack.pop()
            sources = [memo[p] for p, _name in edges]
            if t in self.roots:
                sources.append(frozenset(self.roots[t]))
            if len(sources) == 1:
                memo[t] = sources[0]
            else:
                memo[t] = frozenset().union(*sources)
        return memo[tree_id]

    def path(self, tree_id: ObjectId, commit_id: ObjectId) -> str:
        """A path of ``tree_id`` in version ``commit_id`` (``""`` for its root)."""
        names: list[str] = []
        t = tree_id
        while commit_id not in self.roots.get(t, ()):
            for parent, name in self.parents.get(t, ()):
                if commit_id in self.versions(parent):
                    names.append(name)
                    t = parent
                    break
            else:  # pragma: no cover - only asked for versions that reach the tree
                return "?"
        return "/".join(reversed(names))

    def affects(self, uses: Iterable[tuple[ObjectId, str]]) -> tuple[str, ...]:
        """Every version reaching a use — ``(tree, name in it)``, or ``(tree, "")`` for the
        tree itself — once, with the path of its first use, newest version first."""
        found: dict[ObjectId, str] = {}
        done: set[ObjectId] = set()  # trees whose versions are all in ``found``
        for tree_id, name in uses:
            if tree_id in done:
                continue
            done.add(tree_id)
            for cid in self.versions(tree_id):
                if cid not in found:
                    where = self.path(tree_id, cid)
                    found[cid] = join_path(where, name) if name else (where or "/")
            if len(found) == len(self.times):
                break  # every version is affected
        order = sorted(found, key=lambda c: (-self.times.get(c, 0), bytes(c)))
        return tuple(f"version {c.short}:{found[c]}" for c in order)


def verify_store(
    repo: Repository,
    *,
    read_data: bool = False,
    subset: float | None = None,
    progress: Progress | None = None,
) -> VerifyReport:
    """Check the store; see the module docstring for the levels."""
    return _Verifier(repo, progress or NoProgress()).run(read_data, subset)


class _Verifier:
    """One run of verify: what it has learnt so far, and the problems it has found."""

    def __init__(self, repo: Repository, progress: Progress) -> None:
        self.repo = repo
        self.progress = progress
        self.report = VerifyReport()
        self.drafts: list[_Draft] = []
        self.reach = _Reach()
        self.index = ChunkIndex()
        self.remote: dict[ObjectId, int] = {}  # every pack on the store → its size
        # Packs no readable segment lists: those whose footer verifies, with their blobs,
        # and where each of those blobs is; the others, with why.
        self.loose: dict[ObjectId, list[PackEntry]] = {}
        self.loose_blobs: dict[bytes, tuple[ObjectId, PackEntry]] = {}
        self.damaged: dict[ObjectId, str] = {}
        self.ghosts: set[ObjectId] = set()
        self.needed_loose: dict[ObjectId, set[bytes]] = defaultdict(set)
        self.missing: set[bytes] = set()
        self.seen_trees: set[ObjectId] = set()
        self.read_trees: dict[ObjectId, bool] = {}  # tree → read at the root or not
        self.loose_trees: dict[ObjectId, Tree] = {}  # trees read from unindexed packs
        self.uses: dict[bytes, list[tuple[ObjectId, str]]] = defaultdict(list)

    def run(self, read_data: bool, subset: float | None) -> VerifyReport:
        self._check_segments()
        self._list_packs()
        self._check_history()
        self._sort_loose_packs()
        self._check_packs()
        if read_data or subset is not None:
            self._check_data(subset, also_loose=subset is None)
        self._finish()
        return self.report

    # ------------------------------------------------------------------ index

    def _check_segments(self) -> None:
        """Read every index segment from the store and check it; index what passes.

        Verify judges the store as a fresh runtime sees it, so it builds its own index
        from the segments on the store, never from copies in the local cache (those can
        hide a segment damaged since). A good segment is put in the cache, so that the
        repository, loading its index to read trees, does not fetch it again; a damaged
        one is a ``corrupt-index`` problem (the repository skips it with a warning).
        """
        repo = self.repo
        listed = [
            (key, seg_id)
            for key in repo.backend.list_keys(INDEX)
            if (seg_id := parse_object_key(key, INDEX)) is not None
        ]

        def check(item: tuple[str, ObjectId]) -> ParsedSegment | str | None:
            key, seg_id = item
            try:
                data = repo.backend.read(key)
            except ObjectNotFoundError:
                return None  # deleted since listed (a repair replaced it)
            if not data:
                return ""  # a Drive ghost: pending, not damaged
            if hash_bytes(data) != seg_id:
                return "content does not match its id (damaged or truncated)"
            try:
                parsed = parse_segment(data, f"index segment {seg_id.short}")
            except CorruptObjectError as exc:
                return exc.reason
            if not repo.cache.has(key):
                repo.cache.put(key, data)
            return parsed

        good = []
        for (key, _seg_id), got in zip(listed, repo.in_parallel(check, listed), strict=True):
            if got is None:
                continue
            self.report.segments += 1
            if isinstance(got, ParsedSegment):
                good.append(got)
                continue
            if not got:
                self.report.pending_segments.append(key)
                continue
            self.drafts.append(
                _Draft(
                    "corrupt-index",
                    f"index segment {key}",
                    f"{got}; the packs it lists are not indexed until {REPAIR_HINT}",
                )
            )
        self.index.add_parsed(good)

    def _list_packs(self) -> None:
        """List ``packs/``, and every pack no readable segment lists from its footer."""
        repo = self.repo
        for info in repo.backend.list(PACKS):
            pid = parse_object_key(info.key, PACKS)
            if pid is not None:
                self.remote[pid] = info.size
        indexed = {pid for pid, _size in self.index.iter_packs()}
        loose = sorted(pid for pid, size in self.remote.items() if pid not in indexed and size)

        def footer(pack_id: ObjectId) -> list[PackEntry] | str | None:
            key = pack_key(pack_id)
            try:
                return read_pack_entries(
                    lambda n: repo.backend.read_range(key, -n, n), self.remote[pack_id], key
                )
            except ObjectNotFoundError:
                return None  # deleted since listed
            except CorruptObjectError as exc:
                return exc.reason
            except IntegrityError as exc:  # shorter than listed
                return str(exc)

        for pid, got in zip(loose, repo.in_parallel(footer, loose), strict=True):
            if isinstance(got, str):
                self.damaged[pid] = got
            elif got is not None:
                self.loose[pid] = got
                for e in got:
                    self.loose_blobs.setdefault(e.blob_id, (pid, e))
        # A zero-byte pack is a Drive "ghost" of an upload still in progress: an orphan.
        self.ghosts = {pid for pid, size in self.remote.items() if pid not in indexed and not size}

    # ------------------------------------------------------------------ history

    def _check_history(self) -> None:
        repo, report = self.repo, self.report
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
                self.drafts.append(
                    _Draft(
                        "missing-commit",
                        f"commit {cid.hex()}",
                        "named by a ref but absent",
                        fixed=(where,),
                    )
                )
                continue
            except CasError as exc:
                self.drafts.append(
                    _Draft("corrupt-commit", f"commit {cid.hex()}", str(exc), fixed=(where,))
                )
                continue
            report.commits += 1
            self.reach.times[cid] = commit.time_ns
            self.reach.roots[commit.tree].append(cid)
            stack.extend(commit.parents)
            self._walk_tree(commit.tree)

    def _walk_tree(self, root: ObjectId) -> None:
        """Read every tree below ``root`` not read yet and check its files' chunks.

        Depth first, in entry order, with a stack of the folders being listed (not one
        call per level: any depth is walked). A tree met again is not read again, but the
        way it was reached is recorded (:class:`_Reach`).
        """
        if root in self.seen_trees:
            return
        self.seen_trees.add(root)
        tree = self._load_tree(root, at_root=True)
        if tree is None:
            return
        report, parents = self.report, self.reach.parents
        stack: list[tuple[ObjectId, Iterator[TreeEntry]]] = [(root, iter(tree.entries))]
        while stack:
            tid, entries = stack[-1]
            e = next(entries, None)
            if e is None:
                stack.pop()
                continue
            if e.kind == EntryKind.DIR:
                parents[e.oid].append((tid, e.name))
                if e.oid not in self.seen_trees:
                    self.seen_trees.add(e.oid)
                    sub = self._load_tree(e.oid, at_root=False)
                    if sub is not None:
                        stack.append((e.oid, iter(sub.entries)))
            elif e.kind == EntryKind.FILE:
                report.files += 1
                for c in e.chunks:
                    report.chunks += 1
                    if c.chunk_id not in self.index:
                        self._unindexed(c.chunk_id, tid, e.name)

    def _unindexed(self, chunk_id: bytes, tree_id: ObjectId, name: str) -> None:
        """A chunk no readable segment lists: in an unindexed pack, or missing."""
        self.uses[chunk_id].append((tree_id, name))
        there = self.loose_blobs.get(chunk_id)
        if there is not None:
            self.needed_loose[there[0]].add(chunk_id)
        elif chunk_id not in self.missing:
            self.missing.add(chunk_id)
            self.drafts.append(
                _Draft(
                    "missing-chunk",
                    f"chunk {chunk_id.hex()}",
                    "in no indexed pack",
                    blobs=(chunk_id,),
                )
            )

    def _load_tree(self, tree_id: ObjectId, *, at_root: bool) -> Tree | None:
        """A tree to walk, or None when it cannot be read (a problem is recorded).

        A tree the index lists is loaded as usual (the local cache first); one that only
        an unindexed pack holds is read from there, so that the walk goes on below it.
        """
        try:
            if tree_id in self.index:
                tree = self.repo.load_tree(tree_id, at_root=at_root)
            elif tree_id in self.loose_blobs:
                tree = self._read_loose_tree(tree_id, at_root)
            else:
                self._tree_problem(
                    "missing-tree", tree_id, "in no pack that the index or a pack footer lists"
                )
                return None
        except (ObjectNotFoundError, MissingDataError) as exc:
            self._tree_problem("missing-tree", tree_id, str(exc))
            return None
        except CasError as exc:
            self._tree_problem("corrupt-tree", tree_id, str(exc))
            return None
        self.report.trees += 1
        self.read_trees[tree_id] = at_root
        return tree

    def _read_loose_tree(self, tree_id: ObjectId, at_root: bool) -> Tree:
        pack_id, e = self.loose_blobs[tree_id]
        self.needed_loose[pack_id].add(tree_id)  # needed, whether it reads or not
        stored = self.repo.backend.read_range(pack_key(pack_id), e.offset, e.stored_len)
        raw = self.repo.decode_blob(tree_id, e.codec, e.raw_len, stored, pack_id)
        tree = decode_tree(raw, f"tree {tree_id.short}", at_root=at_root)
        self.loose_trees[tree_id] = tree
        return tree

    def _tree_problem(self, kind: str, tree_id: ObjectId, detail: str) -> None:
        self.drafts.append(_Draft(kind, f"tree {tree_id.hex()}", detail, blobs=(tree_id,)))

    def _sort_loose_packs(self) -> None:
        """Unindexed packs: holding what versions need (a problem), or orphans."""
        report = self.report
        needed = self.needed_loose
        report.unindexed_packs = sorted(p.hex() for p in needed)
        report.orphan_packs = sorted(
            p.hex() for p in self.loose.keys() | self.ghosts if p not in needed
        )
        report.damaged_packs = sorted(p.hex() for p in self.damaged)
        if not needed:
            return
        blobs = sorted(b for held in needed.values() for b in held)
        trees = sum(1 for b in blobs if self.reach.is_tree(b))
        ids = report.unindexed_packs
        if len(ids) == 1:
            what = f"pack {ids[0]}"
        else:
            shown = ", ".join(ids[:3]) + (f" and {len(ids) - 3} more" if len(ids) > 3 else "")
            what = f"{len(ids)} packs ({shown})"
        self.drafts.append(
            _Draft(
                "unindexed-data",
                what,
                f"{_count(len(blobs) - trees, 'chunk')} and {_count(trees, 'folder listing')} "
                f"that versions need are in packs no readable index segment lists, so reads "
                f"fail until {REPAIR_HINT}",
                blobs=tuple(blobs),
            )
        )

    # ------------------------------------------------------------------ packs

    def _blobs_by_pack(self) -> dict[ObjectId, list[_Placed]]:
        out: dict[ObjectId, list[_Placed]] = defaultdict(list)
        for bid, loc in self.index.iter_blobs():
            out[loc.pack_id].append(
                (bid, loc.kind, loc.codec, loc.offset, loc.stored_len, loc.raw_len)
            )
        return out

    def _check_packs(self) -> None:
        report = self.report
        blobs_by_pack: dict[ObjectId, list[_Placed]] | None = None
        for pid, size in self.index.iter_packs():
            report.packs += 1
            actual = self.remote.get(pid)
            if actual == size:
                continue
            if blobs_by_pack is None:
                blobs_by_pack = self._blobs_by_pack()
            blobs = tuple(b[0] for b in blobs_by_pack[pid])
            if actual is None:
                self.drafts.append(
                    _Draft(
                        "missing-pack",
                        f"pack {pid.hex()}",
                        "listed in the index, absent on the store",
                        blobs=blobs,
                    )
                )
            else:
                self.drafts.append(
                    _Draft(
                        "pack-size",
                        f"pack {pid.hex()}",
                        f"{actual} bytes on the store, {size} in the index (truncated?)",
                        blobs=blobs,
                    )
                )

    def _check_data(self, subset: float | None, *, also_loose: bool) -> None:
        """Read packs whole: the indexed ones (or the next ``subset`` of them), and with
        ``also_loose`` the unindexed ones whose footer verifies."""
        index = self.index
        packs = sorted(pid for pid, _size in index.iter_packs())
        chosen = _rotate(self.repo, packs, subset) if subset is not None else packs
        blobs_by_pack = self._blobs_by_pack()
        todo: list[tuple[ObjectId, list[_Placed], int]] = [
            (pid, blobs_by_pack[pid], index.pack_size(pid) or 0) for pid in chosen
        ]
        if also_loose:
            for pid, entries in sorted(self.loose.items()):
                wanted = self.needed_loose.get(pid, set())
                placed: list[_Placed] = [
                    (e.blob_id, e.kind, e.codec, e.offset, e.stored_len, e.raw_len)
                    for e in entries
                    if e.blob_id in wanted
                ]
                todo.append((pid, placed, self.remote[pid]))
        self.progress.start(sum(size for _p, _b, size in todo), "B", "verify")
        try:
            for pid, placed, size in todo:
                self._read_pack(pid, placed)
                self.progress.advance(size)
        finally:
            self.progress.finish()

    def _read_pack(self, pack_id: ObjectId, blobs: list[_Placed]) -> None:
        """Download one pack; check it against its id and ``blobs`` against their own."""
        repo, report = self.repo, self.report
        key = pack_key(pack_id)
        try:
            data = repo.backend.read(key)
        except ObjectNotFoundError:
            return  # already reported as missing-pack, or deleted since listed
        report.packs_read += 1
        report.bytes_read += len(data)
        report.read_packs.append(pack_id.hex())
        damaged: list[bytes] = []
        for bid, kind, codec, offset, stored_len, raw_len in blobs:
            stored = data[offset : offset + stored_len]
            try:
                repo.decode_blob(ObjectId(bid), codec, raw_len, stored, pack_id)
            except CasError as exc:
                damaged.append(bid)
                what = "tree" if kind == KIND_TREE else "chunk"
                detail = (
                    exc.reason
                    if isinstance(exc, CorruptObjectError)
                    else "bytes do not match its id"
                )
                self.drafts.append(
                    _Draft(
                        f"corrupt-{what}",
                        f"{what} {bid.hex()} in pack {pack_id.hex()}",
                        detail,
                        blobs=(bid,),
                    )
                )
        if hash_bytes(data) == pack_id:
            return
        repo.cache.evict(key)
        if pack_id in self.loose and pack_id not in self.needed_loose:
            # An unindexed pack nothing needs (say, kept by repair): damaged, not a problem.
            report.orphan_packs.remove(pack_id.hex())
            report.damaged_packs = sorted([*report.damaged_packs, pack_id.hex()])
            return
        detail = "content does not match its id"
        try:
            read_pack_entries(lambda n: data[-n:], len(data), key)
        except CasError as exc:
            detail += f"; {exc}"
        self.drafts.append(
            _Draft(
                "corrupt-pack",
                f"pack {pack_id.hex()}",
                f"{detail}; {len(damaged)} of {len(blobs)} blobs damaged",
                blobs=tuple(damaged),
            )
        )

    # ------------------------------------------------------------------ report

    def _finish(self) -> None:
        """Turn the drafts into problems, each naming every version it affects."""
        reach = self.reach
        wanted = {
            b for d in self.drafts for b in d.blobs if b not in self.uses and not reach.is_tree(b)
        }
        if wanted:
            self._find_uses(wanted)
        for d in self.drafts:
            affects = d.fixed
            if d.blobs:
                affects = reach.affects(self._uses_of(d.blobs))
            self.report.problems.append(Problem(d.kind, d.object, d.detail, affects))

    def _uses_of(self, blobs: Iterable[bytes]) -> Iterator[tuple[ObjectId, str]]:
        for b in blobs:
            if self.reach.is_tree(b):
                yield ObjectId(b), ""
            yield from self.uses.get(b, ())

    def _find_uses(self, wanted: set[bytes]) -> None:
        """Record where the files of every tree read list any of ``wanted`` (one more pass
        over the trees, made only when a problem found after the walk needs it)."""
        for tree_id, at_root in self.read_trees.items():
            tree = self.loose_trees.get(tree_id)
            if tree is None:
                try:
                    tree = self.repo.load_tree(tree_id, at_root=at_root)
                except CasError:
                    continue  # read once already: only a store changing under us
            for e in tree.entries:
                if e.kind == EntryKind.FILE:
                    for c in e.chunks:
                        if c.chunk_id in wanted:
                            self.uses[c.chunk_id].append((tree_id, e.name))


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _rotate(repo: Repository, packs: list[ObjectId], subset: float) -> list[ObjectId]:
    """The next ``subset`` share of ``packs`` (sorted), continuing where the last run
    stopped.

    A *cycle* starts at an *origin* pack and reads every pack once, in id order, wrapping
    round; each run takes the next ``max(1, round(len(packs) × subset))`` packs, the last
    run of a cycle only those left, so the runs of one cycle read disjoint sets that
    together cover every pack once; the next cycle starts again at the origin. The origin
    and the last pack read are kept in the local cache (by id, so packs written or
    deleted meanwhile shift nothing). Without them (a fresh runtime: the store is never
    written by verify, so the position cannot live there) a new cycle starts at a random
    pack, so that fresh runtimes do not all check the same packs.
    """
    n = len(packs)
    if not n:
        return []
    count = max(1, round(n * subset))
    origin, after = _read_position(repo)
    if origin is None:
        origin, after = packs[_RANDOM.randrange(n)], None
    o = bisect_left(packs, origin) % n
    start = o if after is None else bisect_right(packs, after) % n
    left = (o - start) % n or n
    chosen = [packs[(start + i) % n] for i in range(min(count, left))]
    done = len(chosen) == left
    state = {"origin": packs[o].hex(), "after": None if done else chosen[-1].hex()}
    repo.cache.put(ROTATION_KEY, json.dumps(state).encode())
    return chosen


def _read_position(repo: Repository) -> tuple[ObjectId | None, ObjectId | None]:
    """(origin, last pack read) of the rotation, or (None, None) when there is none."""
    raw = repo.cache.get(ROTATION_KEY)
    if raw is None:
        return None, None
    try:
        state = json.loads(raw)
        origin = ObjectId.parse(state["origin"])
        after = None if state["after"] is None else ObjectId.parse(state["after"])
    except (ValueError, KeyError, TypeError):
        return None, None  # an older format, or damaged: start a new cycle
    return origin, after
