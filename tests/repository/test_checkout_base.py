"""Checkout planning reads the worktree's base version only where it differs from the
target: equal entries decide nothing, and a folder the two versions share is not read.
It keeps only what the checkout acts on."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import cas
import cas.checkout as checkout
from cas.ids import ObjectId
from cas.repository import Repository
from tests.repository.repo_support import (
    dir_entry,
    file_entry,
    store_tree,
    symlink_entry,
    tree_of,
    write_crafted_commit,
)


def test_planning_reads_only_differing_base_folders_and_keeps_only_what_it_acts_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with cas.init(
        tmp_path / "store", tmp_path / "wt", cache_dir=tmp_path / "cache", progress=False
    ) as repo:
        r = repo.repository
        shared = store_tree(r, tree_of(file_entry("s1", b"same"), file_entry("s2", b"also")))
        old_work = store_tree(
            r,
            tree_of(
                file_entry("keep", b"k"),
                file_entry("edit", b"old"),
                file_entry("gone", b"g"),
                symlink_entry("ln", "keep"),
            ),
        )
        new_work = store_tree(
            r,
            tree_of(
                file_entry("keep", b"k"),
                file_entry("edit", b"new"),
                file_entry("added", b"a"),
                symlink_entry("ln", "edit"),
            ),
        )
        old_only = store_tree(r, tree_of(file_entry("inside", b"i")))
        base = store_tree(
            r,
            tree_of(
                dir_entry("shared", shared),
                dir_entry("work", old_work),
                dir_entry("was-dir", old_only),
                file_entry("top", b"t"),
                file_entry("mode", b"m"),
            ),
        )
        target = store_tree(
            r,
            tree_of(
                dir_entry("shared", shared),
                dir_entry("work", new_work),
                file_entry("was-dir", b"now a file"),
                file_entry("top", b"t"),
                file_entry("mode", b"m", mode=0o600),
            ),
        )
        data = (b"same", b"also", b"k", b"old", b"new", b"g", b"a", b"i", b"t", b"m", b"now a file")
        write_crafted_commit(r, r.load_tree(base, at_root=True), "tags/base", blobs=data)
        write_crafted_commit(r, r.load_tree(target, at_root=True), "tags/target", blobs=data)
        repo.checkout("base")
        loaded: list[ObjectId] = []
        real = Repository.load_tree

        def recording(self: Repository, tree_id: ObjectId, *, at_root: bool = False):  # type: ignore[no-untyped-def]
            loaded.append(tree_id)
            return real(self, tree_id, at_root=at_root)

        monkeypatch.setattr(Repository, "load_tree", recording)
        plan = checkout.plan_checkout(
            r, repo.worktree, target, base, repo.worktree.load_stat_cache()
        )
        monkeypatch.setattr(Repository, "load_tree", real)
        # The target's trees once each; the base's only where they differ from it (the
        # shared folder is read once, as the target's).
        assert sorted(loaded) == sorted([target, shared, new_work, base, old_work, old_only])
        assert plan.writes == ["was-dir", "work/added", "work/edit", "work/ln"]
        assert plan.deletes == ["was-dir", "was-dir/inside", "work/gone"]
        assert plan.meta_only == ["mode"]
        assert plan.mkdirs == [] and plan.conflicts == []
        # Only what the checkout acts on is kept: folders, writes, metadata fixes.
        assert set(plan.target) == {
            "shared",
            "work",
            *plan.writes,
            *plan.meta_only,
        }
        assert plan.files == 9  # every file and link of the version is counted


def _two_versions(tmp_path: Path) -> tuple[Path, bytes]:
    """A store where v2 is v1 plus ``copy``, a second file with the bytes of ``keep``;
    the worktree at ``tmp_path/wt`` is on v1."""
    wt = tmp_path / "wt"
    wt.mkdir()
    shared = bytes(range(256)) * 40  # one chunk
    (wt / "keep").write_bytes(shared)
    (wt / "other").write_bytes(b"other")
    with cas.init(tmp_path / "store", wt, cache_dir=tmp_path / "cache", progress=False) as repo:
        repo.commit("v1", tag="v1")
        (wt / "copy").write_bytes(shared)
        repo.commit("v2", tag="v2")
        repo.checkout("v1")
    return wt, shared


def test_an_unchanged_file_is_the_source_of_a_chunk_it_shares(tmp_path: Path) -> None:
    wt, shared = _two_versions(tmp_path)
    with cas.open(wt, cache_dir=tmp_path / "empty-cache", progress=False) as repo:
        stats = repo.checkout("v2").stats
    assert (wt / "copy").read_bytes() == shared
    assert stats.bytes_from_worktree == len(shared) and stats.bytes_fetched == 0


@pytest.mark.parametrize("now", ["fifo", "folder"])
def test_a_stale_stat_cache_row_is_never_read_blindly(tmp_path: Path, now: str) -> None:
    """The stat cache still names ``keep`` as holding the chunk ``copy`` needs, but
    ``keep`` is now a FIFO (opening it for reading would wait for a writer forever) or
    a folder: the chunk is fetched instead, and the checkout completes."""
    wt, shared = _two_versions(tmp_path)
    (wt / "keep").unlink()
    if now == "fifo":
        os.mkfifo(wt / "keep")
    else:
        (wt / "keep").mkdir()
    with cas.open(wt, cache_dir=tmp_path / "empty-cache", progress=False) as repo:
        stats = repo.checkout("v2", force=True).stats
    assert (wt / "copy").read_bytes() == shared == (wt / "keep").read_bytes()
    assert stats.bytes_from_worktree == 0 and stats.bytes_fetched > 0
