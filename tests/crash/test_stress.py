"""Model-based stress: random commit / checkout / tag / branch / second writer / kill steps
against a model of what every version must contain, checked after every step.

The default run is short; ``CAS_STRESS_STEPS=500`` (and ``CAS_STRESS_SEED``) run longer.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import cas
from cas.errors import AlreadyExistsError, RefConflictError
from tests.conftest import SMALL_CHUNKER

from .conftest import digest

pytestmark = pytest.mark.crash

STEPS = int(os.environ.get("CAS_STRESS_STEPS", "30"))
SEED = int(os.environ.get("CAS_STRESS_SEED", "20261125"))


def _mutate(root: Path, rng: random.Random) -> None:
    files = [p for p in root.rglob("*") if p.is_file() and ".cas" not in p.parts]
    for _ in range(rng.randint(1, 4)):
        op = rng.choice(["add", "add", "modify", "delete", "mkdir"])
        if op == "add" or not files:
            d = root / rng.choice(["", "x", "x/y", "z"])
            d.mkdir(parents=True, exist_ok=True)
            (d / f"f{rng.randrange(10**6)}.bin").write_bytes(rng.randbytes(rng.randint(0, 60_000)))
        elif op == "modify":
            p = rng.choice(files)
            data = bytearray(p.read_bytes() or b"\0")
            pos = rng.randrange(len(data))
            data[pos : pos + 100] = rng.randbytes(100)
            p.write_bytes(bytes(data))
        elif op == "delete":
            p = rng.choice(files)
            p.unlink()
            files.remove(p)
        else:
            (root / f"empty{rng.randrange(100)}").mkdir(exist_ok=True)


class Model:
    """What each commit must contain, and the names pointing at commits."""

    def __init__(self) -> None:
        self.versions: dict[str, dict] = {}
        self.tags: dict[str, str] = {}


def _commit_at_once(writers: dict[str, cas.Repo], step: int) -> dict[str, object]:
    """Each writer commits at the same moment (one thread each, past a barrier): name →
    its CommitResult or the RefConflictError it got."""
    start = threading.Barrier(len(writers))
    results: dict[str, object] = {}

    def run(name: str) -> None:
        start.wait()
        try:
            results[name] = writers[name].commit(f"{name} {step}")
        except RefConflictError as exc:
            results[name] = exc

    threads = [threading.Thread(target=run, args=(n,)) for n in writers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_random_operations_against_a_model(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    store, wt, other = tmp_path / "store", tmp_path / "wt", tmp_path / "other"
    wt.mkdir()
    _mutate(wt, rng)
    model = Model()
    repo = cas.init(store, wt, progress=False, chunker=SMALL_CHUNKER, pack_size=32 << 10)
    model.versions[repo.commit("start").commit_id.hex()] = digest(wt)
    second = cas.clone(store, other, progress=False)
    scratch = 0
    counts: dict[str, int] = {}
    for _step in range(STEPS):
        op = rng.choice(["commit", "commit", "checkout", "tag", "branch", "second", "kill"])
        counts[op] = counts.get(op, 0) + 1
        if op == "commit":
            if repo.head.branch is None:
                repo.checkout("main", force=True)
            _mutate(wt, rng)
            try:
                res = repo.commit(f"step {_step}")
            except RefConflictError:
                repo.checkout(repo.head.branch or "main", force=True)
                continue
            model.versions[res.commit_id.hex()] = digest(wt)
        elif op == "checkout":
            target = rng.choice(sorted(model.versions) + sorted(model.tags))
            repo.checkout(target, force=True)
            commit = model.tags.get(target, target)
            assert digest(wt) == model.versions[commit], f"checkout {target}"
        elif op == "tag":
            name = f"t{rng.randrange(20)}"
            commit = rng.choice(sorted(model.versions))
            try:
                repo.tag(name, commit)
                model.tags[name] = commit
            except AlreadyExistsError:
                assert name in model.tags and model.tags[name] != commit
        elif op == "branch":
            name = f"b{rng.randrange(5)}"
            commit = rng.choice(sorted(model.versions))
            repo.branch(name, commit, force=True)
            repo.checkout(name, force=True)
            assert digest(wt) == model.versions[commit]
        elif op == "second":
            # Two writers commit to main at the same moment (threads, one worktree
            # each): both land (the branch would diverge) or one gets a clear conflict;
            # what landed is exactly its worktree, and nothing is lost.
            if repo.head.branch != "main":
                repo.checkout("main", force=True)
            second.checkout("main", force=True)
            _mutate(wt, rng)
            _mutate(other, rng)
            writers = {"wt": (repo, wt), "other": (second, other)}
            results = _commit_at_once({n: w for n, (w, _r) in writers.items()}, _step)
            landed = 0
            for name, (writer, root) in writers.items():
                got = results[name]
                if isinstance(got, RefConflictError):
                    writer.checkout("main", force=True)
                else:
                    landed += 1
                    model.versions[got.commit_id.hex()] = digest(root)  # type: ignore[attr-defined]
            assert landed >= 1, results
            if landed == 2:
                # Both landed: a divergence, reported as such (in one process the other
                # thread's claim counts as stale, as a dead writer's would), and resolved
                # the way the docs tell the user: pick one head.
                assert repo.repository.branch_state("main").diverged
                mine = results["wt"]
                assert isinstance(mine, cas.api.CommitResult)
                repo.branch("main", mine.commit_id.hex(), force=True)
                second.checkout("main", force=True)
        else:  # kill a commit subprocess at a random instant
            if repo.head.branch is None:
                repo.checkout("main", force=True)
            _mutate(wt, rng)
            expected = digest(wt)
            before = repo.resolve(repo.head.branch or "main").hex()
            p = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "cas_cli",
                    "-C",
                    str(wt),
                    "-q",
                    "commit",
                    "-m",
                    f"kill {_step}",
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=os.environ.copy(),
            )
            time.sleep(rng.uniform(0, 0.6))
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
            p.communicate(timeout=60)
            repo.close()
            repo = cas.open(wt, progress=False)
            repo.status()  # finishes an interrupted last step, if any
            after = repo.resolve(repo.head.branch or "main").hex()
            if after != before:
                model.versions[after] = expected
            assert digest(wt) == expected  # a commit never changes the worktree
        # After every step: the store is sound and two random versions restore exactly.
        report = repo.verify()
        assert not report.problems, report.problems
        for commit in rng.sample(sorted(model.versions), k=min(2, len(model.versions))):
            scratch += 1
            dest = tmp_path / f"scratch{scratch}"
            cas.clone(
                store,
                dest,
                ref=commit,
                progress=False,
                cache_dir=tmp_path / ("cache" if scratch % 2 else f"c{scratch}"),
            ).close()
            assert digest(dest) == model.versions[commit], f"version {commit[:12]}"
            shutil.rmtree(dest)
    assert not repo.verify(read_data=True).problems
    repo.close()
    second.close()
    assert len(counts) >= 5, counts
