"""Versions and refs through the Python API: status and diff, log, tags, branches,
detached checkouts, partial checkouts, .casignore, what checkout rewrites and where it
takes chunks from, the local cache, du, and two worktrees on one branch."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

import cas
from cas.cache import LocalCache
from cas.errors import (
    AlreadyExistsError,
    CasError,
    DetachedHeadError,
    PathNotFoundError,
    RefConflictError,
    RefNotFoundError,
    UnsafePathError,
)
from cas.history import flatten_tree
from cas.objects import EntryKind
from cas.refs import RefStore
from tests.assets import Node, assert_same_tree, wait_out_racy_window
from tests.crash.faulty import NoCreateOnly
from tests.repository.repo_support import (
    Built,
    clone,
    sub_snapshot,
    user_files,
    without,
)
from tests.stores import StoreUnderTest


def _expected_changes(a: dict[str, Node], b: dict[str, Node]) -> set[tuple[str, str]]:
    """(path, status) from snapshot ``a`` to ``b``; folders count when they (dis)appear."""
    out = set()
    for path in a.keys() | b.keys():
        x, y = a.get(path), b.get(path)
        if x is None:
            out.add((path, "added"))
        elif y is None:
            out.add((path, "deleted"))
        elif x.kind != y.kind or (x.kind != "dir" and (x.content != y.content or x.mode != y.mode)):
            out.add((path, "modified"))
    return out


# ---------------------------------------------------------------------------- status, diff


def test_status_reports_added_modified_deleted_with_sizes(
    mini: Built, mini_store: StoreUnderTest, tmp_path
):
    built, store = mini, mini_store
    wt = tmp_path / "wt"
    with clone(store, wt, "main") as repo:
        st = repo.status()
        assert st.clean and st.branch == "main" and st.commit_id == built.c2.commit_id
        assert not st.behind and not st.diverged_heads
        (wt / "README.md").write_bytes(b"longer readme than before, by a few bytes\n")
        os.chmod(wt / "configs/train.yaml", 0o600)  # same bytes, other mode
        os.unlink(wt / "configs/latest.yaml")
        os.symlink("train.yaml", wt / "configs/latest.yaml")  # other target
        (wt / "data/new.bin").write_bytes(b"x" * 1234)
        (wt / "data/empty_new").mkdir()
        gone = sorted(built.info.small)[3]
        gone_size = built.snap2[gone].size
        os.unlink(wt / gone)
        st = repo.status()
    assert not st.clean
    assert set(st.added) == {("data/new.bin", 1234), ("data/empty_new", 0)}
    assert set(st.modified) == {
        ("README.md", 42),
        ("configs/train.yaml", built.snap2["configs/train.yaml"].size),
        ("configs/latest.yaml", len("train.yaml")),
    }
    assert set(st.deleted) == {(gone, gone_size)}


def test_diff_between_versions_and_against_the_worktree(
    mini: Built, mini_store: StoreUnderTest, tmp_path
):
    built, store = mini, mini_store
    expected = _expected_changes(built.snap1, built.snap2)
    assert ("outputs/empty_next", "added") in expected
    assert ("scripts/run.sh", "modified") in expected  # mode only
    with clone(store, tmp_path / "wt", "main") as repo:
        changes = repo.diff("v1", "v2")
        assert {(c.path, c.status) for c in changes} == expected
        for c in changes:
            if c.status != "added" and c.old.kind == EntryKind.FILE:
                assert c.old.size == built.snap1[c.path].size
            if c.status != "deleted" and c.new.kind == EntryKind.FILE:
                assert c.new.size == built.snap2[c.path].size
        assert repo.diff("v2", "v1") and repo.diff("v2", "v2") == []
        # The worktree (at v2) against v1 shows the same changes; against its base, none.
        assert {(c.path, c.status) for c in repo.diff("v1")} == expected
        assert repo.diff() == []


def test_worktree_diff_agrees_with_the_diff_of_its_commit(mini_store: StoreUnderTest, tmp_path):
    wt = tmp_path / "wt"
    with clone(mini_store, wt, "main") as repo:
        (wt / "newdir" / "sub").mkdir(parents=True)
        (wt / "newdir" / "sub" / "f.txt").write_bytes(b"f\n")
        (wt / "README.md").unlink()
        (wt / "README.md").mkdir()
        (wt / "README.md" / "inner").write_bytes(b"i\n")
        before_commit = sorted((c.path, c.status) for c in repo.diff("v2"))
        repo.commit("v3", tag="v3")
        assert sorted((c.path, c.status) for c in repo.diff("v2", "v3")) == before_commit


# ---------------------------------------------------------------------------- log, show


def test_log_order_and_labels(mini_store: StoreUnderTest, tmp_path):
    wt = tmp_path / "wt"
    with clone(mini_store, wt, "main") as repo:
        v1, v2 = repo.resolve("v1"), repo.resolve("v2")
        log = repo.log()
        assert [e.commit_id for e in log] == [v2, v1]
        assert [e.commit.message for e in log] == ["v2", "v1"]
        assert sorted(log[0].refs) == ["main", "tag: v2"]
        assert log[1].refs == ("tag: v1",)
        assert log[0].commit.parents == (v1,)
        assert log[1].commit.parents == ()
        assert [e.commit_id for e in repo.log("v1")] == [v1]
        assert [e.commit_id for e in repo.log(limit=1)] == [v2]
        (wt / "README.md").write_bytes(b"three\n")
        c3 = repo.commit("v3")
        repo.branch("side", "v1")
        log = repo.log()
        assert [e.commit_id for e in log] == [c3.commit_id, v2, v1]
        assert log[0].refs == ("main",) and "main" not in log[1].refs
        assert sorted(repo.log("v1")[0].refs) == ["side", "tag: v1"]
        show = repo.show("v2")
        assert show.commit_id == v2 and show.commit.message == "v2"
        assert repo.show().commit_id == c3.commit_id  # HEAD: the worktree's version
        assert repo.show().refs == ("main",)
        bare = repo.show("v1", labels=False)  # no listing of the refs
        assert bare.commit_id == v1 and bare.refs == ()
        assert repo.show(c3.commit_id.hex()[:10]).commit_id == c3.commit_id
        # --all: every branch and tag, newest first.
        repo.checkout("side")
        (wt / "side.txt").write_bytes(b"side\n")
        c4 = repo.commit("on side")
        assert [e.commit_id for e in repo.log(all=True)] == [c4.commit_id, c3.commit_id, v2, v1]
        assert [e.commit_id for e in repo.log()] == [c4.commit_id, v1]


# ---------------------------------------------------------------------------- tags


def test_tags_are_immutable_unless_forced(mini_store: StoreUnderTest, tmp_path):
    wt = tmp_path / "wt"
    store = mini_store
    with clone(store, wt, "main") as repo:
        v1, v2 = repo.resolve("v1"), repo.resolve("v2")
        assert {t.name: t.commit_id for t in repo.tags()} == {
            "v1": v1,
            "v2": v2,
        }
        with pytest.raises(AlreadyExistsError):
            repo.tag("v1", "v2")
        assert repo.tag("v1", "v1").commit_id == v1  # same target: a no-op
        assert repo.resolve("v1") == v1
        # commit(tag=) with an existing tag is refused before anything is committed.
        (wt / "README.md").write_bytes(b"changed\n")
        store_before = store.fingerprint()
        with pytest.raises(AlreadyExistsError):
            repo.commit("would be v3", tag="v2")
        assert store.fingerprint() == store_before
        assert repo.head.commit == v2
        assert repo.tag("v1", "v2", force=True).commit_id == v2
        assert repo.resolve("v1") == v2
        repo.delete_tag("v1")
        with pytest.raises(RefNotFoundError):
            repo.resolve("v1")
        with pytest.raises(RefNotFoundError):
            repo.delete_tag("v1")
        repo.tag("v1", v1.hex())  # a deleted tag can be created again
        assert repo.resolve("v1") == v1
        c3 = repo.commit("v3", tag="v3")
        assert c3.tag == "v3" and repo.resolve("v3") == c3.commit_id


@pytest.mark.parametrize("name", ["has space", "../up", "-dash", "a..b", "HEAD", "deadbeef12"])
def test_invalid_ref_names_are_cas_errors(mini_store: StoreUnderTest, tmp_path, name: str):
    with clone(mini_store, tmp_path / "wt", "v2") as repo:
        for call in (
            lambda: repo.tag(name),
            lambda: repo.branch(name),
            lambda: repo.commit("x", tag=name),
        ):
            with pytest.raises(CasError):
                call()


# ---------------------------------------------------------------------------- branches


def test_branch_create_checkout_commit_delete(mini_store: StoreUnderTest, tmp_path):
    wt = tmp_path / "wt"
    with clone(mini_store, wt, "main") as repo:
        v1, v2 = repo.resolve("v1"), repo.resolve("v2")
        at_v2 = user_files(wt)
        info = repo.branch("exp")
        assert info.commit_id == v2 and not info.current
        with pytest.raises(AlreadyExistsError):
            repo.branch("exp", "v1")
        branches = {b.name: b for b in repo.branches()}
        assert set(branches) == {"main", "exp"}
        assert branches["main"].current and branches["main"].default
        assert not branches["exp"].current and not branches["exp"].default
        result = repo.checkout("exp")
        assert result.branch == "exp" and repo.head.branch == "exp"
        (wt / "exp.txt").write_bytes(b"an experiment\n")
        c = repo.commit("on exp")
        assert c.branch == "exp" and c.commit_id == repo.resolve("exp")
        assert repo.resolve("main") == v2
        assert {b.name: b.current for b in repo.branches()} == {"main": False, "exp": True}
        with pytest.raises(CasError):
            repo.delete_branch("exp")  # the worktree is on it
        repo.checkout("main")
        assert not (wt / "exp.txt").exists()
        assert_same_tree(at_v2, wt)
        repo.delete_branch("exp")
        assert [b.name for b in repo.branches()] == ["main"]
        with pytest.raises(RefNotFoundError):
            repo.resolve("exp")
        assert repo.show(c.commit_id.hex()).commit.message == "on exp"  # the commit stays
        assert repo.branch("exp2", "v1").commit_id == v1
        assert repo.branch("exp2", "v2", force=True).commit_id == v2


def test_detached_checkout_refuses_to_commit(mini_store: StoreUnderTest, tmp_path):
    wt = tmp_path / "wt"
    store = mini_store
    with clone(store, wt, "main") as repo:
        v1 = repo.resolve("v1")
        for ref in ("v1", v1.hex(), v1.hex()[:8]):
            result = repo.checkout(ref)
            assert result.branch is None and repo.head.branch is None
            assert repo.head.commit == v1
        (wt / "README.md").write_bytes(b"edited while detached\n")
        before = store.fingerprint()
        with pytest.raises(DetachedHeadError):
            repo.commit("nowhere to go")
        assert store.fingerprint() == before
        # The way out that the error's hint names: a branch, then commit on it.
        repo.branch("fix", "HEAD")
        repo.checkout("fix", force=True)  # same commit; the edit is discarded …
        (wt / "README.md").write_bytes(b"edited on a branch\n")
        assert repo.commit("on fix").branch == "fix"  # … and redone on the branch


# ---------------------------------------------------------------------------- partial checkout


def _class_dir(built: Built, *, with_deleted: bool) -> str:
    """A class folder that does (or does not) hold a file v2 deleted."""
    dirs = sorted({p.rpartition("/")[0] for p in built.snap1 if p.endswith(".jpg")})
    deleted = {p.rpartition("/")[0] for p in built.mutation.deleted}
    return next(d for d in dirs if (d in deleted) == with_deleted)


def test_checkout_of_some_paths(mini: Built, mini_store: StoreUnderTest, tmp_path):
    built, store = mini, mini_store
    wt = tmp_path / "wt"
    scope = [_class_dir(built, with_deleted=False), built.info.large]
    with clone(store, wt, "main") as repo:
        repo.checkout("v1", paths=scope)
        assert repo.head.branch == "main" and repo.head.commit == built.c2.commit_id
        now = user_files(wt)
        for p in scope:
            assert_same_tree(sub_snapshot(built.snap1, p), sub_snapshot(now, p), dir_mtimes=False)
        assert_same_tree(without(built.snap2, scope), without(now, scope), dir_mtimes=False)
        changed = {p for p, _s in repo.status().modified + repo.status().added}
        changed |= {p for p, _s in repo.status().deleted}
        assert changed and all(any(p.startswith(s) for s in scope) for p in changed)
        repo.checkout("v2", paths=scope)  # v1's content there is committed: no force needed
        assert repo.status().clean
        with pytest.raises(PathNotFoundError):
            repo.checkout("v1", paths=["no/such/path"])
        with pytest.raises(UnsafePathError):
            repo.checkout("v1", paths=["../outside"])
        with pytest.raises(UnsafePathError):
            repo.checkout("v1", paths=["/etc"])


def test_partial_checkout_can_be_undone_without_force(
    mini: Built, mini_store: StoreUnderTest, tmp_path
):
    built, store = mini, mini_store
    scope = [built.info.large]
    with clone(store, tmp_path / "wt", "main") as repo:
        repo.checkout("v1", paths=scope)
        repo.checkout("v2", paths=scope)
        assert repo.status().clean


def test_partial_checkout_of_a_symlink_can_be_undone_without_force(
    mini: Built, mini_store: StoreUnderTest, tmp_path
):
    built, store = mini, mini_store
    link = "configs/latest.yaml"
    assert built.snap1[link].content != built.snap2[link].content
    wt = tmp_path / "wt"
    with clone(store, wt, "main") as repo:
        repo.checkout("v1", paths=[link])
        assert os.readlink(wt / link) == built.snap1[link].content
        repo.checkout("v2", paths=[link])
        assert repo.status().clean


def test_partial_checkout_back_removes_what_the_version_lacks(
    mini: Built, mini_store: StoreUnderTest, tmp_path
):
    built, store = mini, mini_store
    folder = _class_dir(built, with_deleted=True)
    wt = tmp_path / "wt"
    with clone(store, wt, "main") as repo:
        repo.checkout("v1", paths=[folder])
        assert_same_tree(sub_snapshot(built.snap1, folder), sub_snapshot(user_files(wt), folder))
        repo.checkout("v2", paths=[folder], force=True)
        assert repo.status().clean


# ---------------------------------------------------------------------------- .casignore


def test_casignore_is_respected(mini: Built, mini_store: StoreUnderTest, tmp_path):
    built, store = mini, mini_store
    wt = tmp_path / "wt"
    with clone(store, wt, "main") as repo:
        (wt / ".casignore").write_text("*.tmp\nscratch/\n")
        (wt / "scratch").mkdir()
        (wt / "scratch" / "big.bin").write_bytes(b"s" * 5000)
        (wt / "x.tmp").write_bytes(b"t")
        (wt / "data" / "y.tmp").write_bytes(b"t")
        st = repo.status()
        assert st.added == ((".casignore", len("*.tmp\nscratch/\n")),)
        c = repo.commit("with ignore rules")
        assert c.files == built.c2.files + 1
        listed = {e.path for e in repo.ls(recursive=True)}
        assert ".casignore" in listed
        assert not {"scratch", "scratch/big.bin", "x.tmp", "data/y.tmp"} & listed
        repo.checkout("v1")  # ignored files are not the checkout's business
        assert (wt / "scratch/big.bin").exists() and (wt / "data/y.tmp").exists()
        assert not (wt / ".casignore").exists()
    other = tmp_path / "other"
    clone(store, other, "main").close()
    assert (other / ".casignore").exists()
    assert not (other / "scratch").exists() and not (other / "x.tmp").exists()


# ---------------------------------------------------------------------------- what checkout writes


def test_checkout_never_rewrites_a_correct_file(built: Built, store: StoreUnderTest, tmp_path):
    wt = tmp_path / "wt"
    with clone(store, wt, "v1") as repo:
        before = user_files(wt)
        result = repo.checkout("v2")
        after = user_files(wt)
        same = [p for p, n in built.snap1.items() if n.kind == "file" and built.snap2.get(p) == n]
        assert len(same) > 250
        for p in same:
            assert after[p].ino == before[p].ino, p
            assert after[p].mtime_ns == before[p].mtime_ns, p
        assert result.stats.files_unchanged >= len(same)
        # The same version again: nothing is written at all.
        again = repo.checkout("v2")
        assert again.stats.files_written == 0 and again.stats.bytes_written == 0
        assert {p: n.ino for p, n in user_files(wt).items()} == {p: n.ino for p, n in after.items()}
        # Right bytes, wrong mtime and mode: only the metadata is fixed, in place.
        os.utime(wt / "README.md", ns=(1, 1))
        os.chmod(wt / "README.md", 0o600)
        ino = os.lstat(wt / "README.md").st_ino
        fixed = repo.checkout("v2")
        assert fixed.stats.files_written == 0
        assert os.lstat(wt / "README.md").st_ino == ino
    assert_same_tree(built.snap2, wt)


def test_checkout_takes_chunks_from_the_worktree(built: Built, store: StoreUnderTest, tmp_path):
    """v1 → v2 with an empty cache: the large file's unchanged chunks come from itself;
    only what v2 added is fetched."""
    wt = tmp_path / "wt"
    clone(store, wt, "v1").close()
    with cas.open(wt, cache_dir=tmp_path / "empty-cache", progress=False) as repo:
        result = repo.checkout("v2")
    s = result.stats
    large = built.snap2[built.info.large].size
    rewritten = built.mutation.rewritten[2]
    print(f"\nv1→v2 checkout: {s}")
    assert s.bytes_from_worktree >= large - rewritten - 3 * built.chunker_max
    assert s.bytes_from_cache == 0
    # Fetched: at most every pack v2 wrote (its new chunks; whole packs or ranges).
    assert 0 < s.bytes_fetched <= built.c2.stored_bytes
    assert_same_tree(built.snap2, wt)


# ---------------------------------------------------------------------------- the local cache


def test_deleting_the_local_cache_loses_nothing(mini: Built, mini_store: StoreUnderTest, tmp_path):
    built, store = mini, mini_store
    wt = tmp_path / "wt"
    cache = tmp_path / "cache"
    clone(store, wt, "main", cache_dir=cache).close()
    shutil.rmtree(cache)
    (wt / ".cas" / "statcache").unlink()
    with cas.open(wt, cache_dir=cache, progress=False) as repo:
        assert repo.status().clean
        assert [e.commit.message for e in repo.log()] == ["v2", "v1"]
        repo.checkout("v1")
        assert_same_tree(built.snap1, wt)
        repo.checkout("main")
        (wt / "README.md").write_bytes(b"after the cache was lost\n")
        c3 = repo.commit("v3")
    shutil.rmtree(cache)
    with clone(store, tmp_path / "other", "main") as other:
        assert other.head.commit == c3.commit_id
    assert_same_tree(wt, tmp_path / "other")


# ---------------------------------------------------------------------------- du


def _stored_chunks(repo: cas.Repo, ref: str) -> dict[bytes, int]:
    r = repo.repository
    index = r.load_index()
    tree = r.load_commit(repo.resolve(ref)).tree
    out = {}
    for e in flatten_tree(r, tree).values():
        for c in e.chunks:
            out[c.chunk_id] = index.lookup(c.chunk_id).stored_len
    return out


def test_du_figures(built: Built, store: StoreUnderTest, tmp_path):
    wt = tmp_path / "wt"
    with clone(store, wt, "main") as repo:
        report = repo.du()
        by_id = {v.commit_id: v for v in report.versions}
        assert set(by_id) == {built.c1.commit_id, built.c2.commit_id}
        v1, v2 = by_id[built.c1.commit_id], by_id[built.c2.commit_id]
        assert v1.logical_bytes == built.c1.bytes and v1.files == built.c1.files
        assert v2.logical_bytes == built.c2.bytes and v2.files == built.c2.files
        assert report.logical_bytes == built.c1.bytes + built.c2.bytes
        assert report.dedup_ratio > 1.8  # two versions that share ~95 % of their bytes
        assert report.compression_ratio >= 1.0
        assert report.distinct_stored_bytes <= report.pack_bytes
        # Unique bytes: the stored bytes of the chunks no other version has.
        c1, c2 = _stored_chunks(repo, "v1"), _stored_chunks(repo, "v2")
        assert v1.unique_stored_bytes == sum(n for c, n in c1.items() if c not in c2) > 0
        assert v2.unique_stored_bytes == sum(n for c, n in c2.items() if c not in c1) > 0
        assert v2.unique_stored_bytes <= built.c2.stored_bytes
        assert report.distinct_stored_bytes == sum({**c1, **c2}.values())
        # A third version equal to v2: v2 no longer owns anything alone.
        c3 = repo.commit("same as v2", tag="v3")
        report = repo.du()
        by_id = {v.commit_id: v for v in report.versions}
        assert by_id[built.c2.commit_id].unique_stored_bytes == 0
        assert by_id[c3.commit_id].unique_stored_bytes == 0
        assert "v3" in by_id[c3.commit_id].names
        assert report.dedup_ratio > 2.7


# ---------------------------------------------------------------------------- two writers


def test_second_worktree_on_the_same_branch_gets_a_ref_conflict(
    mini_store: StoreUnderTest, tmp_path
):
    store = mini_store
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    with clone(store, a_dir, "main") as a, clone(store, b_dir, "main") as b:
        v2 = a.resolve("v2")
        (a_dir / "a.txt").write_bytes(b"from a\n")
        (b_dir / "b.txt").write_bytes(b"from b\n")
        ca = a.commit("from a")
        assert not ca.diverged
        b_files = user_files(b_dir)
        with pytest.raises(RefConflictError):
            b.commit("from b")
        assert user_files(b_dir) == b_files
        assert b.head.commit == v2 and b.head.branch == "main"
        st = b.status()
        assert st.branch_head == ca.commit_id and st.behind and not st.diverged_heads
        assert b.resolve("main") == ca.commit_id
        assert [e.commit_id for e in b.log("main")][:2] == [ca.commit_id, v2]


def test_ref_conflict_work_can_go_to_a_new_branch(mini_store: StoreUnderTest, tmp_path):
    store = mini_store
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    with clone(store, a_dir, "main") as a, clone(store, b_dir, "main") as b:
        (a_dir / "a.txt").write_bytes(b"from a\n")
        (b_dir / "README.md").write_bytes(b"edited in b\n")
        a.commit("from a")
        with pytest.raises(RefConflictError):
            b.commit("from b")
        b.branch("b-work")
        b.checkout("b-work")
        assert (b_dir / "README.md").read_bytes() == b"edited in b\n"
        assert b.commit("from b").branch == "b-work"


def test_racing_writers_diverge_visibly(mini_store: StoreUnderTest, tmp_path):
    """Two writers that both read the branch before either wrote: both ref entries stay,
    the branch is reported diverged, never silently resolved."""
    store = mini_store
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    with clone(store, a_dir, "main") as a, clone(store, b_dir, "main") as b:
        v2 = a.resolve("v2")
        stale = b.repository.branch_state("main")
        (a_dir / "a.txt").write_bytes(b"from a\n")
        ca = a.commit("from a")
        # b's commit object is written and its ref entry appended on the stale state, as
        # a writer that raced a would do.
        (b_dir / "b.txt").write_bytes(b"from b\n")
        b_commit = a.repository.load_commit(ca.commit_id)
        cb = b.repository.save_commit(type(b_commit)(b_commit.tree, (v2,), "from b", "b", 1))
        # This folder store enforces create-only writes: the racer is refused outright.
        with pytest.raises(RefConflictError, match="another writer at the same moment"):
            b.repository.refs.update("heads/main", target=cb, expected=stale)
        # On a Drive mount nothing can refuse it: the entry lands and the branch diverges.
        drive_view = RefStore(NoCreateOnly(b.repository.backend), LocalCache(None), "b")
        state = drive_view.update("heads/main", target=cb, expected=stale)
        assert state.diverged
        assert set(b.status().diverged_heads) == {ca.commit_id, cb}
        with pytest.raises(RefConflictError):
            b.checkout("main")
        with pytest.raises(RefConflictError, match="'main' has diverged") as raised:
            a.commit("on a diverged branch")
        assert "cas branch -f main" in raised.value.hint
        logged = {e.commit_id for e in a.log(all=True)}
        assert {ca.commit_id, cb} <= logged
        # The branch's own log shows the commits of every head (docs/cli.md).
        assert {ca.commit_id, cb, v2} <= {e.commit_id for e in a.log("main")}
        a.branch("main", ca.commit_id.hex(), force=True)  # resolve: pick one head
        assert not a.repository.branch_state("main").diverged
        assert a.resolve("main") == ca.commit_id


# ---------------------------------------------------------------------------- kinds change


def _kinds_store(tmp_path: Path) -> tuple[Path, Path]:
    """Tags as-file (x is a file), as-link (x -> keep.txt), as-folder (x/inside.txt)."""
    wt = tmp_path / "kinds"
    wt.mkdir()
    (wt / "keep.txt").write_text("k\n")
    (wt / "x").write_text("a file\n")
    with cas.init(tmp_path / "kstore", wt, cache_dir=tmp_path / "kc", progress=False) as repo:
        repo.commit("x is a file", tag="as-file")
        os.unlink(wt / "x")
        os.symlink("keep.txt", wt / "x")
        repo.commit("x is a symlink", tag="as-link")
        os.unlink(wt / "x")
        (wt / "x").mkdir()
        (wt / "x" / "inside.txt").write_text("i\n")
        repo.commit("x is a folder", tag="as-folder")
    return tmp_path / "kstore", wt


@pytest.mark.parametrize("start", ["as-file", "as-link"])
def test_folder_to_file_or_symlink(tmp_path: Path, start: str):
    store, _ = _kinds_store(tmp_path)
    wt = tmp_path / "wt"
    with clone(store, wt, "as-folder") as repo:
        repo.checkout(start)
        assert os.path.islink(wt / "x") == (start == "as-link")
        assert os.path.isfile(wt / "x")
        assert repo.status().clean


@pytest.mark.parametrize("start", ["as-file", "as-link"])
def test_file_or_symlink_to_folder(tmp_path: Path, start: str):
    store, _ = _kinds_store(tmp_path)
    wt = tmp_path / "wt"
    with clone(store, wt, start) as repo:
        repo.checkout("as-folder")
        assert (wt / "x" / "inside.txt").read_text() == "i\n"
        assert repo.status().clean


def test_file_symlink_swap(tmp_path: Path):
    store, _ = _kinds_store(tmp_path)
    wt = tmp_path / "wt"
    with clone(store, wt, "as-file") as repo:
        repo.checkout("as-link")
        assert os.readlink(wt / "x") == "keep.txt"
        repo.checkout("as-file")
        assert not os.path.islink(wt / "x") and (wt / "x").read_text() == "a file\n"


# ---------------------------------------------------------------------------- stat cache


def test_status_after_an_edit_that_keeps_size_and_mtime(mini_store: StoreUnderTest, tmp_path):
    """Same size, same mtime, new bytes: the stat cache must not hide the change (the
    ctime/inode moved)."""
    wt = tmp_path / "wt"
    with clone(mini_store, wt, "main") as repo:
        wait_out_racy_window(wt)
        assert repo.status().clean  # the stat cache now vouches for every file
        p = wt / "README.md"
        st = os.lstat(p)
        data = bytearray(p.read_bytes())
        data[0] ^= 0x20
        p.write_bytes(bytes(data))
        os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
        assert [m[0] for m in repo.status().modified] == ["README.md"]
        assert os.lstat(p).st_size == st.st_size
