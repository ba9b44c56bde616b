"""Fixtures of the end-to-end repository tests.

``built`` (a few hundred files) and ``mini`` (a dozen) are stores with two versions of a
generated folder, made once per session and per kind of store (a folder, a prefix on the
loopback S3 server: every test that uses them runs on both); ``store`` and ``mini_store``
give each test its own copy, so tests may damage their store freely.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import cas
from tests.assets import AssetSpec, generate_assets, mutate_assets, mutate_metadata, snapshot_tree
from tests.conftest import SMALL_CHUNKER, SMALL_PACK, empty_store, set_s3_env
from tests.repository.repo_support import FAST_SPEC, MINI_SPEC, Built
from tests.stores import StoreUnderTest


def _build(root: Path, spec: AssetSpec, seed: int, target: StoreUnderTest) -> Built:
    """A store with v1 (tag v1) and v2 (tag v2, head of main) of a generated folder.

    v2 = v1 + 5 % new files - 1 % files, 10 % of the large file rewritten in place, and
    :func:`~tests.assets.mutate_metadata` (a re-pointed symlink, a mode change, an empty
    folder replaced by another, an edited config).
    """
    wt = root / "wt"
    info = generate_assets(wt, spec, seed=seed)
    with cas.init(
        target.location,
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
    return Built(target, info, mutation, snap1, snap2, c1, c2, SMALL_CHUNKER.max, SMALL_PACK)


def _built(
    kind: str, name: str, spec: AssetSpec, seed: int, request: pytest.FixtureRequest
) -> Built:
    root = request.getfixturevalue("tmp_path_factory").mktemp(f"{name}-{kind}")
    with pytest.MonkeyPatch.context() as mp:
        set_s3_env(mp)  # harmless for a folder store
        return _build(root, spec, seed, empty_store(kind, root / "store", request))


@pytest.fixture(scope="session")
def built(store_kind: str, request: pytest.FixtureRequest) -> Built:
    """The fast variant's store: a few hundred files, a few MB (built once per kind)."""
    return _built(store_kind, "built", FAST_SPEC, 101, request)


@pytest.fixture
def store(built: Built, tmp_path: Path) -> StoreUnderTest:
    """This test's own copy of the ``built`` store."""
    return _own_copy(built, tmp_path)


@pytest.fixture(scope="session")
def mini(store_kind: str, request: pytest.FixtureRequest) -> Built:
    """The same shape with a dozen files, for tests that need a store, not volume."""
    return _built(store_kind, "mini", MINI_SPEC, 301, request)


@pytest.fixture
def mini_store(mini: Built, tmp_path: Path) -> StoreUnderTest:
    """This test's own copy of the ``mini`` store."""
    return _own_copy(mini, tmp_path)


def _own_copy(built: Built, tmp_path: Path) -> StoreUnderTest:
    return built.store.copy(tmp_path / "store")


@pytest.fixture(autouse=True)
def _s3_credentials(s3_env: None) -> None:
    """Every test here may open an S3 store (throwaway credentials; no effect on folders)."""
