"""Many readers of one store on a real S3-protocol server (moto on 127.0.0.1).

Round trip, dedup, bad input and crash recovery run on S3 too: every test that takes the
``store``, ``mini_store``, ``new_store`` or ``scene`` fixture runs once on a folder and
once on the loopback server (``[s3]`` in its id). This file adds what only matters for a
fleet: many processes and threads cloning one snapshot at once.
"""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import cas
from tests.assets import (
    age_tree,
    assert_same_tree,
    generate_assets,
    mutate_assets,
    snapshot_tree,
    wait_out_racy_window,
)
from tests.conftest import SMALL_CHUNKER, S3Server
from tests.repository.repo_support import FAST_SPEC

DRIVER = Path(__file__).parents[1] / "crash" / "driver.py"


@pytest.fixture
def s3_store(s3_server: S3Server, s3_env: None) -> tuple[S3Server, str, str]:
    bucket = s3_server.new_bucket()
    return s3_server, bucket, s3_server.url(bucket)


def _v1_v2(tmp_path: Path, url: str) -> tuple[Path, dict, dict, cas.api.CommitResult]:
    wt = tmp_path / "wt"
    info = generate_assets(wt, FAST_SPEC, seed=5)
    age_tree(wt)
    with cas.init(url, wt, progress=False, chunker=SMALL_CHUNKER, pack_size=128 << 10) as repo:
        repo.commit("v1", tag="v1")
        snap1 = snapshot_tree(wt)
        mutation = mutate_assets(wt, info, seed=6)
        age_tree(wt, seed=1)
        wait_out_racy_window(wt)  # so that v2's commit can trust every stat it takes
        c2 = repo.commit("v2", tag="v2")
        assert c2.stored_bytes < mutation.changed_bytes * 1.5 + 200_000
    return wt, snap1, snapshot_tree(wt), c2


def test_eight_concurrent_readers_clone_one_snapshot(s3_store, tmp_path: Path) -> None:
    _server, _bucket, url = s3_store
    _wt, _snap1, snap2, _c2 = _v1_v2(tmp_path, url)
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cas_cli",
                "--cache-dir",
                str(tmp_path / f"c{i}"),
                "-q",
                "clone",
                url,
                str(tmp_path / f"r{i}"),
                "--ref",
                "v2",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=os.environ.copy(),
        )
        for i in range(8)
    ]
    for p in procs:
        _out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    for i in range(8):
        assert_same_tree(snap2, tmp_path / f"r{i}")


def test_readers_in_threads_share_nothing_mutable(s3_store, tmp_path: Path) -> None:
    _server, _bucket, url = s3_store
    _wt, snap1, _snap2, _c2 = _v1_v2(tmp_path, url)

    def clone_one(i: int) -> None:
        with cas.clone(
            url, tmp_path / f"t{i}", ref="v1", cache_dir=tmp_path / f"tc{i}", progress=False
        ):
            pass

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(clone_one, range(4)))
    for i in range(4):
        assert_same_tree(snap1, tmp_path / f"t{i}")
