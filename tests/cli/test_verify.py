"""``cas verify``: a clean store passes; every kind of damage is named with what it affects."""

from __future__ import annotations

import json
from pathlib import Path

from cas.layout import PACKS
from cas.packs import KIND_CHUNK, read_pack_entries

from .conftest import Run


def _data_packs(store: Path) -> list[Path]:
    out = []
    for p in sorted(q for q in (store / PACKS).rglob("*") if q.is_file()):
        data = p.read_bytes()
        entries = read_pack_entries(lambda n, d=data: d[-n:], len(data), "pack")
        if entries[0].kind == KIND_CHUNK:
            out.append(p)
    return out


def test_clean_store_passes_every_level(worktree: Path, run: Run) -> None:
    for args in ((), ("--read-data",), ("--read-data-subset", "50%")):
        r = run("-C", str(worktree), "verify", *args)
        assert r.code == 0, r.out
        assert "no problems found" in r.out
    data = json.loads(run("-C", str(worktree), "--json", "verify", "--read-data").out)
    assert data["ok"] and data["packs_read"] == data["packs"] > 1
    assert data["files"] == 23 and data["commits"] == 1


def test_flipped_byte_is_found_only_by_read_data(worktree: Path, tmp_path: Path, run: Run) -> None:
    pack = _data_packs(tmp_path / "store")[0]
    data = bytearray(pack.read_bytes())
    data[60] ^= 0x01
    pack.write_bytes(bytes(data))
    assert run("-C", str(worktree), "verify").code == 0  # structure is intact
    r = run("-C", str(worktree), "--json", "verify", "--read-data")
    assert r.code == 9
    report = json.loads(r.out)
    kinds = {p["kind"] for p in report["problems"]}
    assert kinds == {"corrupt-chunk", "corrupt-pack"}
    chunk = next(p for p in report["problems"] if p["kind"] == "corrupt-chunk")
    assert pack.name in chunk["object"]
    assert chunk["affects"] and chunk["affects"][0].startswith("version ")


def test_missing_and_truncated_packs_name_the_files(
    worktree: Path, tmp_path: Path, run: Run
) -> None:
    packs = _data_packs(tmp_path / "store")
    packs[0].unlink()
    packs[1].write_bytes(packs[1].read_bytes()[:-10])
    r = run("-C", str(worktree), "--json", "verify")
    assert r.code == 9
    problems = json.loads(r.out)["problems"]
    by_kind = {p["kind"]: p for p in problems}
    assert set(by_kind) == {"missing-pack", "pack-size"}
    assert packs[0].name in by_kind["missing-pack"]["object"]
    assert by_kind["missing-pack"]["affects"][0].startswith("version ")
    r = run("-C", str(worktree), "verify")
    assert "error: missing-pack: pack " in r.out and "(affects version " in r.out


def test_orphan_pack_is_reported_not_an_error(worktree: Path, tmp_path: Path, run: Run) -> None:
    store = tmp_path / "store"
    src = _data_packs(store)[0]
    orphan = store / PACKS / "ff" / ("ff" * 32)
    orphan.parent.mkdir(exist_ok=True)
    orphan.write_bytes(src.read_bytes())
    r = run("-C", str(worktree), "--json", "verify")
    assert r.code == 0
    assert json.loads(r.out)["orphan_packs"] == ["ff" * 32]


def test_subset_rotates_through_every_pack(worktree: Path, run: Run) -> None:
    total = json.loads(run("-C", str(worktree), "--json", "verify").out)["packs"]
    read = 0
    for _ in range(4):
        out = json.loads(
            run("-C", str(worktree), "--json", "verify", "--read-data-subset", "25%").out
        )
        read += out["packs_read"]
    assert read >= total


def test_bad_subset_is_a_usage_error(worktree: Path, run: Run) -> None:
    r = run("-C", str(worktree), "verify", "--read-data-subset", "0%")
    assert r.code == 2 and "between 0%" in r.err
