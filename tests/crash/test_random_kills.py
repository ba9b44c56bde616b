"""SIGKILL a commit and a checkout at random instants, many times, and check the invariants."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import pytest

from .conftest import Scene, digest

pytestmark = pytest.mark.crash

KILLS = int(os.environ.get("CAS_TEST_KILLS", "6"))


def _start(scene: Scene, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "cas_cli", "-C", str(scene.wt), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )


def _timed(scene: Scene, *args: str) -> float:
    start = time.monotonic()
    p = _start(scene, *args)
    p.communicate(timeout=300)
    assert p.returncode == 0
    return time.monotonic() - start


def _startup(scene: Scene) -> float:
    """How long the interpreter takes to start and import cas here (no store access): a
    kill before that tests nothing, so the random instants are drawn after it."""
    return min(_timed(scene, "--version") for _ in range(2))


def test_commit_killed_at_random_instants(scene: Scene) -> None:
    rng = random.Random(42)
    # How long one uninterrupted commit of such a change takes here: kills land inside it.
    (scene.wt / "warmup.bin").write_bytes(rng.randbytes(4 << 20))
    duration = _timed(scene, "commit", "-m", "warm-up")
    startup = min(_startup(scene), 0.5 * duration)
    kills = mid_write = 0
    for round_no in range(KILLS):
        (scene.wt / f"round-{round_no}.bin").write_bytes(rng.randbytes(4 << 20))
        expected = digest(scene.wt)
        before = set(scene.store.keys())
        p = _start(scene, "commit", "-m", f"round {round_no}")
        time.sleep(rng.uniform(startup, 0.95 * duration))
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            kills += 1
            # Killed after the commit had written to the store: the interesting kills.
            mid_write += bool(set(scene.store.keys()) - before)
        p.communicate(timeout=60)
        assert scene.clone_digest("v1", f"v1-{round_no}") == scene.v1
        assert scene.verify_problems() == []
        r = scene.cas("--json", "commit", "-m", f"round {round_no} again")
        assert r.returncode == 0, r.stderr
        assert scene.clone_digest("main", f"main-{round_no}") == expected
    assert kills >= KILLS // 2, "the commits finished before the kill: make them longer"
    if not mid_write:
        # On a loaded machine every random instant may have missed the writing phase:
        # one more round, killed as soon as the commit's first object is on the store.
        (scene.wt / "last.bin").write_bytes(rng.randbytes(24 << 20))
        expected = digest(scene.wt)
        before = set(scene.store.keys())
        p = _start(scene, "commit", "-m", "last round")
        while p.poll() is None and not set(scene.store.keys()) - before:
            time.sleep(0.005)
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            mid_write += 1
        p.communicate(timeout=60)
        assert scene.verify_problems() == []
        assert scene.cas("commit", "-m", "last round again").returncode == 0
        assert scene.clone_digest("main", "main-last") == expected
    assert mid_write >= 1, "no kill landed while the commit was writing to the store"


def test_checkout_killed_at_random_instants(scene: Scene) -> None:
    assert scene.cas("commit", "-m", "v2", "--tag", "v2").returncode == 0
    rng = random.Random(7)
    duration = max(_timed(scene, "checkout", "v1"), _timed(scene, "checkout", "v2"))
    startup = min(_startup(scene), 0.5 * duration)
    target, other = "v1", "v2"
    for _round in range(KILLS):
        p = _start(scene, "checkout", target)
        time.sleep(rng.uniform(startup, 0.95 * duration))
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
        p.communicate(timeout=60)
        allowed = {"v1": scene.v1, "v2": scene.v2}
        for path, value in digest(scene.wt).items():
            assert value in (allowed[target].get(path), allowed[other].get(path)), path
        r = scene.cas("checkout", target)
        assert r.returncode == 0, r.stderr
        assert digest(scene.wt) == allowed[target]
        target, other = other, target
