"""Edge cases of whole-folder round trips: odd names, empty stores and folders, ls, and a
store or cache that lives inside the worktree."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import cas
from cas.errors import PathNotFoundError, RefConflictError
from cas.objects import EntryKind
from tests.assets import age_tree, assert_same_tree, snapshot_tree, wait_out_racy_window
from tests.repository.repo_support import Built, clone
from tests.stores import StoreUnderTest

NOT_UTF8 = os.fsdecode(b"latin1-\xe9t\xe9.bin")  # Linux names are bytes (surrogateescape)
ODD_NAMES = [
    "new\nline.txt",
    "-leading-dash",
    " leading space",
    "trailing space ",
    "tab\there",
    "x" * 255,  # the longest name ext4 allows
    "emoji-🙂.txt",
    "back\\slash",
    "percent%2F..txt",
    ".hidden",
    "..dotdot-prefix",
    "UPPER",
    "upper",
]


def test_odd_file_names_round_trip(new_store: StoreUnderTest, tmp_path: Path):
    wt = tmp_path / "wt"
    (wt / "odd").mkdir(parents=True)
    for i, name in enumerate(ODD_NAMES):
        (wt / "odd" / name).write_bytes(f"file {i}\n".encode())
    os.symlink(ODD_NAMES[-1], wt / "odd" / "link-to-upper")
    with cas.init(new_store.location, wt, cache_dir=tmp_path / "c", progress=False) as repo:
        repo.commit("odd names", tag="odd")
        assert repo.status().clean
        listed = {e.path.rpartition("/")[2] for e in repo.ls("odd", "odd")}
        assert set(ODD_NAMES) <= listed
    with clone(new_store, tmp_path / "copy", "odd") as repo:
        assert repo.status().clean
    assert_same_tree(wt, tmp_path / "copy")


def test_file_name_that_is_not_utf8_round_trips(new_store: StoreUnderTest, tmp_path: Path):
    wt = tmp_path / "wt"
    wt.mkdir()
    (wt / NOT_UTF8).write_bytes(b"latin-1 name\n")
    os.symlink(NOT_UTF8, wt / "link")
    age_tree(wt)
    wait_out_racy_window(wt)  # so the stat cache saves the entry
    with cas.init(new_store.location, wt, cache_dir=tmp_path / "c", progress=False) as repo:
        repo.commit("v1", tag="v1")
        assert repo.status().clean
    with clone(new_store, tmp_path / "copy", "v1") as repo:
        wait_out_racy_window(tmp_path / "copy")
        assert repo.status().clean
    assert os.listdir(os.fsencode(tmp_path / "copy")).count(os.fsencode(NOT_UTF8)) == 1
    assert_same_tree(wt, tmp_path / "copy")


def test_ls_of_a_version(mini: Built, mini_store: StoreUnderTest, tmp_path: Path):
    with clone(mini_store, tmp_path / "wt", "v2") as repo:
        top = {e.path: e.entry.kind for e in repo.ls("v1")}
        assert top["models"] == EntryKind.DIR and top["README.md"] == EntryKind.FILE
        assert ".cas" not in top
        models = {e.path: e.entry for e in repo.ls("v1", "models")}
        assert models["models/current"].kind == EntryKind.SYMLINK
        assert models["models/current"].target == "base"
        (one,) = repo.ls("v2", "models/base/config.json")
        assert one.entry.size == mini.snap2["models/base/config.json"].size
        recursive = {e.path for e in repo.ls("v2", recursive=True)}
        assert recursive == set(mini.snap2)
        assert {e.path for e in repo.ls("v2", "data", recursive=True)} == {
            p for p in mini.snap2 if p.startswith("data/")
        }
        with pytest.raises(PathNotFoundError):
            repo.ls("v2", "no/such")
        with pytest.raises(PathNotFoundError):
            repo.ls("v2", "README.md/below-a-file")


def test_empty_store_then_first_commits(new_store: StoreUnderTest, tmp_path: Path):
    """A clone of a store without commits is on the default branch with no version; the
    first commit from there creates the branch, and the other worktree is then behind."""
    first = tmp_path / "first"
    first.mkdir()
    cas.init(new_store.location, first, cache_dir=tmp_path / "c1", progress=False).close()
    with clone(new_store, tmp_path / "second") as second:
        assert second.head.branch == "main" and second.head.commit is None
        assert second.log() == [] and second.status().clean
        (tmp_path / "second" / "a.txt").write_bytes(b"a\n")
        c = second.commit("first commit")
        assert c.branch == "main" and not c.diverged
    with cas.open(first, cache_dir=tmp_path / "c1", progress=False) as repo:
        (first / "b.txt").write_bytes(b"b\n")
        with pytest.raises(RefConflictError):
            repo.commit("also a first commit")
        assert (first / "b.txt").read_bytes() == b"b\n"
        assert repo.head.commit is None
        repo.checkout("main", force=True)
        assert (first / "a.txt").read_bytes() == b"a\n"
        assert repo.head.commit == repo.resolve("main")


def test_empty_folder_commit_and_clone(new_store: StoreUnderTest, tmp_path: Path):
    wt = tmp_path / "wt"
    wt.mkdir()
    with cas.init(new_store.location, wt, cache_dir=tmp_path / "c", progress=False) as repo:
        c = repo.commit("nothing yet")
        assert (c.files, c.bytes) == (0, 0)
        (wt / "only").mkdir()
        c2 = repo.commit("one empty folder")
        assert c2.files == 0
    with clone(new_store, tmp_path / "copy", c.commit_id.hex()):
        pass
    assert snapshot_tree(tmp_path / "copy") == {}
    with clone(new_store, tmp_path / "copy2"):
        pass
    assert set(snapshot_tree(tmp_path / "copy2")) == {"only"}


def test_store_and_cache_inside_the_worktree_are_not_committed(tmp_path: Path):
    wt = tmp_path / "wt"
    (wt / "data").mkdir(parents=True)
    (wt / "data" / "x.bin").write_bytes(b"x" * 10_000)
    with cas.init(wt / "store", wt, cache_dir=wt / "cache", progress=False) as repo:
        c1 = repo.commit("v1")
        assert c1.files == 1
        c2 = repo.commit("again")  # the first commit wrote into store/ and cache/
        assert c2.files == 1 and c2.stored_bytes == 0
        assert repo.status().clean
        assert {e.path for e in repo.ls(recursive=True)} == {"data", "data/x.bin"}


def test_hard_linked_files_round_trip(new_store: StoreUnderTest, tmp_path: Path):
    wt = tmp_path / "wt"
    wt.mkdir()
    (wt / "a.bin").write_bytes(os.urandom(50_000))
    os.link(wt / "a.bin", wt / "b.bin")
    with cas.init(new_store.location, wt, cache_dir=tmp_path / "c", progress=False) as repo:
        c = repo.commit("two names, one inode")
        assert c.files == 2 and c.bytes == 100_000
        assert c.new_bytes < 60_000  # stored once
    clone(new_store, tmp_path / "copy").close()
    assert (tmp_path / "copy" / "a.bin").read_bytes() == (wt / "b.bin").read_bytes()
