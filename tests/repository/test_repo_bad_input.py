"""Bad input: each case raises the right error class and leaves the user's files and the
store as they were (every file of both hashed before and after)."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import cas
import cas.api as api_module
from cas.codec import pack_canonical
from cas.config import decode_config, encode_config
from cas.errors import (
    CasError,
    CorruptObjectError,
    DirtyWorktreeError,
    IntegrityError,
    RefNotFoundError,
    UnsafePathError,
    UnsupportedFormatError,
)
from cas.hashing import hash_bytes
from cas.layout import commit_key, pack_key
from cas.objects import Tree
from cas.packs import KIND_CHUNK, read_pack_entries
from cas.repository import Repository
from tests.assets import assert_same_tree
from tests.repository.repo_support import (
    Built,
    chunk_location,
    clone,
    dir_entry,
    file_entry,
    file_entry_at,
    fingerprint,
    flip_byte,
    open_store,
    store_tree,
    symlink_entry,
    tree_of,
    user_files,
    write_crafted_commit,
)
from tests.stores import StoreUnderTest


@contextlib.contextmanager
def untouched(store: StoreUnderTest, *worktrees: Path) -> Iterator[None]:
    """Assert that the store (every file and folder) and the worktrees' user files and
    HEAD are the same after the block as before it."""
    before_store = store.fingerprint()
    before_wts = [(user_files(w), _head(w)) for w in worktrees]
    yield
    assert store.fingerprint() == before_store, "the store changed"
    for w, (files, head) in zip(worktrees, before_wts, strict=True):
        assert_same_tree(files, user_files(w))
        assert _head(w) == head, f"{w}: HEAD changed"


def _head(wt: Path) -> bytes | None:
    p = wt / ".cas" / "HEAD.json"
    return p.read_bytes() if p.exists() else None


def _empty_folder(path: Path) -> Path:
    path.mkdir()
    return path


def _assert_left_empty(path: Path) -> None:
    """A failed clone leaves the (pre-created, empty) folder empty: no files, no .cas."""
    assert sorted(os.listdir(path)) == []


# ---------------------------------------------------------------------------- unknown refs


def test_unknown_ref(mini_store: StoreUnderTest, tmp_path: Path):
    store = mini_store
    wt = tmp_path / "wt"
    with clone(store, wt, "v1") as repo, untouched(store, wt):
        for call in (
            lambda: repo.checkout("nope"),
            lambda: repo.checkout("nope", force=True),
            lambda: repo.checkout("nope", paths=["README.md"]),
            lambda: repo.show("nope"),
            lambda: repo.ls("nope"),
            lambda: repo.diff("nope", "v1"),
            lambda: repo.diff("v1", "nope"),
            lambda: repo.diff("nope"),
            lambda: repo.log("nope"),
            lambda: repo.tag("t", "nope"),
            lambda: repo.branch("b", "nope"),
            lambda: repo.resolve("deadbeef"),
            lambda: repo.resolve("0" * 64),
            lambda: repo.delete_tag("nope"),
            lambda: repo.delete_branch("nope"),
        ):
            with pytest.raises(RefNotFoundError):
                call()
    fresh = _empty_folder(tmp_path / "fresh")
    with untouched(store), pytest.raises(RefNotFoundError):
        clone(store, fresh, "nope")
    _assert_left_empty(fresh)


def test_a_checkout_of_an_unknown_ref_stops_the_index_preload(
    mini_store: StoreUnderTest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """The index a checkout starts loading beside its ref lookup is not waited for
    when the ref turns out unknown (on a Drive mount: seconds of segment reads)."""
    with clone(mini_store, tmp_path / "wt", "v1") as repo:
        stops: list[bool] = []
        inner = repo.repository
        monkeypatch.setattr(inner, "stop_preload", lambda: stops.append(True))
        with pytest.raises(RefNotFoundError):
            repo.checkout("nope")
        assert stops == [True]
    order: list[str] = []
    real_stop, real_soon = Repository.stop_preload, Repository.load_index_soon
    real_resolve = api_module.resolve_ref

    def stop(self: Repository) -> None:
        order.append("stop")
        real_stop(self)

    def soon(self: Repository) -> None:
        order.append("preload")
        real_soon(self)

    def resolve(*args: Any, **kwargs: Any) -> Any:
        order.append("resolve")
        return real_resolve(*args, **kwargs)

    monkeypatch.setattr(Repository, "stop_preload", stop)
    monkeypatch.setattr(Repository, "load_index_soon", soon)
    monkeypatch.setattr(api_module, "resolve_ref", resolve)
    fresh = _empty_folder(tmp_path / "fresh")
    with pytest.raises(RefNotFoundError):
        clone(mini_store, fresh, "nope")
    # The clone starts the preload before anything else reaches the store, and it is
    # stopped however the clone ends (by its checkout, then by the clone itself).
    assert order[0] == "preload" and "resolve" in order
    assert order[-1] == "stop" and order.index("stop") > order.index("resolve")
    _assert_left_empty(fresh)


# ---------------------------------------------------------------------------- damaged packs


def _small_file_chunk(store: StoreUnderTest, built: Built, ref: str = "v2"):
    """(path, its first chunk's location, its pack's key) for a small image of ``ref``."""
    r = open_store(store)
    path = sorted(p for p in built.info.small if "new_" not in p)[7]
    entry = file_entry_at(r, ref, path)
    loc = chunk_location(r, entry.chunks[0].chunk_id)
    return path, loc, pack_key(loc.pack_id)


def test_flipped_byte_in_a_pack_fresh_clone(
    mini: Built, mini_store: StoreUnderTest, tmp_path: Path
):
    built, store = mini, mini_store
    path, loc, pack = _small_file_chunk(store, built)
    store.flip_byte(pack, loc.offset + loc.stored_len // 2)
    fresh = _empty_folder(tmp_path / "fresh")
    with untouched(store), pytest.raises(IntegrityError) as exc:
        clone(store, fresh, "v2")
    assert loc.pack_id.hex() in str(exc.value)
    assert not (fresh / path).exists()
    _assert_left_empty(fresh)


def test_corrupt_pack_fetched_whole_names_the_files(
    mini: Built, mini_store: StoreUnderTest, tmp_path: Path
):
    built, store = mini, mini_store
    path, loc, pack = _small_file_chunk(store, built)
    store.flip_byte(pack, loc.offset + loc.stored_len // 2)
    with pytest.raises(IntegrityError) as exc:
        clone(store, _empty_folder(tmp_path / "fresh"), "v2")
    assert path in str(exc.value)  # invariant 6: the pack and the files it belongs to


def test_flipped_byte_in_a_needed_range_names_pack_and_file(
    mini: Built, mini_store: StoreUnderTest, tmp_path: Path
):
    """One small file missing locally, no cached packs: its chunk is read as a range."""
    built, store = mini, mini_store
    path, loc, pack = _small_file_chunk(store, built)
    wt = tmp_path / "wt"
    clone(store, wt, "v2").close()
    (wt / path).unlink()
    store.flip_byte(pack, loc.offset + loc.stored_len // 2)
    with (
        cas.open(wt, cache_dir=tmp_path / "empty-cache", progress=False) as repo,
        untouched(store, wt),
        pytest.raises(IntegrityError) as exc,
    ):
        repo.checkout("v2")
    assert loc.pack_id.hex() in str(exc.value)
    assert path in str(exc.value)
    assert not (wt / path).exists()
    staging = wt / ".cas" / "tmp"
    assert not staging.exists() or not os.listdir(staging)  # no half-staged files left


def test_flipped_byte_never_reaches_an_existing_file(
    built: Built, store: StoreUnderTest, tmp_path: Path
):
    """v1 → v2 where a new chunk of the large file is damaged: the file keeps v1's bytes;
    with the pack repaired, the same checkout succeeds."""
    r = open_store(store)
    large = built.info.large
    old = {c.chunk_id for c in file_entry_at(r, "v1", large).chunks}
    new = [c for c in file_entry_at(r, "v2", large).chunks if c.chunk_id not in old]
    loc = chunk_location(r, new[len(new) // 2].chunk_id)
    wt = tmp_path / "wt"
    clone(store, wt, "v1").close()
    original = store.flip_byte(pack_key(loc.pack_id), loc.offset + loc.stored_len // 2)
    with cas.open(wt, cache_dir=tmp_path / "wt-cache", progress=False) as repo:
        with untouched(store, wt), pytest.raises(IntegrityError):
            repo.checkout("v2")
        assert_same_tree(built.snap1, wt)
        store.write(pack_key(loc.pack_id), original)
        repo.checkout("v2")
    assert_same_tree(built.snap2, wt)


@pytest.mark.parametrize("keep", [0.5, 0.05])
def test_truncated_pack_fresh_clone(
    mini: Built, mini_store: StoreUnderTest, tmp_path: Path, keep: float
):
    built, store = mini, mini_store
    _path, _loc, pack = _small_file_chunk(store, built)
    store.truncate(pack, int(len(store.read(pack)) * keep))
    fresh = _empty_folder(tmp_path / "fresh")
    with untouched(store), pytest.raises(IntegrityError):
        clone(store, fresh, "v2")
    _assert_left_empty(fresh)


def test_truncated_pack_range_read(mini: Built, mini_store: StoreUnderTest, tmp_path: Path):
    built, store = mini, mini_store
    path, loc, pack = _small_file_chunk(store, built)
    wt = tmp_path / "wt"
    clone(store, wt, "v2").close()
    (wt / path).unlink()
    store.truncate(pack, loc.offset + 1)
    with (
        cas.open(wt, cache_dir=tmp_path / "empty-cache", progress=False) as repo,
        untouched(store, wt),
        pytest.raises(IntegrityError),
    ):
        repo.checkout("v2")
    assert not (wt / path).exists()


def test_damaged_cached_pack_is_refetched(mini: Built, mini_store: StoreUnderTest, tmp_path: Path):
    """The local cache is only an accelerator: a damaged cached pack is dropped and the
    chunk read from the store."""
    built, store = mini, mini_store
    path, loc, _pack = _small_file_chunk(store, built)
    wt = tmp_path / "wt"
    cache = tmp_path / "cache"
    clone(store, wt, "v2", cache_dir=cache).close()
    with cas.open(wt, cache_dir=cache, progress=False) as repo:
        repo.repository.read_pack(loc.pack_id)  # cached whatever the remote
    cached = [p for p in cache.rglob("*") if p.is_file() and p.name == loc.pack_id.hex()]
    assert len(cached) == 1
    flip_byte(cached[0], loc.offset + loc.stored_len // 2)
    (wt / path).unlink()
    with cas.open(wt, cache_dir=cache, progress=False) as repo, untouched(store):
        repo.checkout("v2")
    assert_same_tree(built.snap2, wt)
    assert not cached[0].exists(), "the damaged copy was evicted"


def test_a_clone_caches_packs_only_from_a_remote_store(
    mini: Built, mini_store: StoreUnderTest, store_kind: str, tmp_path: Path
):
    """A folder store on a local disk is as fast as the cache: checkout writes each byte
    once, into the worktree. Packs of an object store are kept for later checkouts."""
    cache = tmp_path / "cache"
    clone(mini_store, tmp_path / "wt", "v2", cache_dir=cache).close()
    packs = [p for p in cache.rglob("*") if p.is_file() and p.parent.parent.name == "packs"]
    kinds = set()
    for pack in packs:
        data = pack.read_bytes()
        tail = functools.partial(lambda d, n: d[len(d) - n :], data)
        kinds |= {e.kind for e in read_pack_entries(tail, len(data), pack.name)}
    # Metadata packs (trees) are cached in any case, for the next command's listing.
    assert (KIND_CHUNK in kinds) is (store_kind != "folder")
    assert_same_tree(mini.snap2, tmp_path / "wt")


# ---------------------------------------------------------------------------- hostile trees


@pytest.fixture
def sandbox(tmp_path: Path) -> Path:
    """A folder holding the worktrees and an ``outside`` folder that must stay empty."""
    box = tmp_path / "sandbox"
    (box / "outside").mkdir(parents=True)
    # A second target that no version's symlink names: a link to it is in no commit, so
    # checkout must treat it as uncommitted work (a link to `outside` is committed in the
    # `link` version, hence safe to replace without --force).
    (box / "elsewhere").mkdir()
    return box


def _outside_state(box: Path) -> dict[str, object]:
    """Everything in the sandbox except the worktrees' insides and their local caches."""
    return {
        name: fingerprint(box / name) if (box / name).is_dir() else (box / name).read_bytes()
        for name in os.listdir(box)
        if name not in ("wt", "fresh") and not name.endswith("-cache")
    }


PAYLOAD = b"written by a hostile tree\n"

HOSTILE_NAMES = {
    "dotdot-slash": "../escaped",
    "dotdot-slash-deep": "../../escaped",
    "absolute": "<abs>",
    "nul": "ok\x00.txt",
    "slash": "a/b",
    "dot": ".",
    "dotdot": "..",
    "empty": "",
}


def _hostile_root(r: Repository, name: str, *, nested: bool) -> Tree:
    evil = file_entry(name, PAYLOAD)
    ok = file_entry("ok.txt", b"fine\n")
    if not nested:
        return tree_of(ok, evil)
    return tree_of(ok, dir_entry("sub", store_tree(r, tree_of(evil))))


@pytest.mark.parametrize("nested", [False, True], ids=["root", "nested"])
@pytest.mark.parametrize("case", sorted(HOSTILE_NAMES))
def test_hostile_name_in_a_tree(mini_store: StoreUnderTest, sandbox: Path, case: str, nested: bool):
    store = mini_store
    name = HOSTILE_NAMES[case]
    if name == "<abs>":
        name = str(sandbox / "outside" / "abs-escaped")
    r = open_store(store)
    write_crafted_commit(
        r, _hostile_root(r, name, nested=nested), "tags/evil", blobs=(PAYLOAD, b"fine\n")
    )
    before = _outside_state(sandbox)
    fresh = _empty_folder(sandbox / "fresh")
    with untouched(store), pytest.raises(UnsafePathError):
        clone(store, fresh, "evil")
    _assert_left_empty(fresh)
    wt = sandbox / "wt"
    with clone(store, wt, "v1") as repo:
        with untouched(store, wt), pytest.raises(UnsafePathError):
            repo.checkout("evil")
        with untouched(store, wt), pytest.raises(UnsafePathError):
            repo.checkout("evil", force=True)
    assert _outside_state(sandbox) == before
    assert not any(p.name.endswith("escaped") for p in sandbox.parent.rglob("*"))


@pytest.mark.parametrize("kind", ["file", "dir"])
def test_dot_cas_at_the_root_is_refused(mini_store: StoreUnderTest, sandbox: Path, kind: str):
    store = mini_store
    r = open_store(store)
    if kind == "file":
        evil = file_entry(".cas", PAYLOAD)
    else:
        evil = dir_entry(".cas", store_tree(r, tree_of(file_entry("HEAD.json", PAYLOAD))))
    write_crafted_commit(
        r, tree_of(file_entry("ok.txt", b"fine\n"), evil), "tags/evil", blobs=(PAYLOAD, b"fine\n")
    )
    fresh = _empty_folder(sandbox / "fresh")
    with untouched(store), pytest.raises(UnsafePathError):
        clone(store, fresh, "evil")
    _assert_left_empty(fresh)
    wt = sandbox / "wt"
    with clone(store, wt, "v1") as repo:
        meta = fingerprint(wt / ".cas", ignore=("statcache", "lock"))
        with untouched(store, wt), pytest.raises(UnsafePathError):
            repo.checkout("evil", force=True)
        assert fingerprint(wt / ".cas", ignore=("statcache", "lock")) == meta


def test_dot_cas_below_the_root_is_an_ordinary_name(mini_store: StoreUnderTest, sandbox: Path):
    store = mini_store
    r = open_store(store)
    sub = dir_entry("sub", store_tree(r, tree_of(file_entry(".cas", PAYLOAD))))
    write_crafted_commit(r, tree_of(sub), "tags/odd", blobs=(PAYLOAD,))
    with clone(store, sandbox / "wt", "odd"):
        pass
    assert (sandbox / "wt" / "sub" / ".cas").read_bytes() == PAYLOAD


# ---------------------------------------------------------------------------- symlinks


def test_symlink_and_folder_of_the_same_name_in_one_tree(mini_store: StoreUnderTest, sandbox: Path):
    """A crafted tree lists ``evil -> outside`` and a folder ``evil/`` holding a file."""
    store = mini_store
    r = open_store(store)
    outside = sandbox / "outside"
    folder = dir_entry("evil", store_tree(r, tree_of(file_entry("payload", PAYLOAD))))
    root = Tree((symlink_entry("evil", str(outside)), folder))
    write_crafted_commit(r, root, "tags/evil", blobs=(PAYLOAD,))
    before = _outside_state(sandbox)
    fresh = _empty_folder(sandbox / "fresh")
    with untouched(store), pytest.raises((UnsafePathError, CorruptObjectError)):
        clone(store, fresh, "evil")
    _assert_left_empty(fresh)
    wt = sandbox / "wt"
    with (
        clone(store, wt, "v1") as repo,
        untouched(store, wt),
        pytest.raises((UnsafePathError, CorruptObjectError)),
    ):
        repo.checkout("evil", force=True)
    assert _outside_state(sandbox) == before
    assert not os.listdir(outside)


@pytest.fixture
def link_then_folder(mini_store: StoreUnderTest, sandbox: Path) -> Path:
    """Tags: ``link`` (evil -> outside), ``folder`` (evil/payload), ``plain`` (no evil)."""
    store = mini_store
    r = open_store(store)
    ok = file_entry("ok.txt", b"fine\n")
    blobs = (PAYLOAD, b"fine\n")
    folder = dir_entry("evil", store_tree(r, tree_of(file_entry("payload", PAYLOAD))))
    write_crafted_commit(
        r, tree_of(ok, symlink_entry("evil", str(sandbox / "outside"))), "tags/link", blobs=blobs
    )
    write_crafted_commit(r, tree_of(ok, folder), "tags/folder", blobs=blobs)
    write_crafted_commit(r, tree_of(ok), "tags/plain", blobs=blobs)
    return store


def test_symlink_version_then_folder_version_never_writes_outside(
    link_then_folder: Path, sandbox: Path
):
    """``evil -> outside`` (tracked) then a version with ``evil/payload``: whether the switch
    is refused or done, nothing is written through the link."""
    wt = sandbox / "wt"
    with clone(link_then_folder, wt, "link") as repo:
        assert os.readlink(wt / "evil") == str(sandbox / "outside")
        with contextlib.suppress(UnsafePathError):
            repo.checkout("folder")
        with contextlib.suppress(UnsafePathError):
            repo.checkout("folder", force=True)
        with contextlib.suppress(UnsafePathError):
            repo.checkout("folder", paths=["evil/payload"], force=True)
    assert not os.listdir(sandbox / "outside")


def test_symlink_version_then_folder_version(link_then_folder: Path, sandbox: Path):
    wt = sandbox / "wt"
    with clone(link_then_folder, wt, "link") as repo:
        repo.checkout("folder")
        assert not os.path.islink(wt / "evil")
        assert (wt / "evil" / "payload").read_bytes() == PAYLOAD
        repo.checkout("link")
        assert os.path.islink(wt / "evil")
    assert not os.listdir(sandbox / "outside")


def test_untracked_symlink_where_the_version_has_a_folder(link_then_folder: Path, sandbox: Path):
    wt = sandbox / "wt"
    with clone(link_then_folder, wt, "plain") as repo:
        os.symlink(sandbox / "elsewhere", wt / "evil")
        with untouched(link_then_folder, wt):
            with pytest.raises((DirtyWorktreeError, UnsafePathError)):
                repo.checkout("folder")
            with pytest.raises((DirtyWorktreeError, UnsafePathError)):
                repo.checkout("folder", paths=["evil/payload"])
        with contextlib.suppress(UnsafePathError):
            repo.checkout("folder", force=True)
    assert not os.listdir(sandbox / "outside")
    assert not os.listdir(sandbox / "elsewhere")


def test_committed_symlink_where_the_version_has_a_folder_is_replaced(
    link_then_folder: Path, sandbox: Path
):
    """The link's target is committed (in `link`): replacing it loses nothing, no force."""
    wt = sandbox / "wt"
    with clone(link_then_folder, wt, "plain") as repo:
        os.symlink(sandbox / "outside", wt / "evil")
        repo.checkout("folder")
    assert not os.path.islink(wt / "evil")
    assert (wt / "evil" / "payload").read_bytes() == PAYLOAD
    assert not os.listdir(sandbox / "outside")


def test_untracked_symlink_is_replaced_with_force(link_then_folder: Path, sandbox: Path):
    wt = sandbox / "wt"
    with clone(link_then_folder, wt, "plain") as repo:
        os.symlink(sandbox / "outside", wt / "evil")
        repo.checkout("folder", force=True)
    assert not os.path.islink(wt / "evil")
    assert (wt / "evil" / "payload").read_bytes() == PAYLOAD
    assert not os.listdir(sandbox / "outside")


def _replace_folder_by_link(wt: Path, target: Path) -> None:
    (wt / "evil" / "payload").unlink()
    (wt / "evil").rmdir()
    os.symlink(target, wt / "evil")


@pytest.mark.parametrize("paths", [None, ["evil/payload"], ["evil"]])
def test_tracked_folder_replaced_by_a_symlink(link_then_folder: Path, sandbox: Path, paths):
    wt = sandbox / "wt"
    with clone(link_then_folder, wt, "folder") as repo:
        _replace_folder_by_link(wt, sandbox / "elsewhere")
        with untouched(link_then_folder, wt), pytest.raises((DirtyWorktreeError, UnsafePathError)):
            repo.checkout("folder", paths=paths)
        with contextlib.suppress(UnsafePathError):
            repo.checkout("folder", paths=paths, force=True)
    assert not os.listdir(sandbox / "outside")
    assert not os.listdir(sandbox / "elsewhere")


def test_tracked_folder_replaced_by_a_symlink_is_restored_with_force(
    link_then_folder: Path, sandbox: Path
):
    wt = sandbox / "wt"
    with clone(link_then_folder, wt, "folder") as repo:
        _replace_folder_by_link(wt, sandbox / "outside")
        repo.checkout("folder", force=True)
    assert not os.path.islink(wt / "evil")
    assert (wt / "evil" / "payload").read_bytes() == PAYLOAD
    assert not os.listdir(sandbox / "outside")


# ---------------------------------------------------------------------------- dirty worktree


def test_dirty_worktree_refuses_then_force_proceeds(
    mini: Built, mini_store: StoreUnderTest, tmp_path: Path
):
    built, store = mini, mini_store
    wt = tmp_path / "wt"
    added = sorted(built.mutation.added)[0]
    with clone(store, wt, "v1") as repo:
        (wt / "README.md").write_bytes(b"my notes, in no commit\n")
        (wt / added).write_bytes(b"an untracked file where v2 puts one\n")
        with untouched(store, wt), pytest.raises(DirtyWorktreeError) as exc:
            repo.checkout("v2")
        assert sorted(exc.value.paths) == sorted(["README.md", added])
        # Scoped to other paths there is no conflict.
        repo.checkout("v2", paths=["models"])
        repo.checkout("v2", force=True)
        assert repo.head.commit == built.c2.commit_id
    assert_same_tree(built.snap2, wt)


def test_deleted_file_is_not_a_conflict(mini: Built, mini_store: StoreUnderTest, tmp_path: Path):
    built, store = mini, mini_store
    wt = tmp_path / "wt"
    with clone(store, wt, "v1") as repo:
        (wt / "README.md").unlink()
        repo.checkout("v2")
    assert_same_tree(built.snap2, wt)


def test_clone_into_a_folder_with_conflicting_files(
    mini: Built, mini_store: StoreUnderTest, tmp_path: Path
):
    built, store = mini, mini_store
    dest = _empty_folder(tmp_path / "dest")
    (dest / "README.md").write_bytes(b"mine\n")
    with untouched(store), pytest.raises(DirtyWorktreeError):
        clone(store, dest, "v2")
    assert os.listdir(dest) == ["README.md"]
    assert (dest / "README.md").read_bytes() == b"mine\n"
    clone(store, dest, "v2", force=True).close()
    assert_same_tree(built.snap2, dest)


# ---------------------------------------------------------------------------- newer formats


def _rewrite_config(store: StoreUnderTest, **changes: object) -> None:
    config = decode_config(store.read("config"))
    store.write("config", encode_config(dataclasses.replace(config, **changes)))  # type: ignore[arg-type]


@pytest.mark.parametrize("changes", [{"format_version": 2}, {"mandatory_features": ("zz-future",)}])
def test_store_of_a_newer_format(mini_store: StoreUnderTest, tmp_path: Path, changes):
    store = mini_store
    wt = tmp_path / "wt"
    clone(store, wt, "v1").close()
    _rewrite_config(store, **changes)
    fresh = _empty_folder(tmp_path / "fresh")
    with untouched(store, wt):
        with pytest.raises(UnsupportedFormatError):
            cas.open(wt, cache_dir=tmp_path / "c", progress=False)
        with pytest.raises(UnsupportedFormatError):
            clone(store, fresh, "v1")
    _assert_left_empty(fresh)


def test_optional_unknown_feature_is_fine(mini: Built, mini_store: StoreUnderTest, tmp_path: Path):
    built, store = mini, mini_store
    _rewrite_config(store, optional_features=("zz-nice-to-have",))
    clone(store, tmp_path / "wt", "v2").close()
    assert_same_tree(built.snap2, tmp_path / "wt")


def test_commit_of_a_newer_format(mini_store: StoreUnderTest, tmp_path: Path):
    store = mini_store
    r = open_store(store)
    v1 = r.load_commit(r.refs.state("tags/v1").target)
    data = pack_canonical(
        {
            "type": "commit",
            "v": 2,
            "tree": bytes(v1.tree),
            "parents": [],
            "message": "from the future",
            "author": "t",
            "time_ns": 1,
        }
    )
    cid = hash_bytes(data)
    r.backend.write(commit_key(cid), data, if_absent=True)
    r.refs.update("tags/future", target=cid, expected=r.refs.state("tags/future"))
    wt = tmp_path / "wt"
    with clone(store, wt, "v2") as repo, untouched(store, wt):
        with pytest.raises(UnsupportedFormatError):
            repo.checkout("future")
        with pytest.raises(UnsupportedFormatError):
            repo.log("future")


def test_errors_are_cas_errors_with_a_hint(mini_store: StoreUnderTest, tmp_path: Path):
    """Every error above is a CasError whose one-line message names the object."""
    store = mini_store
    with clone(store, tmp_path / "wt", "v1") as repo, pytest.raises(CasError) as exc:
        repo.checkout("nope")
    assert "nope" in str(exc.value) and "\n" not in str(exc.value) and exc.value.hint
