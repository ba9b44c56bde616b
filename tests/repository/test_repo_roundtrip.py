"""Round trip (fast variant): commit v1 and v2, clone each into an empty folder with an
empty cache, switch versions in place; every time the folder is equal to what was
committed — bytes, kinds, modes, symlinks (as links), empty folders and mtimes.

The large (≥ 2,000 files, ≥ 100 MB) variant is ``test_repo_large.py`` (marked slow).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from tests.assets import assert_same_tree, snapshot_tree
from tests.repository.repo_support import Built, clone
from tests.stores import StoreUnderTest


def _check_special_entries(root: Path, built: Built, version: int) -> None:
    """Spot checks of what the generic comparison covers, stated plainly."""
    assert os.readlink(root / "models/current") == "base"
    assert os.path.islink(root / "models/current")
    latest = "train.yaml" if version == 1 else "eval.yaml"
    assert os.readlink(root / "configs/latest.yaml") == latest
    script_mode = 0o755 if version == 1 else 0o700
    assert stat.S_IMODE(os.lstat(root / "scripts/run.sh").st_mode) == script_mode
    assert stat.S_IMODE(os.lstat(root / "secrets/token.txt").st_mode) == 0o600
    empty = "outputs/empty_run" if version == 1 else "outputs/empty_next"
    assert os.path.isdir(root / empty) and not os.listdir(root / empty)
    large = root / built.info.large
    assert os.path.getsize(large) == built.snap2[built.info.large].size


def test_clone_each_version_into_empty_folder_with_empty_cache(
    built: Built, store: StoreUnderTest, tmp_path
):
    for ref, snap, version in (("v1", built.snap1, 1), ("v2", built.snap2, 2)):
        dest = tmp_path / f"clone-{ref}"
        dest.mkdir()
        with clone(store, dest, ref) as repo:
            assert repo.head.commit == (built.c1 if version == 1 else built.c2).commit_id
            assert repo.status().clean
        assert_same_tree(snap, dest)
        _check_special_entries(dest, built, version)


def test_clone_without_ref_takes_the_default_branch_head(
    built: Built, store: StoreUnderTest, tmp_path
):
    with clone(store, tmp_path / "wt") as repo:
        assert repo.head.branch == "main"
        assert repo.head.commit == built.c2.commit_id
    assert_same_tree(built.snap2, tmp_path / "wt")


def test_switch_versions_in_place(built: Built, store: StoreUnderTest, tmp_path):
    wt = tmp_path / "wt"
    with clone(store, wt, "v1") as repo:
        assert_same_tree(built.snap1, wt)
        for ref, snap, version in (("v2", built.snap2, 2), ("v1", built.snap1, 1)) * 2:
            result = repo.checkout(ref)
            assert result.ref == ref
            assert_same_tree(snap, wt)
            _check_special_entries(wt, built, version)
            assert repo.status().clean
        # On a branch again: main is v2.
        repo.checkout("main")
        assert repo.head.branch == "main"
        assert_same_tree(built.snap2, wt)


def test_clone_into_folder_that_already_holds_the_files(
    built: Built, store: StoreUnderTest, tmp_path
):
    """Files already in the folder and equal to the version are kept, not rewritten."""
    first = tmp_path / "first"
    clone(store, first, "v2").close()
    second = tmp_path / "second"
    os.mkdir(second)
    large = built.info.large
    (second / large).parent.mkdir(parents=True)
    os.link(first / large, second / large)  # same inode: we can tell whether it was rewritten
    ino = os.lstat(second / large).st_ino
    with clone(store, second, "v2") as repo:
        assert repo.status().clean
    assert os.lstat(second / large).st_ino == ino
    assert_same_tree(built.snap2, second)


def test_commit_of_a_clone_is_the_same_version(built: Built, store: StoreUnderTest, tmp_path):
    """A clone committed again gives the same root tree: nothing was lost or altered."""
    with clone(store, tmp_path / "wt", "main") as repo:
        again = repo.commit("same again")
        assert again.new_bytes == 0
        assert again.stored_bytes == 0
        tree_v2 = repo.repository.load_commit(built.c2.commit_id).tree
        assert repo.repository.load_commit(again.commit_id).tree == tree_v2
    assert snapshot_tree(tmp_path / "wt") == built.snap2
