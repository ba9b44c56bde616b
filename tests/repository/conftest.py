"""Fixtures of the end-to-end repository tests.

``built`` (a few hundred files) and ``mini`` (a dozen) are stores with two versions of a
generated folder, made once per session; ``store`` and ``mini_store`` give each test its
own copy, so tests may damage their store freely.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import cas
from tests.assets import AssetSpec, generate_assets, mutate_assets, mutate_metadata, snapshot_tree
from tests.conftest import SMALL_CHUNKER, SMALL_PACK
from tests.repository.repo_support import FAST_SPEC, MINI_SPEC, Built, copy_store


def _build(root: Path, spec: AssetSpec, seed: int) -> Built:
    """A store with v1 (tag v1) and v2 (tag v2, head of main) of a generated folder.

    v2 = v1 + 5 % new files - 1 % files, 10 % of the large file rewritten in place, and
    :func:`~tests.assets.mutate_metadata` (a re-pointed symlink, a mode change, an empty
    folder replaced by another, an edited config).
    """
    wt = root / "wt"
    info = generate_assets(wt, spec, seed=seed)
    with cas.init(
        root / "store",
        wt,
        cache_dir=root / "cache",
        progress=False,
        chunker=SMALL_CHUNKER,
        pack_size=SMALL_PACK,
    ) as repo:
        snap1 = snapshot_tree(wt)
        c1 = repo.commit("v1", tag="v1")
        mutation = mutate_assets(wt, info, seed=seed + 1, spec=spec)
        mutate_metadata(wt, info)
        snap2 = snapshot_tree(wt)
        c2 = repo.commit("v2", tag="v2")
    return Built(
        root / "store", info, mutation, snap1, snap2, c1, c2, SMALL_CHUNKER.max, SMALL_PACK
    )


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """The fast variant's store: a few hundred files, a few MB (built once)."""
    return _build(tmp_path_factory.mktemp("built"), FAST_SPEC, 101)


@pytest.fixture
def store(built: Built, tmp_path: Path) -> Path:
    """This test's own copy of the ``built`` store."""
    return copy_store(built.store, tmp_path / "store")


@pytest.fixture(scope="session")
def mini(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """The same shape with a dozen files, for tests that need a store, not volume."""
    return _build(tmp_path_factory.mktemp("mini"), MINI_SPEC, 301)


@pytest.fixture
def mini_store(mini: Built, tmp_path: Path) -> Path:
    """This test's own copy of the ``mini`` store."""
    return copy_store(mini.store, tmp_path / "store")
