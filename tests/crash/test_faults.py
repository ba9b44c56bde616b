"""The engine against fault-injecting wrappers around the real folder backend.

Each fault either is coped with (retries, fallback to an older visible version) or
stops the operation with a clear error — never a wrong byte in a user's file, never a
lost commit.
"""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path

import pytest

import cas.api
from cas.api import Repo
from cas.errors import BackendError, IntegrityError, NoSpaceError
from cas.layout import COMMITS, INDEX, PACKS, pack_key
from cas.repository import Repository
from cas.store import LocalDirBackend, RetryingBackend
from cas.store.base import Backend
from cas.worktree import Worktree
from tests.conftest import SMALL_CHUNKER

from .conftest import digest
from .faulty import (
    DriveView,
    FailNthWrite,
    FailWritesUnder,
    Flaky,
    FlipByteOnRead,
    TruncatingReads,
)

pytestmark = pytest.mark.crash


def _repo(wt: Path, backend: Backend, cache: Path, *, create_wt: bool = False) -> Repo:
    repository = Repository.open(backend, cache_root=cache, writer="test")
    worktree = Worktree.create(wt, backend.location) if create_wt else Worktree.find(wt)
    return Repo(worktree, repository, progress=False)


@pytest.fixture
def two_versions(tmp_path: Path) -> tuple[Path, Path, dict, dict]:
    """A store with v1 and v2 (tags), and the worktree (at v2) that made them."""
    store, wt = tmp_path / "store", tmp_path / "wt"
    wt.mkdir()
    (wt / "a").mkdir()
    for i in range(20):
        (wt / "a" / f"{i}.bin").write_bytes(os.urandom(3000 + 97 * i))
    (wt / "big.bin").write_bytes(os.urandom(400_000))
    backend = LocalDirBackend(store)
    Repository.create(
        backend, cache_root=tmp_path / "c0", writer="t", chunker=SMALL_CHUNKER, pack_size=64 << 10
    )
    with _repo(wt, backend, tmp_path / "c0", create_wt=True) as repo:
        repo.commit("v1", tag="v1")
        v1 = digest(wt)
        (wt / "big.bin").write_bytes(os.urandom(300_000))
        (wt / "a" / "new.bin").write_bytes(os.urandom(5000))
        repo.commit("v2", tag="v2")
    return store, wt, v1, digest(wt)


def _reader(tmp_path: Path, backend: Backend, name: str) -> Repo:
    return _repo(tmp_path / name, backend, tmp_path / f"cache-{name}", create_wt=True)


@pytest.mark.parametrize("wrapper", [FlipByteOnRead, TruncatingReads])
def test_damaged_reads_never_reach_a_file(two_versions, tmp_path: Path, wrapper) -> None:
    store, _wt, _v1, _v2 = two_versions
    with _reader(tmp_path, wrapper(LocalDirBackend(store)), "r") as repo:
        with pytest.raises(IntegrityError) as exc:
            repo.checkout("v1")
        assert "pack" in str(exc.value)
    assert [p.name for p in (tmp_path / "r").iterdir()] == [".cas"]


def test_transient_errors_are_retried_until_they_clear(two_versions, tmp_path: Path) -> None:
    store, wt, v1, _v2 = two_versions
    flaky = Flaky(LocalDirBackend(store), times=2)
    backend = RetryingBackend(flaky, sleep=lambda _s: None)
    with _reader(tmp_path, backend, "r") as repo:
        repo.checkout("v1")
    assert digest(tmp_path / "r") == v1
    assert flaky.injected > 10 and backend.retries == flaky.injected
    (wt / "more.bin").write_bytes(os.urandom(100_000))
    with _repo(wt, backend, tmp_path / "c0") as repo:
        repo.commit("v3")
    with _reader(tmp_path, LocalDirBackend(store), "r2") as repo:
        repo.checkout("main")
        assert not repo.verify(read_data=True).problems
    assert digest(tmp_path / "r2") == digest(wt)


def test_transient_errors_that_do_not_clear_give_a_clear_error(
    two_versions, tmp_path: Path
) -> None:
    store, _wt, _v1, _v2 = two_versions
    backend = RetryingBackend(Flaky(LocalDirBackend(store), times=100), sleep=lambda _s: None)
    with pytest.raises(BackendError) as exc:
        _reader(tmp_path, backend, "r")
    assert "Transport endpoint is not connected" in str(exc.value)
    assert "gave up after 6 attempts" in str(exc.value)
    assert exc.value.transient


FAILURES = [
    ("nth", 1),
    ("nth", 2),
    ("nth", 3),
    ("nth", 5),
    ("under", PACKS),
    ("under", INDEX),
    ("under", COMMITS),
    ("under", "refs/"),
]


@pytest.mark.parametrize(("how", "where"), FAILURES)
@pytest.mark.parametrize(
    "error",
    [
        NoSpaceError("no space left on device"),
        BackendError("[Errno 5] Input/output error"),
    ],
)
def test_failing_write_stops_the_commit_and_loses_nothing(
    two_versions, tmp_path: Path, how: str, where: object, error: Exception
) -> None:
    store, wt, v1, v2 = two_versions
    (wt / "c.bin").write_bytes(os.urandom(200_000))
    expected = digest(wt)
    inner = LocalDirBackend(store)
    faulty: Backend = (
        FailNthWrite(inner, int(str(where)), error)
        if how == "nth"
        else FailWritesUnder(inner, str(where), error)
    )
    with _repo(wt, faulty, tmp_path / "c0") as repo, pytest.raises(BackendError):
        repo.commit("v3")
    with _reader(tmp_path, LocalDirBackend(store), "r") as repo:
        assert not repo.verify(read_data=True).problems
        repo.checkout("v1")
        assert digest(tmp_path / "r") == v1
        repo.checkout("v2")
        assert digest(tmp_path / "r") == v2
    with _repo(wt, LocalDirBackend(store), tmp_path / "c0") as repo:
        repo.commit("v3")
    with _reader(tmp_path, LocalDirBackend(store), "r3") as repo:
        repo.checkout("main")
    assert digest(tmp_path / "r3") == expected


def _new_keys(store: Path, before: set[str]) -> set[str]:
    now = {p.relative_to(store).as_posix() for p in store.rglob("*") if p.is_file()}
    return now - before


@pytest.mark.parametrize(
    "lagging", ["packs", "data-packs", "index", "commit", "all-but-ref", "ghosts"]
)
def test_drive_late_visibility_falls_back_to_the_newest_complete_version(
    tmp_path: Path, lagging: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Another runtime sees the v2 ref entry before (some of) the objects it reaches.

    With only data packs late, the commit and its trees read fine: the checkout starts
    on v2 while its packs are probed beside it, finds one missing, drops what it staged
    and falls back to v1 before touching the worktree."""
    store, wt = tmp_path / "store", tmp_path / "wt"
    wt.mkdir()
    (wt / "f.bin").write_bytes(os.urandom(200_000))
    backend = LocalDirBackend(store)
    Repository.create(
        backend, cache_root=tmp_path / "c0", writer="t", chunker=SMALL_CHUNKER, pack_size=64 << 10
    )
    with _repo(wt, backend, tmp_path / "c0", create_wt=True) as repo:
        repo.commit("v1")
        v1 = digest(wt)
        before = {p.relative_to(store).as_posix() for p in store.rglob("*") if p.is_file()}
        (wt / "f.bin").write_bytes(os.urandom(200_000))
        (wt / "g.bin").write_bytes(os.urandom(50_000))
        v2_id = repo.commit("v2").commit_id
        r = repo.repository
        tree_loc = r.locate(r.load_commit(v2_id).tree)
        assert tree_loc is not None
        tree_pack = pack_key(tree_loc.pack_id)
    fresh = _new_keys(store, before)
    prefixes = {
        "packs": (PACKS,),
        "data-packs": (PACKS,),
        "index": (INDEX,),
        "commit": (COMMITS,),
        "all-but-ref": (PACKS, INDEX, COMMITS),
        "ghosts": (),
    }[lagging]
    hidden = {k for k in fresh if k.startswith(prefixes)}
    if lagging == "data-packs":
        hidden.discard(tree_pack)
        assert hidden
    ghosts = (
        {k for k in fresh if k.startswith((PACKS, INDEX, COMMITS))}
        if lagging == "ghosts"
        else set()
    )
    view = DriveView(LocalDirBackend(store), hidden=hidden.__contains__, ghost=ghosts.__contains__)
    probed: list[object] = []
    real_problem = cas.api._PackProbe.problem

    def problem(self: cas.api._PackProbe) -> object:
        probed.append(real_problem(self))
        return probed[-1]

    monkeypatch.setattr(cas.api._PackProbe, "problem", problem)
    with _reader(tmp_path, view, "r") as repo:
        res = repo.checkout("main")
        assert res.pending == (v2_id,)
        assert digest(tmp_path / "r") == v1
        # The history shows what is readable and says what is still on its way; nothing
        # fails because of an upload in progress.
        with caplog.at_level(logging.WARNING, logger="cas"):
            caplog.clear()
            shown = {e.commit_id for e in repo.log("main")}
            assert v2_id not in shown and "newer version" in caplog.text
            caplog.clear()
            everything = {e.commit_id for e in repo.log(all=True)}
            if lagging in ("commit", "all-but-ref", "ghosts"):
                assert v2_id not in everything and "not readable on the store yet" in caplog.text
            assert repo.diff("main", "main") == []
    if lagging == "data-packs":  # v2 was started on, and its probe stopped it in time
        assert probed and probed[0] is not None
    # Once the upload has finished, the reader gets v2.
    with _repo(tmp_path / "r", LocalDirBackend(store), tmp_path / "cache-r") as repo:
        res = repo.checkout("main")
        assert res.pending == () and res.commit_id == v2_id
    assert digest(tmp_path / "r") == digest(wt)


def test_drive_duplicates_and_leftovers_are_ignored(two_versions, tmp_path: Path) -> None:
    store, _wt, v1, _v2 = two_versions
    pack = next(p for p in (store / PACKS).rglob("*") if p.is_file())
    (pack.parent / f"{pack.name} (1)").write_bytes(pack.read_bytes()[:100])  # Drive's dup
    (store / "index" / "junk (1)").write_bytes(b"")
    (store / "config (1)").write_bytes(b"not a config")
    # Drive's copies of a ref entry and of a commit object, one whole, one cut short.
    entry = next(p for p in (store / "refs" / "tags").rglob("*") if p.is_file())
    (entry.parent / f"{entry.name} (1)").write_bytes(entry.read_bytes())
    commit = next(p for p in (store / "commits").rglob("*") if p.is_file())
    (commit.parent / f"{commit.name} (1)").write_bytes(commit.read_bytes()[:10])
    (pack.parent / f"{pack.name}.abcdef.cas-tmp").write_bytes(b"half a pack")
    with _reader(tmp_path, LocalDirBackend(store), "r") as repo:
        repo.checkout("v1")
        report = repo.verify(read_data=True)
        assert not report.problems and not report.orphan_packs
        assert {t.name for t in repo.tags()} == {"v1", "v2"}
        assert len(repo.log(all=True)) == 2
    assert digest(tmp_path / "r") == v1
    assert errno.ENOENT  # (names with spaces are never valid keys: `list` skips them)
