"""Fixtures of the end-to-end repository tests.

``built`` makes one store with two versions of a generated folder, once per session;
``store`` gives each test its own copy of it, so tests may damage their store freely.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import cas
from tests.assets import generate_assets, mutate_assets, mutate_metadata, snapshot_tree
from tests.conftest import SMALL_CHUNKER, SMALL_PACK
from tests.repository.repo_support import FAST_SPEC, MINI_SPEC, Built, copy_store


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """A store with v1 (tag v1) and v2 (tag v2, head of main) of a small asset folder."""
    chunker, pack_size = SMALL_CHUNKER, SMALL_PACK
    root = tmp_path_factory.mktemp("built")
    wt = root / "wt"
    info = generate_assets(wt, FAST_SPEC, seed=101)
    with cas.init(
        root / "store",
        wt,
        cache_dir=root / "cache",
        progress=False,
        chunker=chunker,
        pack_size=pack_size,
    ) as repo:
        snap1 = snapshot_tree(wt)
        c1 = repo.commit("v1", tag="v1")
        mutation = mutate_assets(wt, info, seed=102, spec=FAST_SPEC)
        mutate_metadata(wt, info)
        snap2 = snapshot_tree(wt)
        c2 = repo.commit("v2", tag="v2")
    return Built(root / "store", info, mutation, snap1, snap2, c1, c2, chunker.max, pack_size)


@pytest.fixture
def store(built: Built, tmp_path: Path) -> Path:
    """This test's own copy of the built store."""
    return copy_store(built.store, tmp_path / "store")


@pytest.fixture(scope="session")
def mini_built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny store (a dozen files) with tags v1 and v2, for tests that need any store."""
    root = tmp_path_factory.mktemp("mini")
    wt = root / "wt"
    info = generate_assets(wt, MINI_SPEC, seed=301)
    with cas.init(
        root / "store",
        wt,
        cache_dir=root / "cache",
        progress=False,
        chunker=SMALL_CHUNKER,
        pack_size=SMALL_PACK,
    ) as repo:
        repo.commit("v1", tag="v1")
        mutate_assets(wt, info, seed=302, spec=MINI_SPEC)
        repo.commit("v2", tag="v2")
    return root / "store"


@pytest.fixture
def mini_store(mini_built: Path, tmp_path: Path) -> Path:
    """This test's own copy of the tiny store."""
    return copy_store(mini_built, tmp_path / "store")
