"""``verify`` names every version a problem affects, names a damaged index segment instead
of the chunks it no longer indexes, tells a damaged pack kept by repair from a leftover,
and rotates ``--read-data-subset`` through disjoint sets of packs."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

import cas
import cas.verify
from cas.api import Repo
from cas.hashing import hash_bytes
from cas.ids import ObjectId
from cas.layout import INDEX, PACKS, index_key, pack_key
from cas.packs import KIND_CHUNK, read_pack_entries
from cas.verify import MAX_EXAMPLES, ROTATION_KEY, Problem
from tests.conftest import SMALL_CHUNKER, SMALL_PACK
from tests.stores import StoreUnderTest


def _bytes(seed: int, n: int) -> bytes:
    return random.Random(seed).randbytes(n)


def _init(
    tmp_path: Path, files: dict[str, bytes], location: str | None = None
) -> tuple[Repo, Path]:
    """A worktree holding ``files``, attached to a new store (a folder unless
    ``location`` says otherwise; small chunks and packs, so that little data makes several
    packs)."""
    wt = tmp_path / "wt"
    for rel, data in files.items():
        (wt / rel).parent.mkdir(parents=True, exist_ok=True)
        (wt / rel).write_bytes(data)
    repo = cas.init(
        location or str(tmp_path / "store"),
        wt,
        cache_dir=tmp_path / "cache",
        progress=False,
        chunker=SMALL_CHUNKER,
        pack_size=SMALL_PACK,
    )
    return repo, tmp_path / "store"


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def _file_chunk(repo: Repo, ref: str, path: str) -> ObjectId:
    """The first chunk of the file ``path`` in version ``ref``."""
    (entry,) = [e.entry for e in repo.ls(ref, path)]
    return entry.chunks[0].chunk_id


# ---------------------------------------------------------------------------- item: versions


def test_damage_in_a_shared_subtree_names_every_version(tmp_path: Path):
    repo, store = _init(
        tmp_path,
        {"shared/model.bin": _bytes(1, 40_000), "shared/notes.txt": b"n\n", "top.txt": b"0\n"},
    )
    with repo:
        versions = [repo.commit("v0", tag="v0")]
        for i in range(1, 7):  # seven versions that all share the folder `shared`
            (repo.worktree.root / "top.txt").write_bytes(f"{i}\n".encode())
            versions.append(repo.commit(f"v{i}", tag=f"v{i}"))
        chunk = _file_chunk(repo, "v0", "shared/model.bin")
        loc = repo.repository.locate(chunk)
        assert loc is not None
        _flip(store / pack_key(loc.pack_id), loc.offset + 3)

        assert repo.verify().ok  # the structure is intact: only reading the data finds it
        report = repo.verify(read_data=True)
    bad = [p for p in report.problems if p.kind == "corrupt-chunk"]
    assert len(bad) == 1
    assert chunk.hex() in bad[0].object and loc.pack_id.hex() in bad[0].object
    # Every version, newest first, each once, with the file's path in it.
    assert bad[0].affects == tuple(
        f"version {v.commit_id.short}:shared/model.bin" for v in reversed(versions)
    )
    # The message shows a few and counts the rest; the report keeps them all.
    text = str(bad[0])
    assert text.count("version ") == MAX_EXAMPLES
    assert text.endswith(f"and {len(versions) - MAX_EXAMPLES} more)")
    pack = next(p for p in report.problems if p.kind == "corrupt-pack")
    assert len(pack.affects) == len(versions)


def test_missing_pack_and_missing_tree_name_every_version_with_its_path(tmp_path: Path):
    repo, store = _init(
        tmp_path,
        {"a/b/shared/w.bin": _bytes(2, 20_000), "a/other.txt": b"1\n", "x.txt": b"x\n"},
    )
    with repo:
        v1 = repo.commit("v1")
        # v2 moves the shared folder one level up: same tree, another path.
        os.replace(repo.worktree.root / "a/b/shared", repo.worktree.root / "shared")
        v2 = repo.commit("v2")
        chunk = _file_chunk(repo, "HEAD", "shared/w.bin")
        loc = repo.repository.locate(chunk)
        assert loc is not None
        (store / pack_key(loc.pack_id)).unlink()
        report = repo.verify()
    (missing,) = [p for p in report.problems if p.kind == "missing-pack"]
    assert missing.affects == (
        f"version {v2.commit_id.short}:shared/w.bin",
        f"version {v1.commit_id.short}:a/b/shared/w.bin",
    )


# ---------------------------------------------------------------------------- item: index


def _segments(store: Path) -> list[Path]:
    return sorted(p for p in (store / INDEX).iterdir() if p.is_file())


def test_damaged_index_segment_is_named_once_not_as_missing_chunks(
    new_store: StoreUnderTest, tmp_path: Path
):
    files = {f"data/f{i:02}.bin": _bytes(10 + i, 9_000) for i in range(30)}
    repo, _folder = _init(tmp_path, files, new_store.location)
    with repo:
        v1 = repo.commit("v1")
        assert repo.verify().ok  # also fills the local cache with every segment
        listed = {pid.hex() for pid, _size in repo.repository.load_index().iter_packs()}
    damaged = new_store.keys(INDEX)[-1]
    new_store.flip_byte(damaged, 20)
    # A fresh runtime and this one (whose cache still holds the good copy) agree.
    for cache in (tmp_path / "cache", tmp_path / "fresh"):
        with cas.open(tmp_path / "wt", cache_dir=cache, progress=False) as again:
            report = again.verify(read_data=cache.name == "fresh")
        kinds = [p.kind for p in report.problems]
        assert "missing-chunk" not in kinds and "missing-tree" not in kinds
        corrupt = [p for p in report.problems if p.kind == "corrupt-index"]
        assert len(corrupt) == 1
        assert corrupt[0].object == f"index segment {damaged}"
        assert "does not match its id" in corrupt[0].detail
        assert "`cas repair`" in corrupt[0].detail
        # What the segment listed is still on the store: one problem says so and names
        # the versions that cannot be read until the index is rebuilt.
        (unindexed,) = [p for p in report.problems if p.kind == "unindexed-data"]
        assert "`cas repair`" in unindexed.detail
        assert unindexed.affects and unindexed.affects[0].startswith(
            f"version {v1.commit_id.short}:"
        )
        assert report.unindexed_packs and set(report.unindexed_packs) <= listed
        assert report.orphan_packs == []  # not "left by an interrupted commit"
        assert not any("interrupted commit" in n for n in report.notes())
        assert report.files == len(files)  # the walk went on through the unindexed trees
    with cas.open(tmp_path / "wt", cache_dir=tmp_path / "fresh", progress=False) as again:
        assert again.repair().ok
        assert again.verify(read_data=True).ok


def test_segment_that_matches_its_id_but_does_not_decode_is_corrupt_index(tmp_path: Path):
    repo, store = _init(tmp_path, {"a.txt": b"a\n"})
    with repo:
        repo.commit("v1")
        junk = b"not an index segment at all"
        key = index_key(hash_bytes(junk))
        (store / key).write_bytes(junk)
        empty = store / index_key(ObjectId(b"\x07" * 32))
        empty.write_bytes(b"")  # a Drive "ghost" of a segment upload still in progress
        report = repo.verify()
    by_object = {p.object: p for p in report.problems}
    assert set(by_object) == {f"index segment {key}"}
    assert all(p.kind == "corrupt-index" for p in report.problems)
    assert "not an index segment" in by_object[f"index segment {key}"].detail
    # The ghost is an upload on its way, not damage: a note, not a problem.
    assert report.pending_segments == [f"{INDEX}{'07' * 32}"]
    assert any("1 index segment is empty" in n for n in report.notes())
    assert report.segments == 3


def test_tree_missing_from_the_index_is_found_even_when_cached(tmp_path: Path):
    """A tree only the local cache still has is a problem: a fresh runtime cannot read it."""
    repo, store = _init(tmp_path, {"a/b/c.txt": b"c\n", "d.txt": b"d\n"})
    with repo:
        v1 = repo.commit("v1")
        for seg in _segments(store):
            seg.unlink()
        meta = [p for p in (store / PACKS).rglob("*") if p.is_file() and _kinds(p) != {KIND_CHUNK}]
        for p in meta:
            p.unlink()  # every tree is gone from the store; the cache still has them
        report = repo.verify()
    (root,) = [p for p in report.problems if p.kind == "missing-tree"]
    assert root.affects == (f"version {v1.commit_id.short}:/",)


def _kinds(pack: Path) -> set[int]:
    data = pack.read_bytes()
    return {e.kind for e in read_pack_entries(lambda n: data[-n:], len(data), "pack")}


# ---------------------------------------------------------------------------- item: kept


def _data_packs(store: Path) -> list[Path]:
    return sorted(p for p in (store / PACKS).rglob("*") if p.is_file() and _kinds(p) == {0})


@pytest.mark.parametrize("where", ["footer", "chunk"])
def test_damaged_pack_kept_by_repair_is_not_called_a_leftover(tmp_path: Path, where: str):
    repo, store = _init(tmp_path, {f"f{i}.bin": _bytes(50 + i, 30_000) for i in range(4)})
    with repo:
        repo.commit("v1")
        pack = _data_packs(store)[0]
        size = pack.stat().st_size
        _flip(pack, 60)  # a chunk (so that repair's copy of the rest is another pack)
        if where == "footer":
            _flip(pack, size - 30)  # and a footer entry
        assert not repo.verify(read_data=True).ok
        assert repo.repair().ok  # re-uploads from the worktree; keeps the damaged pack
        assert pack.exists()
        report = repo.verify()
        assert report.ok, report.problems
        if where == "footer":  # the footer check tells, without reading the pack
            assert report.damaged_packs == [pack.name] and report.orphan_packs == []
        else:  # only reading it whole tells
            assert report.orphan_packs == [pack.name] and report.damaged_packs == []
            report = repo.verify(read_data=True)
            assert report.ok, report.problems
            assert report.damaged_packs == [pack.name] and report.orphan_packs == []
            assert pack.name in report.read_packs
    assert report.notes() == [
        f"pack {pack.name}: damaged and not in any index (`cas repair` restores or repacks "
        "what is intact in it)"
    ]


def test_leftover_pack_is_still_an_orphan(tmp_path: Path):
    repo, store = _init(tmp_path, {"a.bin": _bytes(3, 30_000)})
    with repo:
        repo.commit("v1")
        src = _data_packs(store)[0]
        leftover = store / PACKS / "ff" / ("ff" * 32)
        leftover.parent.mkdir(exist_ok=True)
        leftover.write_bytes(src.read_bytes())  # a valid footer under another name
        ghost = store / PACKS / "ee" / ("ee" * 32)
        ghost.parent.mkdir(exist_ok=True)
        ghost.write_bytes(b"")  # a Drive "ghost" of an upload in progress
        report = repo.verify()
    assert report.ok
    assert report.orphan_packs == ["ee" * 32, "ff" * 32] and report.damaged_packs == []
    assert report.notes() == [
        "2 packs are not in any index (left by an interrupted commit; harmless)"
    ]


def test_problem_message_caps_what_it_affects():
    p = Problem("missing-chunk", "chunk x", "gone", tuple(f"version {i}:f" for i in range(9)))
    assert str(p) == (
        "missing-chunk: chunk x: gone (affects version 0:f, version 1:f, version 2:f, "
        "version 3:f, version 4:f and 4 more)"
    )
    assert str(Problem("corrupt-index", "index segment k", "bad")) == (
        "corrupt-index: index segment k: bad"
    )


# ---------------------------------------------------------------------------- item: subset


class _Picks(random.Random):
    """A random source whose ``randrange`` answers are given in advance."""

    def __init__(self, *answers: int) -> None:
        super().__init__(0)
        self.answers = list(answers)

    def randrange(self, *args: int, **kw: object) -> int:  # type: ignore[override]
        return self.answers.pop(0)


@pytest.fixture
def many_packs(tmp_path: Path) -> tuple[Repo, Path, list[str]]:
    repo, store = _init(tmp_path, {f"f{i:02}.bin": _bytes(100 + i, 20_000) for i in range(20)})
    repo.commit("v1")
    packs = sorted(pid.hex() for pid, _s in repo.repository.load_index().iter_packs())
    assert len(packs) >= 7
    return repo, store, packs


def _store_state(store: Path) -> dict[str, bytes]:
    return {str(p.relative_to(store)): p.read_bytes() for p in store.rglob("*") if p.is_file()}


def test_subset_runs_read_disjoint_sets_that_cover_every_pack_once_per_cycle(
    many_packs: tuple[Repo, Path, list[str]], monkeypatch: pytest.MonkeyPatch
):
    repo, store, packs = many_packs
    n = len(packs)
    share = 0.3
    count = max(1, round(n * share))
    assert n % count  # so that the last run of a cycle is a short one
    monkeypatch.setattr(cas.verify, "_RANDOM", _Picks(4))  # only the first run asks
    before = _store_state(store)
    with repo:
        repo.repository.cache.evict(ROTATION_KEY)
        cycles = []
        for _cycle in range(2):
            runs: list[list[str]] = []
            while sum(len(r) for r in runs) < n:
                report = repo.verify(subset=share)
                assert report.ok
                runs.append(report.read_packs)
            cycles.append(runs)
    for runs in cycles:
        assert [len(r) for r in runs] == [count] * (n // count) + [n % count]
        flat = [p for r in runs for p in r]
        assert len(flat) == len(set(flat)) == n  # disjoint, and every pack once
        assert sorted(flat) == packs
        assert flat == packs[4:] + packs[:4]  # in id order from the random origin
    assert cycles[1] == cycles[0]  # the next cycle starts again at the origin
    assert _store_state(store) == before  # verify never writes to the store


def test_fresh_caches_start_at_a_random_pack(
    many_packs: tuple[Repo, Path, list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    repo, _store, packs = many_packs
    repo.close()
    firsts = []
    for seed in range(6):
        monkeypatch.setattr(cas.verify, "_RANDOM", random.Random(seed))
        expected = random.Random(seed).randrange(len(packs))
        fresh = tmp_path / f"fresh-{seed}"  # a new Colab runtime: an empty cache
        with cas.open(tmp_path / "wt", cache_dir=fresh, progress=False) as again:
            read = again.verify(subset=0.25).read_packs
        assert read[0] == packs[expected]
        firsts.append(read[0])
    assert len(set(firsts)) > 1


def test_rotation_position_of_an_older_format_starts_a_new_cycle(
    many_packs: tuple[Repo, Path, list[str]], monkeypatch: pytest.MonkeyPatch
):
    repo, _store, packs = many_packs
    monkeypatch.setattr(cas.verify, "_RANDOM", _Picks(2))
    with repo:
        repo.repository.cache.put(ROTATION_KEY, b'{"next": 3}')
        assert repo.verify(subset=0.25).read_packs[0] == packs[2]
