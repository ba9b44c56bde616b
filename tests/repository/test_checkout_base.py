"""Checkout planning reads the worktree's base version only where it differs from the
target: equal entries decide nothing, and a folder the two versions share is not read."""

from __future__ import annotations

from pathlib import Path

import pytest

import cas
import cas.checkout as checkout
from cas.history import flatten_tree
from cas.ids import ObjectId
from cas.repository import Repository
from tests.repository.repo_support import dir_entry, file_entry, store_tree, symlink_entry, tree_of


def test_base_differences_are_the_differing_entries_and_skip_shared_folders(
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
        flat = flatten_tree(r, target)
        loaded: list[ObjectId] = []
        real = Repository.load_tree

        def recording(self: Repository, tree_id: ObjectId, *, at_root: bool = False):  # type: ignore[no-untyped-def]
            loaded.append(tree_id)
            return real(self, tree_id, at_root=at_root)

        monkeypatch.setattr(Repository, "load_tree", recording)
        diffs = dict(checkout._base_differences(r, base, flat))
        monkeypatch.setattr(Repository, "load_tree", real)
        expected = {p: e for p, e in flatten_tree(r, base).items() if flat.get(p) != e}
        assert diffs == expected
        assert set(diffs) == {
            "work",
            "work/edit",
            "work/gone",
            "work/ln",
            "was-dir",
            "was-dir/inside",
            "mode",
        }
        assert shared not in loaded  # the same tree id on both sides: not read
        assert sorted(loaded) == sorted([base, old_work, old_only])
