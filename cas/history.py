"""Reading history: resolving refs, walking trees and commits, diffing versions.

A *ref* given by a user is, in this order of preference: ``HEAD`` (the store's default
branch), a tag, a branch, or a commit id or unique prefix of one (at least 4 hex digits).
``tags/x`` and ``heads/x`` are accepted to break a tie.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Iterator
from dataclasses import dataclass

from cas.errors import (
    AmbiguousRefError,
    CasError,
    HashMismatchError,
    MissingDataError,
    ObjectNotFoundError,
    PathNotFoundError,
    RefConflictError,
    RefNotFoundError,
    ShortReadError,
)
from cas.hashing import hash_bytes
from cas.ids import ObjectId, is_hex_prefix
from cas.objects import Commit, EntryKind, TreeEntry
from cas.paths import join_path, split_path
from cas.refs import RefState
from cas.repository import Repository

MIN_PREFIX = 4
_EMPTY_HEX = hash_bytes(b"").hex()  # what a zero-byte Drive "ghost" hashes to
# Ref entries younger than this get a full visibility check (every pack) when resolved.
RECENT_NS = 24 * 3600 * 10**9


@dataclass(frozen=True, slots=True)
class Resolved:
    """A user's ref resolved to a commit.

    ``pending`` lists newer commits of the ref that were skipped because their data is
    not all visible on the store yet (an upload still in progress elsewhere).
    """

    commit_id: ObjectId
    kind: str  # "branch", "tag" or "commit"
    name: str  # the branch or tag name, or the full commit hex
    pending: tuple[ObjectId, ...] = ()
    # Resolved with ``defer_packs``: the version's packs are still to be checked
    # (:func:`packs_problem`) before anything is written from them.
    packs_unchecked: bool = False


@dataclass(frozen=True, slots=True)
class Change:
    """One difference between two versions."""

    path: str
    status: str  # "added", "deleted", "modified"
    old: TreeEntry | None
    new: TreeEntry | None


def default_branch(repo: Repository) -> str:
    """The branch the store's HEAD names (``main`` when unset)."""
    sym = repo.refs.state("HEAD").symbolic
    return sym.partition("/")[2] if sym.startswith("heads/") else "main"


def _from_state(
    repo: Repository, state: RefState, kind: str, name: str, defer_packs: bool = False
) -> Resolved | None:
    if not state.exists or state.target is None:
        return None
    if state.diverged and kind == "branch":
        heads = ", ".join(h.entry.target.short for h in state.live_heads if h.entry.target)
        raise RefConflictError(
            f"branch {name!r} has diverged: it has several heads ({heads})",
            hint=f"pick one with `cas branch -f {name} COMMIT`; both stay in `cas log --all`",
        )
    pending: list[ObjectId] = []
    first_error: CasError | None = None
    for cand in state.candidates():
        entry = cand.entry
        if entry.target is None:
            if not pending:
                return None  # the newest visible step deleted the ref
            continue
        if defer_packs and _packs_to_probe(repo, entry.target, entry.time_ns):
            problem = _commit_problem(repo, entry.target)
            if problem is None:
                return Resolved(entry.target, kind, name, tuple(pending), packs_unchecked=True)
        else:
            problem = _visibility_problem(repo, entry.target, entry.time_ns)
        if problem is None:
            return Resolved(entry.target, kind, name, tuple(pending))
        first_error = first_error or problem
        pending.append(entry.target)
    # Nothing is visible: report why the newest could not be read (real damage shows here).
    assert first_error is not None
    raise first_error


def _seen_key(commit_id: ObjectId) -> str:
    return f"visible/{commit_id.hex()}"


def _packs_to_probe(repo: Repository, commit_id: ObjectId, written_ns: int) -> bool:
    """True when a version's packs must be checked before it is trusted: a recent entry
    on a store that does not make writes visible in order, not checked here before."""
    return (
        not repo.backend.capabilities.ordered_visibility
        and time.time_ns() - written_ns <= RECENT_NS
        and not repo.cache.has(_seen_key(commit_id))
    )


def _commit_problem(repo: Repository, commit_id: ObjectId) -> CasError | None:
    """Why a version's commit or root tree cannot be read yet, or None."""
    try:
        repo.load_tree(repo.load_commit(commit_id).tree, at_root=True)
    except (ObjectNotFoundError, MissingDataError, HashMismatchError, ShortReadError) as exc:
        return exc
    return None


def _visibility_problem(repo: Repository, commit_id: ObjectId, written_ns: int) -> CasError | None:
    """Why a version cannot be read yet (its objects not all visible), or None.

    DriveFS uploads files in its own order, after the writer has moved on, so another
    machine may see a ref entry before the commit, trees or packs it reaches. The commit
    and root tree are always checked; for an entry younger than :data:`RECENT_NS` every
    pack the version needs is checked too — unless the store makes every write visible
    everywhere once it returns (``ordered_visibility``, S3): then the write order
    (invariant 2) alone puts the packs there before the entry.
    """
    if repo.cache.has(_seen_key(commit_id)):
        return None  # checked whole before, on this machine
    problem = _commit_problem(repo, commit_id)
    if problem is not None or not _packs_to_probe(repo, commit_id, written_ns):
        return problem
    return packs_problem(repo, commit_id)


def packs_problem(repo: Repository, commit_id: ObjectId) -> CasError | None:
    """Why a version's packs are not all on the store yet (say, still on their way from
    another machine's Drive), or None, which is remembered on this machine. Its commit
    and trees must be readable."""
    try:
        commit = repo.load_commit(commit_id)
        packs: set[ObjectId] = set()
        for _path, e in iter_tree(repo, commit.tree):
            for c in e.chunks:
                loc = repo.locate(c.chunk_id)
                if loc is None:
                    raise MissingDataError(f"chunk {c.chunk_id.hex()} is in no indexed pack yet")
                packs.add(loc.pack_id)
        missing = repo.missing_packs(sorted(packs))
        if missing:
            raise MissingDataError(f"pack {missing[0].hex()} is not on the store yet")
    except (ObjectNotFoundError, MissingDataError, HashMismatchError, ShortReadError) as exc:
        return exc
    repo.cache.put(_seen_key(commit_id), b"")
    return None


def resolve_ref(repo: Repository, ref: str, *, defer_packs: bool = False) -> Resolved:
    """Resolve a user's ref to a commit.

    With ``defer_packs``, the newest entry whose commit and root tree are readable is
    taken without checking that its packs are all on the store where that check is due
    (a recent entry on a Drive mount: ``Resolved.packs_unchecked``); the caller runs
    :func:`packs_problem` itself, beside its own work, before it writes anything, and
    resolves again without ``defer_packs`` if a pack is missing.

    Raises:
        RefNotFoundError: nothing matches.
        AmbiguousRefError: a commit-id prefix matches several commits.
        RefConflictError: the branch has diverged.
    """
    ref = ref.strip()
    if ref == "HEAD":
        branch = default_branch(repo)
        found = _from_state(repo, repo.refs.state(f"heads/{branch}"), "branch", branch, defer_packs)
        if found is None:
            raise RefNotFoundError(ref)
        return found
    if ref.startswith(("tags/", "heads/")):
        kind = "tag" if ref.startswith("tags/") else "branch"
        found = _from_state(repo, repo.refs.state(ref), kind, ref.partition("/")[2], defer_packs)
        if found is None:
            raise RefNotFoundError(ref)
        return found
    for kind, prefix in (("tag", "tags/"), ("branch", "heads/")):
        try:
            found = _from_state(repo, repo.refs.state(prefix + ref), kind, ref, defer_packs)
        except ValueError:
            found = None
        if found is not None:
            return found
    text = ref.lower()
    if len(text) >= MIN_PREFIX and is_hex_prefix(text):
        if len(text) == 64:
            oid = ObjectId.parse(text)
            if repo.has_commit(oid):
                return Resolved(oid, "commit", text)
        else:
            matches = [c for c in repo.iter_commit_ids() if c.hex().startswith(text)]
            if len(matches) == 1:
                return Resolved(matches[0], "commit", matches[0].hex())
            if len(matches) > 1:
                raise AmbiguousRefError(
                    f"commit prefix {ref!r} matches {len(matches)} commits",
                    hint="give more hex digits",
                )
    raise RefNotFoundError(ref)


def iter_tree(
    repo: Repository, tree_id: ObjectId, prefix: str = ""
) -> Iterator[tuple[str, TreeEntry]]:
    """Every entry below a tree, depth first, parents before children.

    Iterative (a stack of the folders being listed, not one call per level), so that any
    depth is walked: a folder thousands of levels deep is a valid version. A sub-tree is
    read when the walk reaches it, right after its own entry was yielded.
    """
    tree = repo.load_tree(tree_id, at_root=not prefix)
    stack: list[tuple[str, Iterator[TreeEntry]]] = [(prefix, iter(tree.entries))]
    while stack:
        folder, entries = stack[-1]
        e = next(entries, None)
        if e is None:
            stack.pop()
            continue
        path = join_path(folder, e.name)
        yield path, e
        if e.kind == EntryKind.DIR:
            stack.append((path, iter(repo.load_tree(e.oid).entries)))


def flatten_tree(repo: Repository, tree_id: ObjectId) -> dict[str, TreeEntry]:
    """path → entry for every entry of a version."""
    return dict(iter_tree(repo, tree_id))


def lookup_path(repo: Repository, tree_id: ObjectId, path: str, where: str) -> TreeEntry | None:
    """The entry at ``path`` in a version (None for the root itself).

    Raises:
        PathNotFoundError: no such path.
    """
    parts = split_path(path)
    entry: TreeEntry | None = None
    current = tree_id
    for i, part in enumerate(parts):
        tree = repo.load_tree(current, at_root=i == 0)
        entry = next((e for e in tree.entries if e.name == part), None)
        if entry is None or (i < len(parts) - 1 and entry.kind != EntryKind.DIR):
            raise PathNotFoundError(path, where)
        current = entry.oid
    return entry


def same_content(a: TreeEntry, b: TreeEntry) -> bool:
    """True when two entries need no change to turn one into the other."""
    return a.kind == b.kind and a.oid == b.oid and (a.kind == EntryKind.DIR or a.mode == b.mode)


def diff_trees(
    repo: Repository, old: ObjectId | None, new: ObjectId | None, prefix: str = ""
) -> list[Change]:
    """What changed from tree ``old`` to tree ``new`` (None is an empty tree).

    Files and symlinks are reported; a folder is reported only when it is empty (its
    appearing or going is otherwise seen through its contents). A file replaced by a
    folder is a deletion plus additions. Sub-trees with the same id are not read.
    Changes come in path order, depth first (a folder's changes right after its own
    entry's); the walk is iterative, so any depth is diffed.
    """
    changes: list[Change] = []
    if old == new:
        return changes
    stack = [_diff_level(repo, old, new, prefix)]
    while stack:
        folder, a, b, names = stack[-1]
        name = next(names, None)
        if name is None:
            stack.pop()
            continue
        path = join_path(folder, name)
        ea, eb = a.get(name), b.get(name)
        a_dir = ea is not None and ea.kind == EntryKind.DIR
        b_dir = eb is not None and eb.kind == EntryKind.DIR
        if ea is not None and eb is not None and not a_dir and not b_dir:
            if not same_content(ea, eb):
                changes.append(Change(path, "modified", ea, eb))
            continue
        if ea is not None and not a_dir:
            changes.append(Change(path, "deleted", ea, None))
        if eb is not None and not b_dir:
            changes.append(Change(path, "added", None, eb))
        if a_dir or b_dir:
            old_sub = ea.oid if a_dir and ea is not None else None
            new_sub = eb.oid if b_dir and eb is not None else None
            if (
                old_sub is not None
                and new_sub is None
                and ea is not None
                and _is_empty(repo, old_sub)
            ):
                changes.append(Change(path, "deleted", ea, None))
            if (
                new_sub is not None
                and old_sub is None
                and eb is not None
                and _is_empty(repo, new_sub)
            ):
                changes.append(Change(path, "added", None, eb))
            if old_sub != new_sub:
                stack.append(_diff_level(repo, old_sub, new_sub, path))
    return changes


def _diff_level(
    repo: Repository, old: ObjectId | None, new: ObjectId | None, prefix: str
) -> tuple[str, dict[str, TreeEntry], dict[str, TreeEntry], Iterator[str]]:
    """One folder of :func:`diff_trees`: its two listings and its names in order."""
    a = {e.name: e for e in repo.load_tree(old, at_root=not prefix).entries} if old else {}
    b = {e.name: e for e in repo.load_tree(new, at_root=not prefix).entries} if new else {}
    return prefix, a, b, iter(sorted(a.keys() | b.keys()))


def _is_empty(repo: Repository, tree_id: ObjectId) -> bool:
    return not repo.load_tree(tree_id).entries


def committed_file_ids(repo: Repository) -> set[bytes]:
    """The ids of every file content and symlink target in any version a ref reaches.

    A ref's whole history counts, not only its current head.
    """
    starts: list[ObjectId] = []
    for ref in repo.refs.all_states():
        if ref != "HEAD":
            starts += [e.target for e in repo.refs.history(ref) if e.target is not None]
    ids: set[bytes] = set()
    seen_trees: set[ObjectId] = set()
    for _cid, commit in iter_log(repo, starts):
        stack = [(commit.tree, True)]
        while stack:
            tid, root = stack.pop()
            if tid in seen_trees:
                continue
            seen_trees.add(tid)
            for e in repo.load_tree(tid, at_root=root).entries:
                if e.kind == EntryKind.DIR:
                    stack.append((e.oid, False))
                else:
                    ids.add(e.oid)  # a file's content id, or a symlink's target id
    return ids


def iter_log(
    repo: Repository, starts: list[ObjectId], *, unreadable: list[ObjectId] | None = None
) -> Iterator[tuple[ObjectId, Commit]]:
    """Commits reachable from ``starts``, newest first (by commit time).

    With ``unreadable``, a commit whose object cannot be read (not on the store yet, or a
    zero-byte Drive "ghost": on Drive a ref entry may arrive before the commit it names)
    is appended there and left out, with what only it reaches; without it, that raises.
    """
    seen: set[ObjectId] = set()
    heap: list[tuple[int, bytes, ObjectId, Commit]] = []

    def push(cid: ObjectId) -> None:
        seen.add(cid)
        try:
            c = repo.load_commit(cid)
        except (ObjectNotFoundError, HashMismatchError, ShortReadError) as exc:
            # Not there yet, or a zero-byte Drive ghost: on its way. Other bytes that do
            # not match the name are damage, and stay an error.
            ghost = isinstance(exc, HashMismatchError) and exc.actual == _EMPTY_HEX
            if unreadable is None or not (ghost or not isinstance(exc, HashMismatchError)):
                raise
            unreadable.append(cid)
            return
        heapq.heappush(heap, (-c.time_ns, bytes(cid), cid, c))

    for cid in starts:
        if cid not in seen:
            push(cid)
    while heap:
        _t, _b, cid, c = heapq.heappop(heap)
        yield cid, c
        for p in c.parents:
            if p not in seen:
                push(p)
