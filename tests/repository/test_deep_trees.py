"""Folders deeper than Python's recursion limit: every walk over a version's trees is
iterative (verify, ``ls -r``, ``diff``, ``du``), and the iterative walks keep the order of
the recursive ones they replaced."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import cas
from cas.history import Change, diff_trees, iter_tree, same_content
from cas.ids import ObjectId
from cas.objects import EntryKind, TreeEntry
from cas.paths import join_path
from cas.repository import Repository
from cas.usage import _chunks_of_tree
from tests.assets import generate_assets, mutate_assets, mutate_metadata
from tests.conftest import SMALL_CHUNKER, SMALL_PACK
from tests.repository.repo_support import MINI_SPEC

DEPTH = 1500  # levels of folders below the worktree's root


def _nest(root: Path, depth: int) -> Path:
    """``root/d/d/…/d`` (``depth`` levels), made one level at a time (``os.makedirs``
    itself recurses once per level)."""
    d = root
    for _ in range(depth):
        d = d / "d"
        d.mkdir()
    return d


def _unnest(root: Path) -> None:
    """Remove what :func:`_nest` made, bottom up (``shutil.rmtree``, which pytest uses to
    clean its temp folders, recurses once per level too)."""
    levels = [root / "d"]
    while (levels[-1] / "d").is_dir():
        levels.append(levels[-1] / "d")
    for d in reversed(levels):
        for f in d.iterdir():
            if not f.is_dir():
                f.unlink()
        d.rmdir()


@pytest.fixture
def deep_wt(tmp_path: Path) -> Iterator[Path]:
    """An empty worktree folder, emptied bottom up afterwards."""
    wt = tmp_path / "wt"
    wt.mkdir()
    yield wt
    if (wt / "d").is_dir():
        _unnest(wt)


def test_folder_1500_levels_deep_is_verified_listed_diffed_and_measured(
    tmp_path: Path, deep_wt: Path
):
    assert sys.getrecursionlimit() < DEPTH  # a walk that recursed per level would fail
    wt = deep_wt
    (wt / "top.txt").write_bytes(b"top\n")
    leaf = _nest(wt, DEPTH)
    (leaf / "leaf.txt").write_bytes(b"v1\n")
    deep = "/".join(["d"] * DEPTH)
    with cas.init(str(tmp_path / "store"), wt, cache_dir=tmp_path / "c", progress=False) as repo:
        v1 = repo.commit("v1", tag="v1")
        (leaf / "leaf.txt").write_bytes(b"v2, longer\n")
        (leaf / "new.txt").write_bytes(b"")
        v2 = repo.commit("v2", tag="v2")

        report = repo.verify()
        assert report.ok, report.problems
        # v1: the root and DEPTH folders; v2 changed a file at the bottom, so every folder
        # on the way down is new too.
        assert report.trees == 2 * (DEPTH + 1)
        assert report.files == 2 + 3

        listed = [e.path for e in repo.ls("v2", recursive=True)]
        folders = ["/".join(["d"] * i) for i in range(1, DEPTH + 1)]
        assert listed == [*folders, f"{deep}/leaf.txt", f"{deep}/new.txt", "top.txt"]
        assert [e.path for e in repo.ls("v2", deep, recursive=True)] == [
            f"{deep}/leaf.txt",
            f"{deep}/new.txt",
        ]

        changes = repo.diff("v1", "v2")
        assert [(c.path, c.status) for c in changes] == [
            (f"{deep}/leaf.txt", "modified"),
            (f"{deep}/new.txt", "added"),
        ]
        assert repo.diff("v2", "v2") == []
        assert repo.status().clean

        usage = repo.du()
        by_id = {v.commit_id: v for v in usage.versions}
        assert set(by_id) == {v1.commit_id, v2.commit_id}
        assert by_id[v1.commit_id].logical_bytes == len(b"top\n") + len(b"v1\n")
        assert by_id[v2.commit_id].unique_stored_bytes > 0
    # A fresh runtime (empty cache) reads the same deep version from the store alone.
    with cas.open(wt, cache_dir=tmp_path / "fresh", progress=False) as again:
        report = again.verify(read_data=True)
        assert report.ok and report.trees == 2 * (DEPTH + 1)
        assert report.packs_read == report.packs > 0
        assert len(again.ls("v1", recursive=True)) == DEPTH + 2


# ---------------------------------------------------------------------------- same order


def _iter_tree_recursive(
    repo: Repository, tree_id: ObjectId, prefix: str = ""
) -> Iterator[tuple[str, TreeEntry]]:
    """The recursive ``iter_tree`` the iterative one replaced (the reference order)."""
    for e in repo.load_tree(tree_id, at_root=not prefix).entries:
        path = join_path(prefix, e.name)
        yield path, e
        if e.kind == EntryKind.DIR:
            yield from _iter_tree_recursive(repo, e.oid, path)


def _diff_trees_recursive(
    repo: Repository, old: ObjectId | None, new: ObjectId | None, prefix: str = ""
) -> list[Change]:
    """The recursive ``diff_trees`` the iterative one replaced (the reference order)."""
    if old == new:
        return []
    a = {e.name: e for e in repo.load_tree(old, at_root=not prefix).entries} if old else {}
    b = {e.name: e for e in repo.load_tree(new, at_root=not prefix).entries} if new else {}
    changes: list[Change] = []
    for name in sorted(a.keys() | b.keys()):
        path = join_path(prefix, name)
        ea, eb = a.get(name), b.get(name)
        a_dir = ea is not None and ea.kind == EntryKind.DIR
        b_dir = eb is not None and eb.kind == EntryKind.DIR
        if ea is not None and eb is not None and not a_dir and not b_dir:
            if not same_content(ea, eb):
                changes.append(Change(path, "modified", ea, eb))
            continue
        if ea is not None and not a_dir:
            changes.append(Change(path, "deleted", ea, None))
        if eb is not None and not b_dir:
            changes.append(Change(path, "added", None, eb))
        if a_dir or b_dir:
            old_sub = ea.oid if a_dir and ea is not None else None
            new_sub = eb.oid if b_dir and eb is not None else None
            if (
                old_sub is not None
                and new_sub is None
                and ea is not None
                and not repo.load_tree(old_sub).entries
            ):
                changes.append(Change(path, "deleted", ea, None))
            if (
                new_sub is not None
                and old_sub is None
                and eb is not None
                and not repo.load_tree(new_sub).entries
            ):
                changes.append(Change(path, "added", None, eb))
            changes.extend(_diff_trees_recursive(repo, old_sub, new_sub, path))
    return changes


def _chunks_recursive(repo: Repository, tree_id: ObjectId) -> frozenset[bytes]:
    acc: set[bytes] = set()
    for e in repo.load_tree(tree_id).entries:
        if e.kind == EntryKind.FILE:
            acc.update(c.chunk_id for c in e.chunks)
        elif e.kind == EntryKind.DIR:
            acc |= _chunks_recursive(repo, e.oid)
    return frozenset(acc)


def _reshape(wt: Path) -> None:
    """Changes the generated mutations do not make: a file that becomes a folder, a
    folder that becomes a file, nested and emptied folders, a moved subtree."""
    top = sorted(p for p in wt.iterdir() if p.name != ".cas")
    a_file = next(p for p in wt.rglob("*") if p.is_file() and ".cas" not in p.parts)
    a_file.unlink()
    (a_file / "now-a-folder").mkdir(parents=True)
    (a_file / "now-a-folder" / "x.txt").write_bytes(b"x\n")
    a_dir = next(p for p in top if p.is_dir() and not p.is_symlink())
    os.replace(a_dir, wt / "zz-moved")
    (wt / "zz-moved" / "deeper" / "still").mkdir(parents=True)
    (wt / "zz-moved" / "deeper" / "still" / "f").write_bytes(b"f\n")
    (wt / "new-empty").mkdir()


def test_iterative_walks_keep_the_recursive_order(tmp_path: Path):
    wt = tmp_path / "wt"
    info = generate_assets(wt, MINI_SPEC, seed=7)
    (wt / "a" / "b" / "c").mkdir(parents=True)
    (wt / "a" / "b" / "c" / "deep.txt").write_bytes(b"deep\n")
    (wt / "a" / "b" / "empty").mkdir()
    with cas.init(
        str(tmp_path / "store"),
        wt,
        cache_dir=tmp_path / "c",
        progress=False,
        chunker=SMALL_CHUNKER,
        pack_size=SMALL_PACK,
    ) as repo:
        trees = [repo.repository.load_commit(repo.commit("v1").commit_id).tree]
        mutate_assets(wt, info, seed=8, spec=MINI_SPEC)
        mutate_metadata(wt, info)
        trees.append(repo.repository.load_commit(repo.commit("v2").commit_id).tree)
        _reshape(wt)
        trees.append(repo.repository.load_commit(repo.commit("v3").commit_id).tree)
        r = repo.repository
        for t in trees:
            walked = list(iter_tree(r, t))
            assert len(walked) > 20
            assert walked == list(_iter_tree_recursive(r, t))
            for path, e in walked:
                if e.kind == EntryKind.DIR:
                    assert list(iter_tree(r, e.oid, path)) == list(
                        _iter_tree_recursive(r, e.oid, path)
                    )
            assert _chunks_of_tree(r, t, {}) == _chunks_recursive(r, t)
        for old in [None, *trees]:
            for new in [None, *trees]:
                got = diff_trees(r, old, new)
                assert got == _diff_trees_recursive(r, old, new)
                if old is not None and new is not None and old != new:
                    assert got
