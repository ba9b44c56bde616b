"""``cas repair``: rebuild the index; recover lost or damaged chunks from the worktree."""

from __future__ import annotations

import json
import os
from pathlib import Path

from cas.layout import INDEX, PACKS

from .conftest import Run
from .test_verify import _data_packs


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and not p.is_symlink() and ".cas" not in p.parts
    }


def _fresh_clone_equals(store: Path, tmp_path: Path, worktree: Path, run: Run, name: str) -> None:
    dest = tmp_path / name
    r = run("--cache-dir", str(tmp_path / f"cache-{name}"), "clone", str(store), str(dest))
    assert r.code == 0, r.err
    assert _tree_bytes(dest) == _tree_bytes(worktree)


def test_lost_index_is_rebuilt_from_packs(worktree: Path, tmp_path: Path, run: Run) -> None:
    store = tmp_path / "store"
    for seg in (store / INDEX).iterdir():
        seg.unlink()
    r = run("--cache-dir", str(tmp_path / "c1"), "clone", str(store), str(tmp_path / "x"))
    assert r.code == 9  # no index: the trees cannot be found
    r = run("-C", str(worktree), "--json", "repair")
    assert r.code == 0, r.out + r.err
    report = json.loads(r.out)
    assert report["segments_written"] == 1 and report["damaged_blobs"] == []
    assert run("-C", str(worktree), "verify", "--read-data").code == 0
    _fresh_clone_equals(store, tmp_path, worktree, run, "y")


def test_lost_pack_is_reuploaded_from_the_worktree(
    worktree: Path, tmp_path: Path, run: Run
) -> None:
    store = tmp_path / "store"
    lost = _data_packs(store)[0]
    lost.unlink()
    assert run("-C", str(worktree), "verify").code == 9
    r = run("-C", str(worktree), "--json", "repair")
    assert r.code == 0, r.out
    report = json.loads(r.out)
    assert report["reuploaded_chunks"] > 0 and report["unrecoverable"] == []
    r = run("-C", str(worktree), "--json", "verify", "--read-data")
    assert r.code == 0, r.out
    _fresh_clone_equals(store, tmp_path, worktree, run, "y")


def test_damaged_pack_is_repacked_and_its_bad_chunk_reuploaded(
    worktree: Path, tmp_path: Path, run: Run
) -> None:
    store = tmp_path / "store"
    pack = _data_packs(store)[0]
    data = bytearray(pack.read_bytes())
    data[60] ^= 0xFF
    pack.write_bytes(bytes(data))
    r = run("-C", str(worktree), "--json", "repair")
    assert r.code == 0, r.out
    report = json.loads(r.out)
    assert report["damaged_packs"] == [pack.name]
    assert len(report["damaged_blobs"]) == 1
    assert report["reuploaded_chunks"] == 1
    r = run("-C", str(worktree), "--json", "verify", "--read-data")
    assert r.code == 0, r.out
    out = json.loads(r.out)
    # Kept, but no longer used; reading it whole shows it is damaged, not a leftover.
    assert out["damaged_packs"] == [pack.name] and pack.name not in out["orphan_packs"]
    r = run("-C", str(worktree), "verify", "--read-data")
    assert f"pack {pack.name}: damaged and not in any index" in r.out
    assert "interrupted commit" not in r.out
    assert pack.exists()
    _fresh_clone_equals(store, tmp_path, worktree, run, "y")


def test_unrecoverable_chunks_are_listed_with_exit_9(
    worktree: Path, tmp_path: Path, run: Run
) -> None:
    store = tmp_path / "store"
    lost = _data_packs(store)[0]
    lost.unlink()
    for f in (worktree / "images").rglob("*.jpg"):
        f.write_bytes(os.urandom(10))  # the worktree no longer has the old content
    (worktree / "weights.bin").write_bytes(b"gone")
    r = run("-C", str(worktree), "repair")
    assert r.code == 9
    assert "error: unrecoverable: blob " in r.out and "(affects version " in r.out
    assert len(list((store / PACKS).rglob("*"))) > 0


def test_packs_lost_with_their_folder_listings_are_never_reported_repaired(
    worktree: Path, tmp_path: Path, run: Run
) -> None:
    """Every pack gone, folder listings included, and no local copy of them: repair
    lists what it cannot recover and exits 9. (The old index segments, still on the
    store until repair ends, must not vouch for the lost packs when a read misses.)"""
    store = tmp_path / "store"
    for pack in [p for p in (store / PACKS).rglob("*") if p.is_file()]:
        pack.unlink()
    empty_cache = ("--cache-dir", str(tmp_path / "empty-cache"))
    r = run(*empty_cache, "-C", str(worktree), "--json", "repair")
    assert r.code == 9, r.out + r.err
    assert "a folder listing" in r.out
    assert run(*empty_cache, "-C", str(worktree), "verify").code == 9
