"""Checkout's staging pipeline, end to end: workers read pieces of packs (or of worktree
files), verify every chunk and write it into staged files, with a budget on the bytes in
flight. Whatever happens in a worker or to the main thread — an error, a failed write,
Ctrl-C — the checkout stops, the worktree keeps its old files (or, once renames have
begun, each file is old or new), and a rerun completes.
"""

from __future__ import annotations

import errno
import itertools
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

import cas
import cas.checkout as checkout
from cas.api import Repo
from cas.checkout import apply_checkout, plan_checkout
from cas.errors import BackendError
from cas.history import resolve_ref
from cas.worktree import Worktree
from tests.assets import (
    AssetSpec,
    Node,
    assert_same_tree,
    generate_assets,
    mutate_assets,
    snapshot_tree,
)
from tests.conftest import SMALL_CHUNKER, SMALL_PACK

SPEC = AssetSpec(small_files=120, classes=4, large_bytes=1 << 20, jsonl_files=1, jsonl_lines=300)


@dataclass(frozen=True)
class Versions:
    """A store with v1 and v2 of a generated folder, and what each looks like."""

    store: Path
    snap1: dict[str, Node]
    snap2: dict[str, Node]
    large: str


@pytest.fixture(scope="module")
def versions(tmp_path_factory: pytest.TempPathFactory) -> Versions:
    root = tmp_path_factory.mktemp("pipeline")
    wt = root / "wt"
    info = generate_assets(wt, SPEC, seed=11)
    with cas.init(
        root / "store",
        wt,
        cache_dir=root / "cache",
        progress=False,
        chunker=SMALL_CHUNKER,
        pack_size=SMALL_PACK,
    ) as repo:
        snap1 = snapshot_tree(wt)
        repo.commit("v1", tag="v1")
        mutate_assets(wt, info, seed=12, spec=SPEC)
        snap2 = snapshot_tree(wt)
        repo.commit("v2", tag="v2")
    return Versions(root / "store", snap1, snap2, info.large)


@pytest.fixture
def store(versions: Versions, tmp_path: Path) -> Path:
    """This test's own copy of the store."""
    return Path(shutil.copytree(versions.store, tmp_path / "store"))


def _clone(store: Path, dest: Path, ref: str) -> None:
    cas.clone(
        store, dest, ref=ref, progress=False, cache_dir=dest.parent / f"{dest.name}-cache"
    ).close()


def _open(wt: Path, cache: Path) -> Repo:
    """The worktree with an empty cache of its own: every chunk comes from the store."""
    return cas.open(wt, cache_dir=cache, progress=False)


class _ReadHook:
    """A backend that calls ``hook`` before every range read made by a checkout worker."""

    def __init__(self, inner: object, hook: Callable[[int], None]) -> None:
        self._inner = inner
        self._hook = hook
        self._calls = itertools.count(1)

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        if threading.current_thread().name.startswith("cas-checkout"):
            self._hook(next(self._calls))
        return self._inner.read_range(key, offset, length)  # type: ignore[attr-defined, no-any-return]

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)


def _hook_reads(repo: Repo, hook: Callable[[int], None]) -> None:
    repo.repository.backend = _ReadHook(repo.repository.backend, hook)  # type: ignore[assignment]


def _assert_nothing_staged(wt: Path) -> None:
    staging = wt / ".cas" / "tmp"
    assert not staging.exists() or not os.listdir(staging)


def _head(wt: Path) -> object:
    return Worktree.find(wt).read_head().commit


# ---------------------------------------------------------------------------- correctness


@pytest.mark.parametrize("window", [1024, 5000, 40_000])
def test_clone_is_exact_whatever_the_piece_size(
    store: Path, versions: Versions, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, window: int
) -> None:
    """Pieces smaller than a chunk (each blob read alone), of a few chunks, of many."""
    monkeypatch.setattr(checkout, "WINDOW", window)
    _clone(store, tmp_path / "wt", "v2")
    assert_same_tree(versions.snap2, tmp_path / "wt")


def test_switch_is_exact_with_worktree_pieces(
    store: Path, versions: Versions, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """v1 → v2 → v1 with small pieces: chunks come from worktree files, split into several
    jobs per file, and from the store."""
    monkeypatch.setattr(checkout, "WINDOW", 3000)
    monkeypatch.setattr(checkout, "_LOCAL_JOB", 7000)
    wt = tmp_path / "wt"
    _clone(store, wt, "v1")
    with _open(wt, tmp_path / "cache") as repo:
        s = repo.checkout("v2").stats
        assert s.bytes_from_worktree > 0 and s.bytes_fetched > 0
        assert_same_tree(versions.snap2, wt)
        repo.checkout("v1")
    assert_same_tree(versions.snap1, wt)


def test_clone_leaves_a_stat_cache_that_vouches_for_every_file(store: Path, tmp_path: Path) -> None:
    """The renames are the files' last change; their stat-cache rows are taken once that
    is no longer "racily" recent, so the next command reads none of them again."""
    wt = tmp_path / "wt"
    _clone(store, wt, "v2")
    tree = Worktree.find(wt)
    stat_cache = tree.load_stat_cache()
    files = [e for e in tree.scan().values() if e.kind == 0]
    assert files
    assert [e.path for e in files if stat_cache.lookup(e) is None] == []


def test_a_worktree_file_changed_after_planning_is_not_copied(
    store: Path, versions: Versions, tmp_path: Path
) -> None:
    """A chunk a local file no longer holds fails its hash and is fetched instead."""
    wt = tmp_path / "wt"
    _clone(store, wt, "v1")
    with _open(wt, tmp_path / "cache") as repo:
        r = repo.repository
        target = r.load_commit(resolve_ref(r, "v2").commit_id).tree
        base = r.load_commit(resolve_ref(r, "v1").commit_id).tree
        stat_cache = repo.worktree.load_stat_cache()
        plan = plan_checkout(r, repo.worktree, target, base, stat_cache)
        assert versions.large in plan.local_content
        with open(wt / versions.large, "r+b") as f:  # every byte changes after the plan
            data = f.read()
            f.seek(0)
            f.write(bytes(b ^ 0x5A for b in data))
        stats = apply_checkout(r, repo.worktree, plan, stat_cache)
    assert stats.bytes_from_worktree < versions.snap2[versions.large].size // 2
    assert snapshot_tree(wt)[versions.large] == versions.snap2[versions.large]


# ---------------------------------------------------------------------------- bounded memory


def test_bytes_in_flight_stay_within_the_budget(
    store: Path, versions: Versions, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many small pieces, slow reads so that the workers overlap: the bytes read and not
    yet written out never exceed the budget (or one blob larger than it, held alone)."""
    wt = tmp_path / "wt"
    _clone(store, wt, "v1")
    monkeypatch.setattr(checkout, "WINDOW", 4096)
    budgets: list[checkout._Budget] = []
    real = checkout._new_budget

    def keep(limit: int, stop: threading.Event) -> checkout._Budget:
        budgets.append(real(limit, stop))
        return budgets[-1]

    monkeypatch.setattr(checkout, "_new_budget", keep)
    reads = 0

    def slow_read(n: int) -> None:
        nonlocal reads
        reads = n
        time.sleep(0.001)  # a slow store: the other workers read meanwhile

    with _open(wt, tmp_path / "cache") as repo:
        _hook_reads(repo, slow_read)
        repo.checkout("v2")
    assert_same_tree(versions.snap2, wt)
    (budget,) = budgets
    assert budget.limit == 4 * 4096  # four workers on a folder store
    assert reads > 8  # many more pieces than workers went through it
    assert 0 < budget.peak <= max(budget.limit, SMALL_CHUNKER.max)
    assert budget.used == 0


# ---------------------------------------------------------------------------- failures


def test_an_error_in_a_worker_stops_the_checkout_and_changes_nothing(
    store: Path, versions: Versions, tmp_path: Path
) -> None:
    wt = tmp_path / "wt"
    _clone(store, wt, "v1")
    before = snapshot_tree(wt)
    head = _head(wt)
    threads = threading.active_count()

    def fail_second(n: int) -> None:
        if n == 2:
            raise BackendError("injected read failure")

    with _open(wt, tmp_path / "cache") as repo:
        _hook_reads(repo, fail_second)
        with pytest.raises(BackendError, match="injected"):
            repo.checkout("v2")
    assert threading.active_count() == threads  # no worker left running
    assert snapshot_tree(wt) == before  # not one file replaced, not even its mtime
    assert _head(wt) == head
    _assert_nothing_staged(wt)
    with _open(wt, tmp_path / "cache") as repo:
        repo.checkout("v2")
    assert_same_tree(versions.snap2, wt)


def test_a_failed_write_leaves_no_half_written_file_in_place(
    store: Path, versions: Versions, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wt = tmp_path / "wt"
    _clone(store, wt, "v1")
    before = snapshot_tree(wt)
    real = os.pwrite
    calls = itertools.count(1)

    def pwrite(fd: int, data: bytes, offset: int) -> int:
        if next(calls) == 7:
            raise OSError(errno.EIO, "injected write failure")
        return real(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", pwrite)
    with _open(wt, tmp_path / "cache") as repo, pytest.raises(OSError, match="injected"):
        repo.checkout("v2")
    monkeypatch.setattr(os, "pwrite", real)
    assert snapshot_tree(wt) == before
    _assert_nothing_staged(wt)
    with _open(wt, tmp_path / "cache") as repo:
        repo.checkout("v2")
    assert_same_tree(versions.snap2, wt)


def test_ctrl_c_while_staging_leaves_the_worktree_as_it_was(
    store: Path, versions: Versions, tmp_path: Path
) -> None:
    """SIGINT reaches the main thread while workers are fetching: they stop, the staged
    files go, the worktree and its HEAD are untouched."""
    wt = tmp_path / "wt"
    _clone(store, wt, "v1")
    before = snapshot_tree(wt)
    head = _head(wt)
    threads = threading.active_count()
    main = threading.main_thread().ident
    assert main is not None

    def interrupt(n: int) -> None:
        if n == 2:
            signal.pthread_kill(main, signal.SIGINT)

    with _open(wt, tmp_path / "cache") as repo:
        _hook_reads(repo, interrupt)
        with pytest.raises(KeyboardInterrupt):
            repo.checkout("v2")
    assert threading.active_count() == threads
    assert snapshot_tree(wt) == before
    assert _head(wt) == head
    _assert_nothing_staged(wt)
    with _open(wt, tmp_path / "cache") as repo:
        repo.checkout("v2")
    assert_same_tree(versions.snap2, wt)


def test_ctrl_c_while_renaming_leaves_each_file_old_or_new(
    store: Path, versions: Versions, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wt = tmp_path / "wt"
    _clone(store, wt, "v1")
    head = _head(wt)
    real = os.replace
    renames = itertools.count(1)

    def replace(src: str, dst: str, **kw: object) -> None:
        if f"{os.sep}.cas{os.sep}tmp{os.sep}" in str(src) and next(renames) == 4:
            raise KeyboardInterrupt
        real(src, dst, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "replace", replace)
    with _open(wt, tmp_path / "cache") as repo, pytest.raises(KeyboardInterrupt):
        repo.checkout("v2")
    monkeypatch.setattr(os, "replace", real)
    for path, node in snapshot_tree(wt).items():
        if node.kind != "dir":  # folders' mtimes are set last, after every rename
            assert node in (versions.snap1.get(path), versions.snap2.get(path)), path
    assert _head(wt) == head
    _assert_nothing_staged(wt)
    with _open(wt, tmp_path / "cache") as repo:
        repo.checkout("v2")
    assert_same_tree(versions.snap2, wt)
