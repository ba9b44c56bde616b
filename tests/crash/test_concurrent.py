"""Two writers committing to one branch at the same moment: no commit is ever lost.

With a barrier just before the ref entry both writers have checked the branch and both
append an entry superseding the same head: the branch diverges, both commits stay
reachable, ``status``/``log``/``branch`` show it, and ``cas branch --force`` resolves it.
Without the barrier, at random timing, each run ends either the same way or with one
writer refused (exit 6, "branch moved"), and never with a lost commit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import cas
from tests.conftest import SMALL_CHUNKER

from .conftest import DRIVER, digest

pytestmark = pytest.mark.crash

RUNS = int(os.environ.get("CAS_TEST_CONCURRENT_RUNS", "4"))


def _two_clones(tmp_path: Path) -> tuple[Path, Path, Path]:
    store = tmp_path / "store"
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


def test_forced_race_diverges_and_keeps_both_commits(tmp_path: Path) -> None:
    _store, a, b = _two_clones(tmp_path)
    (a / "from-a.bin").write_bytes(os.urandom(50_000))
    (b / "from-b.bin").write_bytes(os.urandom(50_000))
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    procs = [_commit(wt, f"from {wt.name}", f"barrier:{barrier}:2") for wt in (a, b)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    ids = {json.loads(out)["commit"] for out, _err in outs}
    assert any(json.loads(out)["diverged"] for out, _err in outs)
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


def test_random_concurrent_commits_never_lose_a_commit(tmp_path: Path) -> None:
    _store, a, b = _two_clones(tmp_path)
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
                assert "moved" in err or "diverged" in err
        assert landed <= _all_commits(a), "a commit that was reported made is unreachable"
        with cas.open(a, progress=False) as repo:
            heads = repo.status().diverged_heads
            if heads:
                repo.branch("main", heads[0].hex(), force=True)
    with cas.open(b, progress=False) as repo:
        assert not repo.verify(read_data=True).problems
    assert digest(a)  # the worktrees are intact
