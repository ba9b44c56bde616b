"""Dedup: a commit stores little more than the bytes that changed.

The large-size variant of the first two checks is in ``test_repo_large.py`` (slow).
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import cas
from cas.chunking import ChunkerParams
from tests.assets import (
    age_tree,
    f16_bytes,
    generate_assets,
    insert_bytes,
    mutate_assets,
    wait_out_racy_window,
)
from tests.conftest import SMALL_CHUNKER, SMALL_PACK
from tests.repository.repo_support import (
    FAST_SPEC,
    tree_bytes_of_version,
    v2_storage_bound,
)
from tests.stores import StoreUnderTest


def _small_repo(new_store: StoreUnderTest, tmp_path: Path) -> cas.Repo:
    return cas.init(
        new_store.location,
        tmp_path / "wt",
        cache_dir=tmp_path / "cache",
        progress=False,
        chunker=SMALL_CHUNKER,
        pack_size=SMALL_PACK,
    )


def test_v2_stores_little_more_than_the_changed_bytes(new_store: StoreUnderTest, tmp_path: Path):
    info = generate_assets(tmp_path / "wt", FAST_SPEC, seed=201)
    with _small_repo(new_store, tmp_path) as repo:
        c1 = repo.commit("v1", tag="v1")
        m = mutate_assets(tmp_path / "wt", info, seed=202, spec=FAST_SPEC)
        c2 = repo.commit("v2", tag="v2")
        trees = tree_bytes_of_version(repo, "v2")
    changed = m.changed_bytes
    bound = v2_storage_bound(changed, SMALL_CHUNKER.max, trees)
    print(
        f"\nfast dedup: v1 {c1.bytes} B stored as {c1.stored_bytes} B; v2 changed {changed} B "
        f"→ new {c2.new_bytes} B, stored {c2.stored_bytes} B "
        f"({c2.stored_bytes / changed:.3f}× changed; bound {bound} B; v2 trees {trees} B)"
    )
    assert c2.stored_bytes <= bound
    assert c2.new_bytes <= bound
    assert c2.stored_bytes >= 0.8 * changed  # the new content really was stored
    assert c2.files == len(info.files) and c2.bytes == sum(info.files.values())


def test_unchanged_folder_commits_only_the_commit(new_store: StoreUnderTest, tmp_path: Path):
    """Old mtimes (outside the "racy" window): the files are not even read again."""
    generate_assets(tmp_path / "wt", FAST_SPEC, seed=203)  # mtimes a day in the past
    with _small_repo(new_store, tmp_path) as repo:
        wait_out_racy_window(tmp_path / "wt")
        first = repo.commit("v1")
        assert first.scanned_bytes == first.bytes > 0
        before = new_store.objects()
        again = repo.commit("again")
        log = repo.log()
    assert (again.new_bytes, again.stored_bytes, again.scanned_bytes) == (0, 0, 0)
    assert again.bytes == first.bytes
    assert [e.commit_id for e in log] == [again.commit_id, first.commit_id]
    # Only a commit object, the branch's new ref entry and its claim on that step (both
    # kinds of store enforce create-only writes) were added to the store.
    after = new_store.objects()
    assert {p: d for p, d in after.items() if p in before} == before
    new_files = sorted(p for p in after if p not in before)
    assert len(new_files) == 3
    assert new_files[0].startswith("commits/")
    assert new_files[1].startswith("refs/claims/heads/main/")
    assert new_files[2].startswith("refs/heads/main/")


def test_unchanged_commit_with_fresh_mtimes_reads_but_stores_nothing(
    new_store: StoreUnderTest, tmp_path: Path
):
    generate_assets(tmp_path / "wt", FAST_SPEC, seed=204)
    with _small_repo(new_store, tmp_path) as repo:
        repo.commit("v1")
        age_tree(tmp_path / "wt", seed=5)  # new mtimes: the stat cache cannot vouch
        again = repo.commit("touched")
    assert again.scanned_bytes == again.bytes
    assert again.new_bytes > 0  # the trees record the new mtimes …
    assert again.stored_bytes < 64 * 1024  # … but no chunk is stored again


def test_insert_100_bytes_near_the_start_of_a_large_file(new_store: StoreUnderTest, tmp_path: Path):
    """Default chunker: content-defined cuts re-align right after the insertion."""
    wt = tmp_path / "wt"
    wt.mkdir()
    rng = random.Random(205)
    big = wt / "model.safetensors"
    with open(big, "wb") as f:
        for _ in range(8):
            f.write(f16_bytes(rng, 8 << 20))  # 64 MiB
    params = ChunkerParams()
    with cas.init(new_store.location, wt, cache_dir=tmp_path / "cache", progress=False) as repo:
        c1 = repo.commit("v1")
        insert_bytes(big, 4_321, rng.randbytes(100))
        c2 = repo.commit("v2")
        v1_chunks = repo.ls(c1.commit_id.hex(), "model.safetensors")[0].entry.chunks
        v2_chunks = repo.ls(c2.commit_id.hex(), "model.safetensors")[0].entry.chunks
    new = {c.chunk_id for c in v2_chunks} - {c.chunk_id for c in v1_chunks}
    print(
        f"\n100-byte insert into 64 MiB: {len(new)} new chunk(s), new {c2.new_bytes} B, "
        f"stored {c2.stored_bytes} B (file has {len(v2_chunks)} chunks)"
    )
    assert c2.scanned_bytes == os.path.getsize(big)
    # The chunk holding the insertion is new and, at worst, the next one too (before
    # the cut points fall back onto the old ones): ≤ 2 max-size chunks, plus the tree.
    assert c2.new_bytes <= 2 * params.max + 4096
    assert c2.stored_bytes <= 2 * params.max + 4096
    assert len(new) <= 2
