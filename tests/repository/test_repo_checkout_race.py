"""Parallel checkout writes every verified chunk into its own file.

Checkout fetches packs on several threads and writes chunks into staged files with
``pwrite`` through a small cache of open file descriptors. Many small files spread over
many packs make every write open a new descriptor and evict an old one. A thread may be
descheduled at any instant; the test makes that happen now and then, right before a
``pwrite`` (a slow disk or a busy machine does the same), so the outcome does not
depend on luck.
"""

from __future__ import annotations

import itertools
import os
import time
from pathlib import Path

import pytest

import cas
from tests.assets import AssetSpec, compare_snapshots, generate_assets, snapshot_tree
from tests.conftest import SMALL_CHUNKER, SMALL_PACK
from tests.repository.repo_support import clone
from tests.stores import StoreUnderTest

MANY_SMALL = AssetSpec(small_files=600, small_min=512, small_max=2_048, large_bytes=64 << 10)


@pytest.fixture
def stalls_before_pwrite(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every 37th ``os.pwrite`` first sleeps 20 ms (the thread loses the CPU)."""
    real = os.pwrite
    calls = itertools.count()

    def pwrite(fd: int, data: bytes, offset: int) -> int:
        if next(calls) % 37 == 5:
            time.sleep(0.02)
        return real(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", pwrite)


def test_parallel_checkout_of_many_small_files(
    stalls_before_pwrite: None, new_store: StoreUnderTest, tmp_path: Path
):
    """Regression: ``_Stager.write`` used a cached fd outside its lock while another fetch
    thread could evict and close it and the number be reused for another staged file;
    ~25 of 600 files came out zero-filled or extended, and the checkout reported success."""
    generate_assets(tmp_path / "wt", MANY_SMALL, seed=401)
    with cas.init(
        new_store.location,
        tmp_path / "wt",
        cache_dir=tmp_path / "cache",
        progress=False,
        chunker=SMALL_CHUNKER,
        pack_size=SMALL_PACK,
    ) as repo:
        repo.commit("v1")
    expected = snapshot_tree(tmp_path / "wt")
    clone(new_store, tmp_path / "clone").close()
    problems = compare_snapshots(expected, snapshot_tree(tmp_path / "clone"))
    assert not problems, f"{len(problems)} files differ: {problems[:5]}"
