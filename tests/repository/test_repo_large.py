"""Round trip and dedup at realistic size (slow): ≥ 2,000 small files in class folders and a
100 MiB safetensors-like file, with the store's default chunker and pack size.

v1 (tag v1) → mutate: +5 % files, -1 % files, a contiguous 10 % of the large file
rewritten in place → v2 (tag v2) → the unchanged folder committed again. Then clones of
v1 and v2 into empty folders with empty caches, and switching in place.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

import cas
from cas.api import CommitResult
from cas.chunking import ChunkerParams
from tests.assets import (
    AssetInfo,
    AssetSpec,
    Mutation,
    Node,
    assert_same_tree,
    generate_assets,
    mutate_assets,
    snapshot_tree,
    wait_out_racy_window,
)
from tests.conftest import empty_store, set_s3_env
from tests.repository.repo_support import clone, tree_bytes_of_version, v2_storage_bound
from tests.stores import StoreUnderTest

pytestmark = pytest.mark.slow

LARGE_SPEC = AssetSpec(small_files=2_100, classes=20, large_bytes=100 << 20, jsonl_lines=2_000)


@dataclass(frozen=True)
class Large:
    root: Path
    store: StoreUnderTest
    wt: Path
    info: AssetInfo
    mutation: Mutation
    snap1: dict[str, Node]
    snap2: dict[str, Node]
    c1: CommitResult
    c2: CommitResult
    again: CommitResult


@pytest.fixture(scope="module")
def large(store_kind: str, request: pytest.FixtureRequest) -> Large:
    root = request.getfixturevalue("tmp_path_factory").mktemp(f"large-{store_kind}")
    store = empty_store(store_kind, root / "store", request)
    with pytest.MonkeyPatch.context() as mp:
        set_s3_env(mp)  # harmless for a folder store
        return _build_large(root, store)


def _build_large(root: Path, store: StoreUnderTest) -> Large:
    wt = root / "wt"
    info = generate_assets(wt, LARGE_SPEC, seed=7)
    assert len(info.small) >= 2_000
    assert info.files[info.large] >= 100 * 1_000_000
    with cas.init(store.location, wt, cache_dir=root / "cache", progress=False) as repo:
        wait_out_racy_window(wt)
        snap1 = snapshot_tree(wt)
        c1 = repo.commit("v1", tag="v1")
        mutation = mutate_assets(wt, info, seed=8, spec=LARGE_SPEC)
        wait_out_racy_window(wt)  # so the stat cache keeps the changed files too
        snap2 = snapshot_tree(wt)
        c2 = repo.commit("v2", tag="v2")
        again = repo.commit("v2, nothing changed")
    return Large(root, store, wt, info, mutation, snap1, snap2, c1, c2, again)


def test_v2_stores_little_more_than_the_changed_bytes(large: Large):
    with cas.open(large.wt, cache_dir=large.root / "cache", progress=False) as repo:
        trees = tree_bytes_of_version(repo, "v2")
    changed = large.mutation.changed_bytes
    bound = v2_storage_bound(changed, ChunkerParams().max, trees)
    print(
        f"\nlarge dedup: v1 {large.c1.bytes} B in {large.c1.files} files stored as "
        f"{large.c1.stored_bytes} B; v2 changed {changed} B "
        f"({len(large.mutation.added)} files added, {len(large.mutation.deleted)} deleted, "
        f"{large.mutation.rewritten[2]} B rewritten) → new {large.c2.new_bytes} B, "
        f"stored {large.c2.stored_bytes} B ({large.c2.stored_bytes / changed:.3f}× changed; "
        f"bound {bound} B; v2 trees {trees} B)"
    )
    assert large.c2.stored_bytes <= bound
    assert large.c2.new_bytes <= bound
    # It did store the new content (f16-looking bytes shrink by ~10 % at most).
    assert large.c2.stored_bytes >= 0.8 * changed


def test_committing_the_unchanged_folder_adds_only_the_commit(large: Large):
    a = large.again
    assert (a.new_bytes, a.stored_bytes, a.scanned_bytes) == (0, 0, 0)
    assert a.files == large.c2.files and a.bytes == large.c2.bytes
    assert a.commit_id != large.c2.commit_id


@pytest.mark.parametrize("ref", ["v1", "v2"])
def test_clone_into_empty_folder_with_empty_cache(large: Large, ref: str, tmp_path: Path):
    dest = tmp_path / "clone"
    dest.mkdir()
    with clone(large.store, dest, ref) as repo:
        assert repo.status().clean
    assert_same_tree(large.snap1 if ref == "v1" else large.snap2, dest)


def test_switch_in_place_in_a_clone(large: Large, tmp_path: Path):
    dest = tmp_path / "clone"
    with clone(large.store, dest, "v1") as repo:
        for ref in ("v2", "v1", "v2"):
            result = repo.checkout(ref)
            assert_same_tree(large.snap1 if ref == "v1" else large.snap2, dest)
            # Only what differs is written; the rest of the large file comes from itself.
            assert result.stats.bytes_written < large.info.files[large.info.large] + (8 << 20)


def test_switch_in_place_in_the_original_worktree(large: Large):
    with cas.open(large.wt, cache_dir=large.root / "cache", progress=False) as repo:
        for ref in ("v1", "v2", "v1"):
            repo.checkout(ref)
            assert_same_tree(large.snap1 if ref == "v1" else large.snap2, large.wt)
        repo.checkout("main")
        assert_same_tree(large.snap2, large.wt)
