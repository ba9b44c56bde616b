"""A reader needs no write access: clone, checkout, log, ls, status, du and verify work on
a store mounted read-only (a real read-only bind mount); commit fails clearly (exit 8)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import cas
from tests.assets import assert_same_tree, snapshot_tree
from tests.conftest import SMALL_CHUNKER


@pytest.fixture
def read_only_store(tmp_path: Path) -> Iterator[tuple[Path, Path, dict]]:
    store, wt = tmp_path / "store", tmp_path / "wt"
    wt.mkdir()
    (wt / "a.bin").write_bytes(os.urandom(100_000))
    (wt / "d").mkdir()
    (wt / "d" / "b.txt").write_text("hello\n")
    with cas.init(store, wt, progress=False, chunker=SMALL_CHUNKER) as repo:
        repo.commit("v1", tag="v1")
    ro = tmp_path / "ro-store"
    ro.mkdir()
    bind = subprocess.run(["mount", "--bind", str(store), str(ro)], capture_output=True, text=True)
    if bind.returncode != 0:
        pytest.skip(f"cannot bind-mount here (needs root): {bind.stderr.strip()}")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(ro)], check=True)
        with pytest.raises(OSError, match="Read-only file system"):
            (ro / "probe").write_bytes(b"x")  # really read-only, even for root
        yield ro, wt, snapshot_tree(wt)
    finally:
        subprocess.run(["umount", "-l", str(ro)], check=False)


def _cas(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cas_cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ.copy(),
    )


def test_every_read_command_works_without_write_access(read_only_store, tmp_path: Path) -> None:
    ro, _wt, snap = read_only_store
    dest = tmp_path / "reader"
    r = _cas("--cache-dir", str(tmp_path / "c"), "clone", str(ro), str(dest), "--ref", "v1")
    assert r.returncode == 0, r.stderr
    assert_same_tree(snap, dest)
    for args in (
        ["log"],
        ["ls", "v1"],
        ["status"],
        ["du"],
        ["verify", "--read-data"],
        ["show", "v1"],
        ["diff", "v1"],
        ["tag"],
        ["branch"],
        ["checkout", "v1"],
    ):
        r = _cas("--cache-dir", str(tmp_path / "c"), "-C", str(dest), *args)
        assert r.returncode == 0, (args, r.stderr)
    r = _cas("--cache-dir", str(tmp_path / "c"), "-C", str(dest), "--json", "verify")
    assert json.loads(r.stdout)["ok"]


def test_commit_to_a_read_only_store_is_a_clear_error(read_only_store, tmp_path: Path) -> None:
    ro, _wt, _snap = read_only_store
    dest = tmp_path / "reader"
    cas.clone(ro, dest, cache_dir=tmp_path / "c", progress=False).close()
    (dest / "new.txt").write_text("new")
    r = _cas("--cache-dir", str(tmp_path / "c"), "-C", str(dest), "commit", "-m", "x")
    assert r.returncode == 8
    assert r.stderr.startswith("error: permission denied while trying to write")
    assert "read-only" in r.stderr
    assert "Traceback" not in r.stderr
