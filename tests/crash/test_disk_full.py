"""A full disk, for real: small tmpfs filesystems for the worktree and for the store.

Checkout and commit must stop with a clear error (exit 8), leave no half-written file in
place of a good one, and leave the store consistent; after space is freed, a rerun works.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import cas
from cas.errors import NoSpaceError
from tests.conftest import SMALL_CHUNKER

from .conftest import digest

pytestmark = pytest.mark.crash


def _mount(where: Path, size: str) -> None:
    where.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {r.stderr.strip()}")


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB filesystem."""
    mnt = tmp_path / "small"
    _mount(mnt, "4m")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def _cas(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cas_cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ.copy(),
    )


def test_checkout_on_a_full_disk_leaves_the_old_version(tmp_path: Path, small_fs: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "small.txt").write_text("v1\n")
    (src / "keep.bin").write_bytes(os.urandom(500_000))
    with cas.init(tmp_path / "store", src, progress=False, chunker=SMALL_CHUNKER) as repo:
        repo.commit("v1", tag="v1")
        (src / "small.txt").write_text("v2\n")
        (src / "big.bin").write_bytes(os.urandom(6 << 20))  # more than the 4 MiB disk
        repo.commit("v2", tag="v2")
    wt = small_fs / "wt"
    r = _cas(
        "--cache-dir",
        str(tmp_path / "cache"),
        "clone",
        str(tmp_path / "store"),
        str(wt),
        "--ref",
        "v1",
    )
    assert r.returncode == 0, r.stderr
    before = digest(wt)
    r = _cas("-C", str(wt), "checkout", "v2")
    assert r.returncode == 8, r.stderr
    assert r.stderr.startswith("error: no space left in ")
    assert "the worktree was left as it was" in r.stderr
    assert digest(wt) == before  # nothing half-written in place of a good file
    assert not (wt / ".cas" / "tmp").exists()
    with cas.open(wt, progress=False, cache_dir=tmp_path / "cache") as repo:
        assert repo.status().clean
        assert not repo.verify().problems


def test_commit_to_a_full_store_keeps_it_consistent(tmp_path: Path, small_fs: Path) -> None:
    store = small_fs / "store"
    wt = tmp_path / "wt"
    wt.mkdir()
    (wt / "a.bin").write_bytes(os.urandom(300_000))
    with cas.init(store, wt, progress=False, chunker=SMALL_CHUNKER, pack_size=256 << 10) as repo:
        repo.commit("v1", tag="v1")
    v1 = digest(wt)
    (wt / "b.bin").write_bytes(os.urandom(6 << 20))  # does not fit in the store
    with cas.open(wt, progress=False) as repo, pytest.raises(NoSpaceError) as exc:
        repo.commit("v2")
    assert "no space left on device" in str(exc.value)
    r = _cas("-C", str(wt), "commit", "-m", "v2")
    assert r.returncode == 8 and "free space and rerun" in r.stderr
    with cas.open(wt, progress=False) as repo:
        assert [e.commit.message for e in repo.log()] == ["v1"]
        assert not repo.verify(read_data=True).problems
    assert not list(store.rglob("*.cas-tmp"))
    # Free space (here: grow the filesystem); the rerun reuses what was uploaded.
    subprocess.run(["mount", "-o", "remount,size=24m", str(small_fs)], check=True)
    r = _cas("-C", str(wt), "--json", "commit", "-m", "v2")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["bytes_stored"] < 6 << 20  # checkpointed packs were reused
    with cas.open(wt, progress=False) as repo:
        assert not repo.verify(read_data=True).problems
    fresh = tmp_path / "fresh"
    cas.clone(store, fresh, ref="v1", cache_dir=tmp_path / "c2", progress=False).close()
    assert digest(fresh) == v1
