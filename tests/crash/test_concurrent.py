"""Two writers committing to one branch at the same moment: no commit is ever lost.

With a barrier just before the ref entry both writers have checked the branch and both
append an entry superseding the same head: the branch diverges, both commits stay
reachable, ``status``/``log``/``branch`` show it, and ``cas branch --force`` resolves it.
Without the barrier, at random timing, each run ends either the same way or with one
writer refused (exit 6, "branch moved"), and never with a lost commit.

The tests on a store with create-only writes run on a folder and on the loopback S3
server (``new_store``); the Drive-like one needs a folder store without hard links.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import cas
from cas import _faults
from cas.api import Repo
from cas.repository import Repository
from cas.store import LocalDirBackend
from cas.worktree import Worktree
from tests.conftest import SMALL_CHUNKER
from tests.stores import StoreUnderTest

from .conftest import DRIVER, digest
from .faulty import NoCreateOnly

pytestmark = pytest.mark.crash

RUNS = int(os.environ.get("CAS_TEST_CONCURRENT_RUNS", "4"))


def _two_clones(store: str | Path, tmp_path: Path) -> tuple[str | Path, Path, Path]:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    (a / "base.bin").write_bytes(os.urandom(200_000))
    with cas.init(store, a, progress=False, chunker=SMALL_CHUNKER, pack_size=64 << 10) as repo:
        repo.commit("base", tag="base")
    cas.clone(store, b, progress=False).close()
    return store, a, b


def _commit(wt: Path, message: str, action: str | None) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "cas_cli"]
    if action is not None:
        cmd = [sys.executable, str(DRIVER), "before-ref-update", action, "--"]
    return subprocess.Popen(
        [*cmd, "-C", str(wt), "--json", "commit", "-m", message],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )


def _all_commits(wt: Path) -> set[str]:
    with cas.open(wt, progress=False) as repo:
        return {e.commit_id.hex() for e in repo.log(all=True)}


def test_forced_race_on_a_store_with_create_only_writes(
    new_store: StoreUnderTest, tmp_path: Path
) -> None:
    """The store itself lets exactly one writer through (a claim per ref step): a folder
    through a hard link, S3 through If-None-Match."""
    _store, a, b = _two_clones(new_store.location, tmp_path)
    (a / "from-a.bin").write_bytes(os.urandom(50_000))
    (b / "from-b.bin").write_bytes(os.urandom(50_000))
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    procs = {wt: _commit(wt, f"from {wt.name}", f"barrier:{barrier}:2") for wt in (a, b)}
    # The first writer to claim the branch's next step waits at the barrier, just before
    # its ref entry; the other one, claiming the same step meanwhile, is refused by the
    # store and exits. Only then is the barrier released (it would otherwise wait for a
    # second writer that never comes, until the driver's deadline).
    deadline = time.monotonic() + 120
    while all(p.poll() is None for p in procs.values()) and time.monotonic() < deadline:
        time.sleep(0.05)
    (barrier / "released").touch()
    outs = {wt: p.communicate(timeout=120) for wt, p in procs.items()}
    codes = sorted(p.returncode for p in procs.values())
    assert codes == [0, 6], outs
    winner = next(wt for wt, p in procs.items() if p.returncode == 0)
    loser = b if winner == a else a
    err = json.loads(outs[loser][1])
    assert "was updated by another writer at the same moment" in err["message"]
    won = json.loads(outs[winner][0])["commit"]
    with cas.open(loser, progress=False) as repo:
        assert repo.resolve("main").hex() == won
        assert not repo.status().diverged_heads
        assert not repo.verify(read_data=True).problems
        # The hint works: the loser's changes go to a new branch.
        repo.branch("mine")
        repo.checkout("mine")
        mine = repo.commit("from the loser").commit_id.hex()
    assert {won, mine} <= _all_commits(a)


def test_forced_race_on_a_drive_like_store_diverges_and_keeps_both(tmp_path: Path) -> None:
    """Without create-only writes, both writers land: the branch diverges, nothing is lost."""
    store, a, b = _two_clones(tmp_path / "store", tmp_path)
    (a / "from-a.bin").write_bytes(os.urandom(50_000))
    (b / "from-b.bin").write_bytes(os.urandom(50_000))
    gate = threading.Barrier(2, timeout=60)

    def hook(name: str) -> None:
        if name == "before-ref-update":
            gate.wait()

    def commit(wt: Path) -> tuple[str, bool]:
        backend = NoCreateOnly(LocalDirBackend(store))
        repository = Repository.open(
            backend, cache_root=tmp_path / f"cache-{wt.name}", writer=wt.name
        )
        with Repo(Worktree.find(wt), repository, progress=False) as repo:
            res = repo.commit(f"from {wt.name}")
        return res.commit_id.hex(), res.diverged

    _faults.set_hook(hook)
    try:
        with ThreadPoolExecutor(2) as pool:
            results = list(pool.map(commit, (a, b)))
    finally:
        _faults.set_hook(None)
    ids = {cid for cid, _d in results}
    assert len(ids) == 2 and any(d for _c, d in results)
    # Both commits are reachable, and the divergence is reported everywhere.
    assert ids <= _all_commits(a)
    with cas.open(a, progress=False) as repo:
        st = repo.status()
        assert {h.hex() for h in st.diverged_heads} == ids
        assert next(br for br in repo.branches() if br.name == "main").diverged_heads
        assert not repo.verify(read_data=True).problems
    r = subprocess.run(
        [sys.executable, "-m", "cas_cli", "-C", str(a), "status"],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
    )
    assert "has diverged" in r.stdout and "cas branch --force main" in r.stdout
    # Resolving: point main at one of them; both stay in the store's history.
    keep = sorted(ids)[0]
    with cas.open(a, progress=False) as repo:
        repo.branch("main", keep, force=True)
        assert repo.resolve("main").hex() == keep
        assert not repo.status().diverged_heads
    assert ids <= _all_commits(a)
    with cas.open(b, progress=False) as repo:
        assert not repo.verify().problems


def test_random_concurrent_commits_never_lose_a_commit(
    new_store: StoreUnderTest, tmp_path: Path
) -> None:
    _store, a, b = _two_clones(new_store.location, tmp_path)
    landed: set[str] = set()
    for run in range(RUNS):
        for wt in (a, b):
            with cas.open(wt, progress=False) as repo:
                if repo.status().diverged_heads or repo.status().behind:
                    repo.checkout("main", force=True)
            (wt / f"{wt.name}-{run}.bin").write_bytes(os.urandom(30_000))
        procs = [_commit(wt, f"{wt.name} {run}", None) for wt in (a, b)]
        for p in procs:
            out, err = p.communicate(timeout=120)
            assert p.returncode in (0, 6), err
            if p.returncode == 0:
                landed.add(json.loads(out)["commit"])
            else:
                assert "moved" in err or "diverged" in err or "another writer" in err
        assert landed <= _all_commits(a), "a commit that was reported made is unreachable"
        with cas.open(a, progress=False) as repo:
            heads = repo.status().diverged_heads
            if heads:
                repo.branch("main", heads[0].hex(), force=True)
    with cas.open(b, progress=False) as repo:
        assert not repo.verify(read_data=True).problems
    assert digest(a)  # the worktrees are intact
