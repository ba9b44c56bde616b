"""``repair`` on damage the packs' own bytes can undo, run again and again.

A pack whose footer, trailer or one blob header is damaged still has every blob intact:
laid out again they make the very same pack, so repair must write those bytes back under
the pack's name (a repack would make the same pack, whose create-only write would keep
the damaged copy). And a second repair, on a store the first one left sound, must leave
it sound: the segments it writes may bear the names of the first run's.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import cas
from cas.layout import PACKS
from tests.conftest import SMALL_CHUNKER

from .repo_support import fingerprint, user_files


def _store_with_two_versions(tmp_path: Path) -> tuple[Path, Path]:
    store, wt = tmp_path / "store", tmp_path / "wt"
    (wt / "img").mkdir(parents=True)
    for i in range(12):
        (wt / "img" / f"{i:02d}.bin").write_bytes(os.urandom(20_000 + i))
    (wt / "weights.bin").write_bytes(os.urandom(600_000))
    with cas.init(
        store, wt, cache_dir=tmp_path / "cache", progress=False, chunker=SMALL_CHUNKER
    ) as repo:
        repo.commit("v1", tag="v1")
        (wt / "img" / "12.bin").write_bytes(os.urandom(9_000))
        repo.commit("v2", tag="v2")
    return store, wt


def _largest_pack(store: Path) -> Path:
    return max(
        (p for p in (store / PACKS).rglob("*") if p.is_file()), key=lambda p: p.stat().st_size
    )


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def _clone_equals(store: Path, wt: Path, dest: Path) -> None:
    with cas.clone(store, dest, ref="v2", cache_dir=dest.with_suffix(".cache"), progress=False):
        pass
    assert user_files(dest) == user_files(wt)


@pytest.mark.parametrize(
    "where",
    [
        pytest.param(-30, id="footer-or-trailer"),
        pytest.param(-60, id="footer"),
        pytest.param(8, id="first-blob-header"),
    ],
)
def test_damage_outside_the_blobs_is_undone_and_a_second_repair_keeps_it(
    tmp_path: Path, where: int
) -> None:
    store, wt = _store_with_two_versions(tmp_path)
    before = fingerprint(wt)
    pack = _largest_pack(store)
    good = pack.read_bytes()
    _flip(pack, where if where >= 0 else len(good) + where)
    with cas.open(wt, cache_dir=tmp_path / "c-verify", progress=False) as repo:
        assert not repo.verify(read_data=True).ok
    for run in range(1, 4):
        with cas.open(wt, cache_dir=tmp_path / f"c-repair{run}", progress=False) as repo:
            report = repo.repair()
            assert report.ok, report
        # The damaged copy is replaced by the only bytes its name allows.
        assert pack.read_bytes() == good
        with cas.open(wt, cache_dir=tmp_path / f"c-check{run}", progress=False) as repo:
            problems = repo.verify(read_data=True)
            assert problems.ok, problems
        _clone_equals(store, wt, tmp_path / f"clone{run}")
    assert fingerprint(wt) == before  # the worktree itself was never touched


def test_a_repacked_pack_stays_indexed_through_every_later_repair(tmp_path: Path) -> None:
    store, wt = _store_with_two_versions(tmp_path)
    pack = _largest_pack(store)
    _flip(pack, pack.stat().st_size // 2)  # inside a blob: that one chunk is lost there
    for run in range(1, 4):
        with cas.open(wt, cache_dir=tmp_path / f"c-repair{run}", progress=False) as repo:
            report = repo.repair()
            assert report.ok, report
            if run == 1:
                assert report.repacked_blobs > 0 and report.reuploaded_chunks > 0
        with cas.open(wt, cache_dir=tmp_path / f"c-check{run}", progress=False) as repo:
            assert repo.verify(read_data=True).ok
        _clone_equals(store, wt, tmp_path / f"clone{run}")
