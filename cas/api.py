"""The Python API: one function or method per user verb.

For notebooks::

    import cas
    repo = cas.init("/content/drive/MyDrive/cas-store", "/content/_assets")
    repo.commit("raw images + base weights", tag="v1")
    ...
    repo = cas.clone("/content/drive/MyDrive/cas-store", "/content/_assets", ref="v1")
    repo.checkout("v2")

Long operations draw a progress bar (terminal or notebook) unless ``progress=False``.
Every method raises only :class:`cas.errors.CasError` subclasses for user errors.

This facade is the one place in the library that reads the environment, and only for
the default cache folder (``$XDG_CACHE_HOME/cas``, else ``~/.cache/cas``).
"""

from __future__ import annotations

import contextlib
import getpass
import logging
import os
import shutil
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cas.checkout import (
    MAX_WORKERS,
    CheckoutStats,
    apply_checkout,
    local_content,
    plan_checkout,
)
from cas.chunking import Chunker, ChunkerParams
from cas.config import DEFAULT_PACK_SIZE, DEFAULT_ZSTD_LEVEL
from cas.errors import (
    AlreadyExistsError,
    CasError,
    ConflictError,
    DetachedHeadError,
    DirtyWorktreeError,
    LockedError,
    RefConflictError,
    RefNotFoundError,
    RepositoryNotFoundError,
)
from cas.history import (
    Change,
    Resolved,
    default_branch,
    diff_trees,
    flatten_tree,
    iter_log,
    iter_tree,
    lookup_path,
    packs_problem,
    resolve_ref,
)
from cas.ids import ObjectId
from cas.ingest import commit_snapshot, default_workers, snapshot_worktree
from cas.objects import Commit, EntryKind, TreeEntry
from cas.paths import split_path
from cas.progress import BarProgress, NoProgress, Progress
from cas.refs import check_ref_name
from cas.repair import RepairReport, repair_store
from cas.repository import Repository
from cas.store import open_backend, resolve_location
from cas.usage import UsageReport, measure_usage
from cas.verify import VerifyReport, verify_store
from cas.worktree import LocalEntry, Worktree, WorktreeHead

log = logging.getLogger(__name__)

__all__ = [
    "BranchInfo",
    "Change",
    "CheckoutResult",
    "CommitResult",
    "LogEntry",
    "LsEntry",
    "Repo",
    "Status",
    "TagInfo",
    "UsageReport",
    "clone",
    "default_cache_dir",
    "init",
    "open",
]

ProgressArg = bool | Progress


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/cas`` or ``~/.cache/cas``."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "cas"


def _progress(arg: ProgressArg) -> Progress:
    if arg is True:
        return BarProgress()
    if arg is False:
        return NoProgress()
    return arg


def _whoami() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def _store_location(store: str | os.PathLike[str]) -> str:
    """What a worktree records: an absolute folder path, or the URL of an object store."""
    return resolve_location(os.fspath(store))


# ---------------------------------------------------------------------------- results


@dataclass(frozen=True, slots=True)
class CommitResult:
    """What :meth:`Repo.commit` did."""

    commit_id: ObjectId
    branch: str
    tag: str | None
    files: int
    bytes: int
    scanned_bytes: int
    new_bytes: int
    stored_bytes: int
    diverged: bool
    # Worktree paths the commit did not store: sockets, FIFOs and devices (each also
    # logged as a warning). The commit holds everything else.
    skipped: tuple[str, ...] = ()
    # Packs (and their bytes) that an interrupted commit had uploaded and this one reused
    # instead of uploading them again (found through their journal entries).
    resumed_packs: int = 0
    resumed_bytes: int = 0

    @property
    def short(self) -> str:
        """The commit id's short form."""
        return self.commit_id.short


@dataclass(frozen=True, slots=True)
class CheckoutResult:
    """What :meth:`Repo.checkout` did."""

    commit_id: ObjectId
    ref: str
    branch: str | None
    stats: CheckoutStats
    pending: tuple[ObjectId, ...] = ()


@dataclass(frozen=True, slots=True)
class Status:
    """The worktree compared with its base version."""

    branch: str | None
    commit_id: ObjectId | None
    added: tuple[tuple[str, int], ...]
    modified: tuple[tuple[str, int], ...]
    deleted: tuple[tuple[str, int], ...]
    branch_head: ObjectId | None
    diverged_heads: tuple[ObjectId, ...]
    pending_refs: tuple[str, ...] = ()

    @property
    def clean(self) -> bool:
        """True when nothing changed since the base version."""
        return not (self.added or self.modified or self.deleted)

    @property
    def behind(self) -> bool:
        """True when the branch moved on since this worktree's version."""
        return (
            self.branch is not None
            and self.branch_head != self.commit_id
            and not self.diverged_heads
        )


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One commit in the log, with the branches and tags that point at it."""

    commit_id: ObjectId
    commit: Commit
    refs: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class LsEntry:
    """One entry of :meth:`Repo.ls`."""

    path: str
    entry: TreeEntry


@dataclass(frozen=True, slots=True)
class TagInfo:
    """A tag and the commit it names."""

    name: str
    commit_id: ObjectId


@dataclass(frozen=True, slots=True)
class BranchInfo:
    """A branch, its head(s) and whether it is the current/default one."""

    name: str
    commit_id: ObjectId
    current: bool
    default: bool
    diverged_heads: tuple[ObjectId, ...]


# ---------------------------------------------------------------------------- entry points


def init(
    store: str | os.PathLike[str],
    worktree: str | os.PathLike[str] = ".",
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: ProgressArg = True,
    chunker: ChunkerParams | None = None,
    pack_size: int = DEFAULT_PACK_SIZE,
    zstd_level: int = DEFAULT_ZSTD_LEVEL,
    branch: str = "main",
) -> Repo:
    """Create a store at ``store`` and attach ``worktree`` to it (on branch ``branch``).

    The folder's files are not committed yet: call :meth:`Repo.commit`.

    Raises:
        AlreadyExistsError: a store already exists there (use :func:`clone`), or the
            folder already is a worktree.
    """
    location = _store_location(store)
    if "://" not in location and os.path.lexists(location) and not os.path.isdir(location):
        raise AlreadyExistsError(
            f"file {location}", hint="a store is a folder: give the path of a new or empty one"
        )
    root = Path(worktree).resolve()
    if (root / ".cas" / "worktree.json").exists():
        raise AlreadyExistsError(f"worktree {root}", hint="it is already attached to a store")
    check_ref_name(branch, "branch")
    cache_root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    backend = open_backend(location)
    repository = Repository.create(
        backend,
        cache_root=cache_root,
        writer=_whoami(),
        chunker=chunker,
        pack_size=pack_size,
        zstd_level=zstd_level,
        default_branch=branch,
    )
    wt = Worktree.create(root, location)
    wt.write_head(WorktreeHead(branch, None))
    return Repo(wt, repository, progress=progress)


def clone(
    store: str | os.PathLike[str],
    worktree: str | os.PathLike[str],
    *,
    ref: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: ProgressArg = True,
    force: bool = False,
) -> Repo:
    """Attach ``worktree`` to an existing store and check out ``ref``.

    ``ref`` defaults to the head of the store's default branch. Files already in the
    folder are reused where they match and never overwritten unless ``force``.

    Raises:
        RepositoryNotFoundError: no store at ``store``.
        RefNotFoundError: unknown ``ref``.
        DirtyWorktreeError: files in the folder would be overwritten.
    """
    location = _store_location(store)
    cache_root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    repository = Repository.open(open_backend(location), cache_root=cache_root, writer=_whoami())
    root = Path(worktree).resolve()
    created = not root.exists()
    wt = Worktree.create(root, location)
    repo = Repo(wt, repository, progress=progress)
    # The index loads while the ref is resolved (on a Drive mount, round trips each).
    repository.load_index_soon()
    try:
        if ref is None:
            ref = default_branch(repository)
            if not repository.branch_state(ref).exists:
                wt.write_head(WorktreeHead(ref, None))  # an empty store: nothing to check out
                return repo
        res = repo.checkout(ref, force=force)
        _note_pending(ref, res.pending, res.commit_id)
    except BaseException:
        _detach(wt, remove_root=created)
        raise
    finally:
        repository.stop_preload()
    return repo


def _note_pending(ref: str, pending: Sequence[ObjectId], used: ObjectId) -> None:
    """Warn that ``ref`` has newer versions whose data is still on its way (Drive)."""
    if pending:
        log.warning(
            "%s has newer %s whose data is not all on the store yet (an upload still in "
            "progress elsewhere; on Colab: drive.flush_and_unmount() there); using %s, the "
            "newest complete one",
            ref,
            _versions(pending),
            used.short,
        )


def _versions(ids: Sequence[ObjectId]) -> str:
    """``version X`` or ``versions X, Y`` (a few named)."""
    shown = ", ".join(c.short for c in ids[:3]) + (
        f" and {len(ids) - 3} more" if len(ids) > 3 else ""
    )
    return f"version {shown}" if len(ids) == 1 else f"versions {shown}"


def _detach(wt: Worktree, *, remove_root: bool) -> None:
    """Undo a failed clone: its ``.cas`` folder, and the folder itself when the clone
    made it and nothing else is in it (the user's files, if any, are never touched)."""
    shutil.rmtree(wt.meta, ignore_errors=True)
    if remove_root:
        with contextlib.suppress(OSError):
            wt.root.rmdir()


def open(
    worktree: str | os.PathLike[str] = ".",
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: ProgressArg = True,
) -> Repo:
    """Open the worktree containing ``worktree`` (searching upward, like git).

    Raises:
        WorktreeNotFoundError: not inside a worktree.
        RepositoryNotFoundError: the worktree's store is gone or not mounted.
    """
    wt = Worktree.find(Path(worktree))
    cache_root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    location = wt.store_location
    try:
        repository = Repository.open(
            open_backend(location), cache_root=cache_root, writer=_whoami()
        )
    except RepositoryNotFoundError as exc:
        if "://" in location and not location.startswith("file://"):
            raise  # an object store: its own hint
        raise RepositoryNotFoundError(
            location, hint="is the store mounted? (Colab: drive.mount('/content/drive'))"
        ) from exc
    return Repo(wt, repository, progress=progress)


# ---------------------------------------------------------------------------- Repo


class _PackProbe:
    """:func:`packs_problem` of one version, run on a thread of its own."""

    def __init__(self, repo: Repository, commit_id: ObjectId) -> None:
        self._result: CasError | None = None
        self._thread = threading.Thread(
            target=self._run, args=(repo, commit_id), name="cas-probe", daemon=True
        )
        self._thread.start()

    def _run(self, repo: Repository, commit_id: ObjectId) -> None:
        try:
            self._result = packs_problem(repo, commit_id)
        except CasError as exc:  # a store that failed otherwise: the checkout says so
            log.debug("pack probe of %s failed: %s", commit_id.short, exc)

    def problem(self) -> CasError | None:
        """Why the version is not all on the store yet (waits for the probe), or None."""
        self._thread.join()
        return self._result

    def check(self) -> None:
        """Raise :meth:`problem`, if any."""
        problem = self.problem()
        if problem is not None:
            raise problem


class Repo:
    """A worktree attached to a store; the object notebooks work with."""

    def __init__(
        self, worktree: Worktree, repository: Repository, *, progress: ProgressArg = True
    ) -> None:
        self.worktree = worktree
        self.repository = repository
        location = repository.backend.location
        excluded = [Path(location)] if "://" not in location else []
        if repository.cache.root is not None:
            excluded.append(repository.cache.root.parent)
        worktree.exclude(*excluded)
        self.progress = _progress(progress)
        self.workers = default_workers()

    def __repr__(self) -> str:
        return f"<cas.Repo {self.worktree.root} → {self.repository.backend.location}>"

    def __enter__(self) -> Repo:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the store."""
        self.repository.close()

    @property
    def root(self) -> Path:
        """The worktree's root folder."""
        return self.worktree.root

    @property
    def store(self) -> str:
        """The store's location."""
        return self.repository.backend.location

    @property
    def head(self) -> WorktreeHead:
        """The worktree's branch (None when detached) and base commit."""
        return self.worktree.read_head()

    # -------------------------------------------------------------- commit

    def commit(
        self, message: str, *, tag: str | None = None, author: str | None = None
    ) -> CommitResult:
        """Snapshot the worktree as a new commit on the current branch.

        Only content the store has never seen is uploaded. With ``tag``, the new commit
        is also tagged (the tag must not exist yet).

        Raises:
            DetachedHeadError: the worktree is not on a branch.
            RefConflictError: the branch moved on since this worktree's version.
            AlreadyExistsError: ``tag`` exists.
        """
        if not message.strip():
            raise ValueError("a commit needs a message")
        repo = self.repository
        with self.worktree.lock():
            self._recover()
            head = self.worktree.read_head()
            if head.branch is None:
                where = head.commit.short if head.commit else "nothing"
                raise DetachedHeadError(
                    f"the worktree is not on a branch (it has version {where} checked out)",
                    hint="create one with `cas branch NAME` and `cas checkout NAME`, then commit",
                )
            branch = head.branch
            tag_state = None
            if tag is not None:
                check_ref_name(tag, "tag")
                tag_state = repo.refs.state(f"tags/{tag}")
                if tag_state.exists:
                    raise AlreadyExistsError(
                        f"tag {tag!r}", hint="pick another name or use `cas tag -f`"
                    )
            stat_cache = self.worktree.load_stat_cache()
            with repo.new_session() as session:
                # Packs a killed commit uploaded after its last checkpoint: reused whole.
                session.adopt_journal()
                snap = snapshot_worktree(
                    repo,
                    self.worktree,
                    session,
                    stat_cache,
                    progress=self.progress,
                    workers=self.workers,
                )
                outcome = commit_snapshot(
                    repo,
                    session,
                    snap,
                    branch=head.branch,
                    parents=(head.commit,) if head.commit else (),
                    message=message,
                    author=author or _whoami(),
                    before_ref=lambda cid: self.worktree.write_pending_commit(branch, cid),
                    tag=tag,
                    tag_state=tag_state,
                )
            try:
                self.worktree.write_head(WorktreeHead(head.branch, outcome.commit_id))
                self.worktree.clear_pending_commit()
                stat_cache.set_index_mark(repo.index_segments())
                self.worktree.save_stat_cache(stat_cache)
                if outcome.tag is not None:
                    repo.refs.publish(outcome.tag)  # claimed beside the commit object
            finally:
                if outcome.tag is not None:
                    repo.refs.release(outcome.tag)  # unless published
        st = outcome.commit.stats
        return CommitResult(
            commit_id=outcome.commit_id,
            branch=head.branch,
            tag=tag,
            files=st.files,
            bytes=st.bytes,
            scanned_bytes=st.scanned_bytes,
            new_bytes=st.new_bytes,
            stored_bytes=st.stored_bytes,
            diverged=outcome.diverged,
            skipped=tuple(self.worktree.skipped),
            resumed_packs=session.adopted_packs,
            resumed_bytes=session.adopted_bytes,
        )

    def _recover(self) -> None:
        """Finish a commit that was interrupted after its ref entry (call under the lock)."""
        pending = self.worktree.read_pending_commit()
        if pending is None:
            return
        branch, commit_id = pending
        state = self.repository.branch_state(branch)
        if state.exists and commit_id in {h.entry.target for h in state.live_heads}:
            self.worktree.write_head(WorktreeHead(branch, commit_id))
        self.worktree.clear_pending_commit()

    # -------------------------------------------------------------- checkout

    def checkout(
        self, ref: str, *, paths: Sequence[str] | None = None, force: bool = False
    ) -> CheckoutResult:
        """Make the worktree (or only ``paths``) equal to version ``ref``.

        Files already correct are not touched; chunks are taken from files in the
        worktree, then the local cache, then the store. With ``paths`` only those paths
        change and the worktree stays on its branch.

        Raises:
            RefNotFoundError: unknown ref.
            DirtyWorktreeError: uncommitted changes would be lost (use ``force=True``).
            IntegrityError: damaged data in the store (nothing was changed).
        """
        repo = self.repository
        repo.load_index_soon()  # while the ref and its commit are read
        try:
            resolved = resolve_ref(repo, ref, defer_packs=True)
            if not resolved.packs_unchecked:
                return self._checkout(ref, resolved, paths, force, None)
            # A recent version on a Drive mount: whether all its packs are on the store
            # yet is checked beside the planning and the fetching (a stat per pack,
            # seconds on a mount), and before anything in the worktree changes.
            probe = _PackProbe(repo, resolved.commit_id)
            try:
                return self._checkout(ref, resolved, paths, force, probe.check)
            except Exception:
                if probe.problem() is None:
                    raise
            # Not all there yet (an upload still on its way): the newest complete version.
            return self._checkout(ref, resolve_ref(repo, ref), paths, force, None)
        finally:
            repo.stop_preload()  # done, or failed before it needed the index

    def _checkout(
        self,
        ref: str,
        resolved: Resolved,
        paths: Sequence[str] | None,
        force: bool,
        before_changes: Callable[[], None] | None,
    ) -> CheckoutResult:
        repo = self.repository
        commit = repo.load_commit(resolved.commit_id)
        with self.worktree.lock():
            self._recover()
            head = self.worktree.read_head()
            if (
                not paths
                and not force
                and head.commit == resolved.commit_id
                and resolved.kind == "branch"
                and resolved.name != head.branch
            ):
                # A switch to another branch at the same version (say, one just made with
                # `cas branch NAME`): no file needs to change, so uncommitted edits are
                # carried over to it, as git does.
                branch = resolved.name
                self.worktree.write_head(WorktreeHead(branch, resolved.commit_id))
                return CheckoutResult(
                    resolved.commit_id, ref, branch, CheckoutStats(), resolved.pending
                )
            base_tree = repo.load_commit(head.commit).tree if head.commit else None
            stat_cache = self.worktree.load_stat_cache()
            plan = plan_checkout(
                repo,
                self.worktree,
                commit.tree,
                base_tree,
                stat_cache,
                paths=list(paths) if paths else None,
            )
            if plan.conflicts and not force:
                self.worktree.save_stat_cache(stat_cache)
                raise DirtyWorktreeError(
                    sorted(set(plan.conflicts)), attached=head.commit is not None
                )
            stats = apply_checkout(
                repo,
                self.worktree,
                plan,
                stat_cache,
                progress=self.progress,
                workers=min(MAX_WORKERS, repo.backend.capabilities.max_connections),
                before_changes=before_changes,
            )
            if not paths:
                self.worktree.write_head(
                    WorktreeHead(
                        resolved.name if resolved.kind == "branch" else None, resolved.commit_id
                    )
                )
            self.worktree.save_stat_cache(stat_cache)
        return CheckoutResult(
            resolved.commit_id,
            ref,
            resolved.name if resolved.kind == "branch" else None,
            stats,
            resolved.pending,
        )

    # -------------------------------------------------------------- inspection

    def status(self) -> Status:
        """Compare the worktree with its base version (reads only changed files)."""
        repo = self.repository
        if self.worktree.read_pending_commit() is not None:
            with contextlib.suppress(LockedError), self.worktree.lock():
                self._recover()
        head = self.worktree.read_head()
        base = flatten_tree(repo, repo.load_commit(head.commit).tree) if head.commit else {}
        added, modified, deleted = self._compare(base)
        branch_head: ObjectId | None = None
        diverged: tuple[ObjectId, ...] = ()
        pending: tuple[str, ...] = ()
        if head.branch is not None:
            state = repo.branch_state(head.branch)
            branch_head = state.target if state.exists else None
            if state.diverged:
                diverged = tuple(h.entry.target for h in state.live_heads if h.entry.target)
            pending = state.unreadable
        return Status(
            head.branch,
            head.commit,
            tuple(added),
            tuple(modified),
            tuple(deleted),
            branch_head,
            diverged,
            pending,
        )

    def _compare(
        self, base: dict[str, TreeEntry]
    ) -> tuple[list[tuple[str, int]], list[tuple[str, int]], list[tuple[str, int]]]:
        """(added, modified, deleted) from ``base`` to the files on disk."""
        stat_cache = self.worktree.load_stat_cache()
        local = self.worktree.scan()
        chunker = Chunker(self.repository.config.chunker)
        added, modified, deleted = [], [], []

        def has_children(tree: dict[str, TreeEntry] | dict[str, LocalEntry], path: str) -> bool:
            return any(p.startswith(path + "/") for p in tree)

        # Same rules as history.diff_trees: files and symlinks; a folder only when empty.
        for path, e in sorted(local.items()):
            b = base.get(path)
            b_dir = b is not None and b.kind == EntryKind.DIR
            if b is not None and not b_dir and e.kind == EntryKind.DIR:
                deleted.append((path, b.size))
            if e.kind == EntryKind.DIR:
                if not b_dir and not has_children(local, path):
                    added.append((path, 0))
                continue
            if b is None or b_dir:
                added.append((path, e.size))
            elif b.kind != e.kind or b.mode != e.mode:
                modified.append((path, e.size))
            elif e.kind == EntryKind.SYMLINK:
                if b.target != e.target:
                    modified.append((path, e.size))
            elif (
                b.size != e.size
                or local_content(self.worktree, e, stat_cache, chunker).oid != b.oid
            ):
                modified.append((path, e.size))
        for path, b in sorted(base.items()):
            now = local.get(path)
            if b.kind != EntryKind.DIR:
                if now is None:
                    deleted.append((path, b.size))
            elif (now is None or now.kind != EntryKind.DIR) and not has_children(base, path):
                deleted.append((path, 0))
        self.worktree.save_stat_cache(stat_cache)
        return added, modified, deleted

    def diff(self, a: str | None = None, b: str | None = None) -> list[Change]:
        """What changed.

        * no argument: from the worktree's base version to the files on disk;
        * ``a``: from version ``a`` to the files on disk;
        * ``a`` and ``b``: from version ``a`` to version ``b``.
        """
        repo = self.repository
        if a is not None and b is not None:
            ta = repo.load_commit(self._resolve(a)).tree
            tb = repo.load_commit(self._resolve(b)).tree
            return diff_trees(repo, ta, tb)
        if a is None:
            head = self.worktree.read_head()
            base = flatten_tree(repo, repo.load_commit(head.commit).tree) if head.commit else {}
        else:
            base = flatten_tree(repo, repo.load_commit(self._resolve(a)).tree)
        added, modified, deleted = self._compare(base)
        out = [Change(p, "added", None, None) for p, _s in added]
        out += [Change(p, "modified", base.get(p), None) for p, _s in modified]
        out += [Change(p, "deleted", base.get(p), None) for p, _s in deleted]
        return sorted(out, key=lambda c: c.path)

    def log(
        self, ref: str | None = None, *, limit: int | None = None, all: bool = False
    ) -> list[LogEntry]:
        """Commits reachable from ``ref`` (default: the worktree's version), newest first.

        With ``all``, from every commit any branch or tag points or ever pointed at
        (including every head of a diverged branch).
        """
        if limit is not None and limit < 0:
            raise ValueError("limit must be >= 0")
        repo = self.repository
        labels = self._labels()
        if all:
            # Every commit any ref entry ever named: a branch moved with --force, or one
            # head of a resolved divergence, stays reachable (and listed) this way.
            starts = list(labels)
            for name in repo.refs.all_states():
                if name != "HEAD":
                    starts += [e.target for e in repo.refs.history(name) if e.target is not None]
        elif ref is None:
            head = self.worktree.read_head()
            starts = []
            if head.branch is not None:
                state = repo.branch_state(head.branch)
                starts = [h.entry.target for h in state.live_heads if h.entry.target]
            if head.commit is not None and head.commit not in starts:
                starts.append(head.commit)
        else:
            try:
                starts = [self._resolve(ref)]
            except RefConflictError:  # a diverged branch: its log shows every head
                starts = self._diverged_heads(ref)
                if not starts:
                    raise
        out: list[LogEntry] = []
        unreadable: list[ObjectId] = []
        if limit != 0:
            for cid, c in iter_log(repo, starts, unreadable=unreadable):
                out.append(LogEntry(cid, c, tuple(labels.get(cid, ()))))
                if limit is not None and len(out) >= limit:
                    break
        if unreadable:
            log.warning(
                "%s not readable on the store yet (an upload still in progress elsewhere? "
                "on Colab: drive.flush_and_unmount() there; if it lasts, `cas verify`); "
                "left out of the log",
                _versions(unreadable),
            )
        return out

    def _diverged_heads(self, ref: str) -> list[ObjectId]:
        """Every head of the branch ``ref`` names, which resolving found diverged (a tag
        of the same name would have been taken first)."""
        name = ref.strip().removeprefix("heads/")
        state = self.repository.branch_state(name)
        return [h.entry.target for h in state.live_heads if h.entry.target is not None]

    def _labels(self) -> dict[ObjectId, list[str]]:
        labels: dict[ObjectId, list[str]] = {}
        for ref, state in self.repository.refs.all_states().items():
            if ref == "HEAD":
                continue
            kind, _, name = ref.partition("/")
            for h in state.live_heads:
                if h.entry.target is not None:
                    labels.setdefault(h.entry.target, []).append(
                        f"tag: {name}" if kind == "tags" else name
                    )
        return labels

    def show(self, ref: str = "HEAD", *, labels: bool = True) -> LogEntry:
        """One commit with its labels (the branches and tags at it); ``labels=False``
        leaves them out and does not list the store's refs (a round trip per ref folder
        on a Drive mount)."""
        cid = self._resolve(ref)
        names = tuple(self._labels().get(cid, ())) if labels else ()
        return LogEntry(cid, self.repository.load_commit(cid), names)

    def _resolve(self, ref: str) -> ObjectId:
        if ref == "HEAD":
            head = self.worktree.read_head()
            if head.commit is None:
                raise RefNotFoundError("HEAD")
            return head.commit
        resolved = resolve_ref(self.repository, ref)
        _note_pending(ref, resolved.pending, resolved.commit_id)
        return resolved.commit_id

    def ls(self, ref: str = "HEAD", path: str = "", *, recursive: bool = False) -> list[LsEntry]:
        """Entries of a version: the folder ``path`` (or the file itself)."""
        repo = self.repository
        cid = self._resolve(ref)
        tree_id = repo.load_commit(cid).tree
        entry = lookup_path(repo, tree_id, path, f"version {cid.short}") if path else None
        prefix = "/".join(split_path(path))  # "./a/" → "a"
        if entry is not None and entry.kind != EntryKind.DIR:
            return [LsEntry(prefix, entry)]
        sub = entry.oid if entry is not None else tree_id
        if recursive:
            return [LsEntry(p, e) for p, e in iter_tree(repo, sub, prefix)]
        return [
            LsEntry(f"{prefix}/{e.name}" if prefix else e.name, e)
            for e in repo.load_tree(sub, at_root=not prefix).entries
        ]

    def verify(self, *, read_data: bool = False, subset: float | None = None) -> VerifyReport:
        """Check that every version can be restored; see :mod:`cas.verify`.

        Args:
            read_data: also download every pack and check every chunk.
            subset: read only this fraction (0 < subset <= 1) of the packs, rotating
                through all of them across calls.
        """
        if subset is not None and not 0 < subset <= 1:
            raise ValueError("subset must be in (0, 1]")
        return verify_store(
            self.repository, read_data=read_data, subset=subset, progress=self.progress
        )

    def repair(self) -> RepairReport:
        """Rebuild the index from the packs and re-upload lost chunks from this worktree.

        Never deletes a pack; see :mod:`cas.repair`.
        """
        with self.worktree.lock():
            return repair_store(self.repository, self.worktree, progress=self.progress)

    def du(self) -> UsageReport:
        """Per version: logical bytes and bytes stored only by it; store-wide ratios."""
        return measure_usage(self.repository)

    # -------------------------------------------------------------- tags and branches

    def tags(self) -> list[TagInfo]:
        """Every tag."""
        out = []
        for ref, state in self.repository.refs.all_states().items():
            if ref.startswith("tags/") and state.exists and state.target is not None:
                out.append(TagInfo(ref[5:], state.target))
        return out

    def tag(self, name: str, ref: str = "HEAD", *, force: bool = False) -> TagInfo:
        """Tag version ``ref``. Tags are immutable unless ``force``.

        Raises:
            AlreadyExistsError: the tag exists (and ``force`` is false).
        """
        check_ref_name(name, "tag")
        cid = self._resolve(ref)
        state = self.repository.refs.state(f"tags/{name}")
        if state.exists and not force:
            if state.target == cid:
                return TagInfo(name, cid)
            raise AlreadyExistsError(
                f"tag {name!r} (at {state.target.short if state.target else '?'})",
                hint="tags are immutable; use --force (force=True) to move it",
            )
        self.repository.refs.update(f"tags/{name}", target=cid, expected=state)
        return TagInfo(name, cid)

    def delete_tag(self, name: str) -> TagInfo:
        """Delete a tag (its commits stay; the history of the tag is kept)."""
        state = self.repository.refs.state(f"tags/{name}")
        if not state.exists or state.target is None:
            raise RefNotFoundError(name, kind="tag")
        self.repository.refs.update(f"tags/{name}", target=None, expected=state)
        return TagInfo(name, state.target)

    def branches(self) -> list[BranchInfo]:
        """Every branch."""
        head = self.worktree.read_head()
        default = default_branch(self.repository)
        out = []
        for ref, state in self.repository.refs.all_states().items():
            if ref.startswith("heads/") and state.exists and state.target is not None:
                name = ref[6:]
                diverged = (
                    tuple(h.entry.target for h in state.live_heads if h.entry.target)
                    if state.diverged
                    else ()
                )
                out.append(
                    BranchInfo(name, state.target, name == head.branch, name == default, diverged)
                )
        return out

    def branch(self, name: str, ref: str = "HEAD", *, force: bool = False) -> BranchInfo:
        """Create branch ``name`` at ``ref`` (move it with ``force``).

        Moving a diverged branch with ``force`` resolves the divergence: the new entry
        supersedes every head.

        Raises:
            AlreadyExistsError: the branch exists (and ``force`` is false).
        """
        check_ref_name(name, "branch")
        cid = self._resolve(ref)
        state = self.repository.branch_state(name)
        if state.exists and not force:
            raise AlreadyExistsError(f"branch {name!r}", hint="use --force to move it")
        self.repository.refs.update(f"heads/{name}", target=cid, expected=state)
        head = self.worktree.read_head()
        return BranchInfo(
            name, cid, name == head.branch, name == default_branch(self.repository), ()
        )

    def delete_branch(self, name: str) -> BranchInfo:
        """Delete a branch (its commits stay reachable from tags or are left for gc)."""
        state = self.repository.branch_state(name)
        if not state.exists or state.target is None:
            raise RefNotFoundError(name, kind="branch")
        head = self.worktree.read_head()
        if head.branch == name:
            raise ConflictError(
                f"cannot delete branch {name!r}: the worktree is on it",
                hint="check out another branch first",
            )
        self.repository.refs.update(f"heads/{name}", target=None, expected=state)
        return BranchInfo(name, state.target, False, False, ())

    def resolve(self, ref: str) -> ObjectId:
        """The commit id a ref names."""
        return self._resolve(ref)
