"""A commit keeps the recorded tree id of every folder whose listing is unchanged.

The tree ids must be exactly those of a full rebuild (the format on the store does not
depend on the stat cache), every folder on the path to a change must get a new tree, and
the stat cache must vouch for a folder only under the racy-clean rule of its files.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from collections.abc import Iterator
from pathlib import Path

import msgpack
import pytest

import cas
import cas.worktree
from cas.api import CommitResult
from cas.hashing import hash_bytes
from cas.ids import ObjectId
from cas.index import ChunkIndex
from cas.objects import EntryKind
from cas.repository import WriteSession
from cas.worktree import STAT_CACHE_VERSION, StatCache, Worktree
from tests.assets import age_tree, wait_out_racy_window
from tests.conftest import SMALL_CHUNKER, SMALL_PACK

FOLDERS = ("", "a", "a/b", "a/b/c", "a/x", "empty", "many")


def _write_tree(wt: Path, rng: random.Random) -> None:
    (wt / "a" / "b" / "c").mkdir(parents=True)
    (wt / "a" / "x").mkdir()
    (wt / "empty").mkdir()
    (wt / "many").mkdir()
    (wt / "a" / "b" / "c" / "deep.bin").write_bytes(rng.randbytes(20_000))  # several chunks
    (wt / "a" / "b" / "c" / "other.bin").write_bytes(rng.randbytes(3_000))
    (wt / "a" / "b" / "sib.txt").write_bytes(b"sibling\n")
    (wt / "a" / "x" / "y.txt").write_bytes(b"why\n")
    (wt / "top.txt").write_bytes(b"top\n")
    (wt / "run.sh").write_bytes(b"#!/bin/sh\n")
    os.chmod(wt / "run.sh", 0o755)
    for i in range(40):
        (wt / "many" / f"f{i:03d}").write_bytes(rng.randbytes(rng.randint(0, 900)))
    os.symlink("a/b/sib.txt", wt / "link")


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[cas.Repo]:
    wt = tmp_path / "wt"
    wt.mkdir()
    _write_tree(wt, random.Random(4))
    age_tree(wt, seed=4)
    wait_out_racy_window(wt)  # so that the first commit's stat cache vouches for everything
    with cas.init(
        tmp_path / "store",
        wt,
        cache_dir=tmp_path / "cache",
        progress=False,
        chunker=SMALL_CHUNKER,
        pack_size=SMALL_PACK,
    ) as r:
        yield r


@pytest.fixture
def stored_trees(monkeypatch: pytest.MonkeyPatch) -> list[ObjectId]:
    """The ids of the trees each commit builds (rather than reuses)."""
    ids: list[ObjectId] = []
    store_tree = WriteSession.store_tree

    def counting(self: WriteSession, *args: object, **kwargs: object) -> ObjectId:
        tid = store_tree(self, *args, **kwargs)  # type: ignore[arg-type]
        ids.append(tid)
        return tid

    monkeypatch.setattr(WriteSession, "store_tree", counting)
    return ids


def _wt(repo: cas.Repo) -> Path:
    return repo.worktree.root


def _trees(repo: cas.Repo, commit_id: ObjectId) -> dict[str, ObjectId]:
    """Folder path → tree id in a version ("" is the root)."""
    out = {"": repo.repository.load_commit(commit_id).tree}
    for e in repo.ls(commit_id.hex(), recursive=True):
        if e.entry.kind == EntryKind.DIR:
            out[e.path] = e.entry.oid
    return out


def _rebuilt(repo: cas.Repo) -> ObjectId:
    """The root tree id of a commit that reads and builds everything again."""
    (_wt(repo) / ".cas" / "statcache").unlink()
    res = repo.commit("full rebuild")
    assert res.scanned_bytes == res.bytes
    return repo.repository.load_commit(res.commit_id).tree


def _commit(repo: cas.Repo, message: str = "m") -> tuple[CommitResult, dict[str, ObjectId]]:
    res = repo.commit(message)
    return res, _trees(repo, res.commit_id)


def _changed(before: dict[str, ObjectId], after: dict[str, ObjectId]) -> set[str]:
    return {p for p in before.keys() | after.keys() if before.get(p) != after.get(p)}


def _rewrite_same_size(path: Path, rng: random.Random) -> bytes:
    data = rng.randbytes(path.stat().st_size)
    path.write_bytes(data)
    return data


# ---------------------------------------------------------------------------- unchanged


def test_unchanged_commit_reuses_every_tree_and_leaves_the_stat_cache_alone(
    repo: cas.Repo, stored_trees: list[ObjectId], monkeypatch: pytest.MonkeyPatch
):
    first, t1 = _commit(repo)
    assert first.scanned_bytes == first.bytes > 0
    assert set(t1) == set(FOLDERS)
    assert len(stored_trees) == len(FOLDERS)
    cache_file = _wt(repo) / ".cas" / "statcache"
    before = cache_file.stat()
    stored_trees.clear()
    looked_up: list[bytes] = []
    find = StatCache.find

    def counting_find(self: StatCache, parent: bytes, name: bytes, *fp: int):
        looked_up.append(name)
        return find(self, parent, name, *fp)

    monkeypatch.setattr(StatCache, "find", counting_find)
    again, t2 = _commit(repo)
    assert (again.scanned_bytes, again.new_bytes) == (0, 0)
    assert (again.files, again.bytes) == (first.files, first.bytes)
    assert t2 == t1
    assert stored_trees == []  # no tree encoded again …
    assert looked_up == []  # … and no file looked up
    after = cache_file.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    stats = repo.show().commit.stats
    assert (stats.files, stats.dirs, stats.symlinks) == (46, 6, 1)
    monkeypatch.undo()
    assert _rebuilt(repo) == t1[""]


# ---------------------------------------------------------------------------- changes


def test_a_change_deep_down_changes_every_ancestor_and_nothing_else(
    repo: cas.Repo, stored_trees: list[ObjectId]
):
    _, t1 = _commit(repo)
    stored_trees.clear()
    deep = _wt(repo) / "a" / "b" / "c" / "deep.bin"
    data = _rewrite_same_size(deep, random.Random(5))
    res, t2 = _commit(repo)
    assert res.scanned_bytes == len(data)  # only that file was read
    assert _changed(t1, t2) == {"a/b/c", "a/b", "a", ""}
    assert sorted(stored_trees) == sorted(t2[p] for p in ("a/b/c", "a/b", "a", ""))
    (entry,) = repo.ls(res.commit_id.hex(), "a/b/c/deep.bin")
    assert entry.entry.oid == hash_bytes(data)
    assert _rebuilt(repo) == t2[""]


def test_a_mode_only_change(repo: cas.Repo):
    _, t1 = _commit(repo)
    os.chmod(_wt(repo) / "a" / "x" / "y.txt", 0o600)
    res, t2 = _commit(repo)
    assert _changed(t1, t2) == {"a/x", "a", ""}
    (entry,) = repo.ls(res.commit_id.hex(), "a/x/y.txt")
    assert entry.entry.mode == 0o600
    assert _rebuilt(repo) == t2[""]


def test_a_folder_mode_change_changes_its_parent_only(repo: cas.Repo):
    _, t1 = _commit(repo)
    os.chmod(_wt(repo) / "a" / "x", 0o700)
    _, t2 = _commit(repo)
    assert _changed(t1, t2) == {"a", ""}
    assert _rebuilt(repo) == t2[""]


def test_a_rename_within_a_folder(repo: cas.Repo):
    _, t1 = _commit(repo)
    many = _wt(repo) / "many"
    os.replace(many / "f001", many / "g001")
    res, t2 = _commit(repo)
    assert _changed(t1, t2) == {"many", ""}
    names = {e.path for e in repo.ls(res.commit_id.hex(), "many")}
    assert "many/g001" in names and "many/f001" not in names
    assert _rebuilt(repo) == t2[""]


def test_files_swapped_keep_every_byte_right(repo: cas.Repo):
    """Two files of one folder exchange names: same names, sizes may differ, new inodes."""
    _, t1 = _commit(repo)
    many = _wt(repo) / "many"
    a, b = (many / "f002").read_bytes(), (many / "f003").read_bytes()
    os.replace(many / "f002", many / "tmp")
    os.replace(many / "f003", many / "f002")
    os.replace(many / "tmp", many / "f003")
    res, t2 = _commit(repo)
    assert _changed(t1, t2) == {"many", ""}
    got = {e.path: e.entry.oid for e in repo.ls(res.commit_id.hex(), "many")}
    assert (got["many/f002"], got["many/f003"]) == (hash_bytes(b), hash_bytes(a))
    assert _rebuilt(repo) == t2[""]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda wt: (wt / "empty" / "new").mkdir(), {"empty", "empty/new", ""}),
        (lambda wt: (wt / "a" / "x" / "y.txt").unlink(), {"a/x", "a", ""}),
        (lambda wt: (wt / "a" / "x" / "y.txt").rename(wt / "a" / "y.txt"), {"a/x", "a", ""}),
        (lambda wt: _remove_tree(wt / "a" / "b"), {"a", "a/b", "a/b/c", ""}),
        (lambda wt: _retarget(wt / "link", "top.txt"), {""}),
        (lambda wt: (wt / ".casignore").write_text("*.bin\n"), {"", "a", "a/b", "a/b/c"}),
    ],
    ids=["new-folder", "deleted-file", "moved-up", "deleted-folders", "symlink", "casignore"],
)
def test_structural_changes_match_a_full_rebuild(repo: cas.Repo, change, expected: set[str]):
    _, t1 = _commit(repo)
    change(_wt(repo))
    _, t2 = _commit(repo)
    assert _changed(t1, t2) == expected
    assert _rebuilt(repo) == t2[""]


def _remove_tree(path: Path) -> None:
    for root, dirs, files in os.walk(path, topdown=False):
        for name in files:
            os.unlink(os.path.join(root, name))
        for name in dirs:
            os.rmdir(os.path.join(root, name))
    os.rmdir(path)


def _retarget(link: Path, target: str) -> None:
    link.unlink()
    os.symlink(target, link)


def test_after_checkout_of_an_older_version_a_commit_has_that_version(repo: cas.Repo):
    first, t1 = _commit(repo)
    rng = random.Random(6)
    _rewrite_same_size(_wt(repo) / "a" / "b" / "c" / "other.bin", rng)
    (_wt(repo) / "many" / "f010").unlink()
    _commit(repo)
    repo.branch("back", first.commit_id.hex())
    repo.checkout("back")
    assert repo.status().clean
    _, t3 = _commit(repo)
    assert t3 == t1
    assert _rebuilt(repo) == t1[""]


# ---------------------------------------------------------------------------- racy files


def _all_racy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every stat looks taken within the same tick as its file's last change."""
    monkeypatch.setattr(cas.worktree, "RACY_FINE_NS", 10**18)
    monkeypatch.setattr(cas.worktree, "RACY_COARSE_NS", 10**18)


def test_a_folder_with_racy_files_is_rebuilt_and_its_files_read(
    repo: cas.Repo, stored_trees: list[ObjectId], monkeypatch: pytest.MonkeyPatch
):
    _all_racy(monkeypatch)
    first, t1 = _commit(repo)
    stored_trees.clear()
    again, t2 = _commit(repo)
    assert again.scanned_bytes == again.bytes == first.bytes  # nothing was vouched for
    # Every folder with files was built again; the empty one has nothing racy.
    assert len(stored_trees) == len(FOLDERS) - 1
    assert t2["empty"] not in stored_trees
    assert t2 == t1
    monkeypatch.undo()
    third = repo.commit("window passed")
    assert third.scanned_bytes == third.bytes  # racy rows were never saved
    fourth = repo.commit("now trusted")
    assert fourth.scanned_bytes == 0


def _pin(monkeypatch: pytest.MonkeyPatch, pins: dict[tuple[bytes, bytes], tuple]) -> None:
    """Make the walk report these (folder, name) entries with an earlier stat.

    This is what a change within one timestamp tick looks like: new bytes, same lstat.
    """
    lister = Worktree._lister

    def pinned(self: Worktree):
        list_dir = lister(self)

        def wrapped(rel: bytes):
            return [pins.get((rel, e[0]), e) for e in list_dir(rel)]

        return wrapped

    monkeypatch.setattr(Worktree, "_lister", pinned)


def _stat_of(repo: cas.Repo, folder: bytes, name: bytes) -> tuple:
    listing = dict(repo.worktree.walk())[folder]
    return next(e for e in listing if e[0] == name)


@pytest.mark.parametrize("racy", [True, False])
def test_a_change_invisible_to_lstat_is_seen_only_when_the_row_was_racy(
    repo: cas.Repo, monkeypatch: pytest.MonkeyPatch, racy: bool
):
    with monkeypatch.context() as m:
        if racy:
            _all_racy(m)  # the first commit happens "within the tick" of the files' changes
        _commit(repo)
    old = _stat_of(repo, b"a/b/c", b"other.bin")
    new_data = _rewrite_same_size(_wt(repo) / "a" / "b" / "c" / "other.bin", random.Random(7))
    _pin(monkeypatch, {(b"a/b/c", b"other.bin"): old})
    res, _ = _commit(repo)
    (entry,) = repo.ls(res.commit_id.hex(), "a/b/c/other.bin")
    if racy:
        # No racy row was saved, and no folder with one vouched for: every file was read.
        assert res.scanned_bytes == res.bytes
        assert entry.entry.oid == hash_bytes(new_data)
    else:
        # Outside the racy window an identical lstat means an unchanged file: that is the
        # stat cache's contract (and git's), which the racy rule exists to make safe.
        assert res.scanned_bytes == 0
        assert entry.entry.oid != hash_bytes(new_data)


def test_a_racy_file_is_read_again_and_its_siblings_are_not(repo: cas.Repo, monkeypatch):
    """other.bin's lstat looks taken in the very tick of its last change, every time."""
    name, mode, size, _m, ino, _c, target = _stat_of(repo, b"a/b/c", b"other.bin")
    now = time.time_ns() + 10 * 10**9
    _pin(monkeypatch, {(b"a/b/c", b"other.bin"): (name, mode, size, now, ino, now, target)})
    _, t1 = _commit(repo)
    for seed in (8, 9):
        new_data = _rewrite_same_size(
            _wt(repo) / "a" / "b" / "c" / "other.bin", random.Random(seed)
        )
        res, t2 = _commit(repo)
        assert res.scanned_bytes == len(new_data)  # deep.bin, its sibling, was not read
        (entry,) = repo.ls(res.commit_id.hex(), "a/b/c/other.bin")
        assert entry.entry.oid == hash_bytes(new_data)
        assert _changed(t1, t2) == {"a/b/c", "a/b", "a", ""}
        t1 = t2


# ---------------------------------------------------------------------------- stat cache state


def test_an_old_format_stat_cache_is_ignored(repo: cas.Repo, caplog):
    _, t1 = _commit(repo)
    wt = _wt(repo)
    # A version 3 stat cache that matches top.txt's lstat but claims other content.
    st = os.lstat(wt / "top.txt")
    lie = hash_bytes(b"not the content")
    row = [st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns, 0, lie, lie, [st.st_size]]
    (wt / ".cas" / "statcache").write_bytes(
        msgpack.packb({"v": 3, "rows": {b"top.txt": row}}, use_bin_type=True)
    )
    with caplog.at_level(logging.WARNING):
        again, t2 = _commit(repo)
    assert not [r for r in caplog.records if r.name.startswith("cas")]
    assert again.scanned_bytes == again.bytes  # everything read again
    assert t2 == t1
    saved = msgpack.unpackb((wt / ".cas" / "statcache").read_bytes(), strict_map_key=False)
    assert saved["v"] == STAT_CACHE_VERSION
    assert repo.commit("and now").scanned_bytes == 0


def test_a_garbage_stat_cache_is_ignored_with_a_warning(repo: cas.Repo, caplog):
    _, t1 = _commit(repo)
    (_wt(repo) / ".cas" / "statcache").write_bytes(b"\x00garbage")
    with caplog.at_level(logging.WARNING):
        again, t2 = _commit(repo)
    assert "stat cache" in caplog.text
    assert again.scanned_bytes == again.bytes
    assert t2 == t1


def test_recorded_trees_the_store_lacks_are_built_and_stored(repo: cas.Repo, tmp_path: Path):
    """The same worktree (and stat cache) attached to another store: nothing is assumed."""
    _, t1 = _commit(repo)
    wt = _wt(repo)
    with cas.init(
        tmp_path / "store2", tmp_path / "other", progress=False, chunker=SMALL_CHUNKER
    ) as other:
        location = other.store
    (wt / ".cas" / "worktree.json").write_text(json.dumps({"format": 1, "store": location}))
    (wt / ".cas" / "HEAD.json").write_text(json.dumps({"branch": "main", "commit": None}))
    with cas.open(wt, cache_dir=tmp_path / "cache2", progress=False) as moved:
        res = moved.commit("into the other store")
        assert res.scanned_bytes == res.bytes  # chunks not in this store: read again
        assert moved.repository.load_commit(res.commit_id).tree == t1[""]
        assert moved.verify(read_data=True).ok
    with cas.clone(tmp_path / "store2", tmp_path / "copy", progress=False) as copy:
        assert copy.status().clean


def test_the_index_mark_spares_chunk_lookups_until_a_segment_is_lost(
    repo: cas.Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """An unchanged folder's chunks are not looked up in the index one by one while the
    index still holds every segment they were checked against; once one is gone (say,
    an index rebuilt by repair), they are, and what is missing is stored again."""
    first, _ = _commit(repo)
    looked: list[object] = []
    real = ChunkIndex.__contains__

    def counting(self: ChunkIndex, blob_id: object) -> bool:
        looked.append(blob_id)
        return real(self, blob_id)

    monkeypatch.setattr(ChunkIndex, "__contains__", counting)
    wt = _wt(repo)
    with cas.open(wt, cache_dir=tmp_path / "cache", progress=False) as again:
        res = again.commit("unchanged")
    assert res.scanned_bytes == 0
    assert len(looked) <= len(FOLDERS)  # each folder's tree, no chunk
    store = tmp_path / "store"
    for segment in (store / "index").rglob("*"):
        if segment.is_file():
            segment.unlink()  # every chunk the index knew is unknown now
    looked.clear()
    with cas.open(wt, cache_dir=tmp_path / "cache", progress=False) as lost:
        res = lost.commit("after the index was lost")
        assert res.scanned_bytes == res.bytes  # nothing vouched for: read and stored again
        assert lost.repository.load_commit(res.commit_id).tree == (
            lost.repository.load_commit(first.commit_id).tree
        )
        assert lost.verify().ok
