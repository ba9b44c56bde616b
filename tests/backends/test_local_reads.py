"""The folder backend's read paths: one open per range, one stat per stat, and ranges
whole even where the filesystem returns short reads (some FUSE mounts do)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import cas.store.local as local_module
from cas.errors import ObjectNotFoundError, ShortReadError
from cas.store.local import LocalDirBackend

DATA = bytes(range(256)) * 40  # 10 240 bytes


@pytest.fixture
def backend(tmp_path: Path) -> LocalDirBackend:
    b = LocalDirBackend(tmp_path / "store", fsync=False)
    b.write("packs/ab/key", DATA)
    return b


def test_short_reads_are_continued(
    backend: LocalDirBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = os.pread

    def stingy(fd: int, n: int, offset: int) -> bytes:
        return real(fd, min(n, 1000), offset)

    monkeypatch.setattr(os, "pread", stingy)
    assert backend.read_range("packs/ab/key", 100, 5000) == DATA[100:5100]
    assert backend.read_range("packs/ab/key", -3000, 3000) == DATA[-3000:]
    with pytest.raises(ShortReadError) as exc:
        backend.read_range("packs/ab/key", 10_000, 500)
    assert exc.value.args[0] == "short read of packs/ab/key: expected 500 bytes, got 240"


def test_ranges_and_their_edges(backend: LocalDirBackend) -> None:
    assert backend.read_range("packs/ab/key", 0, len(DATA)) == DATA
    assert backend.read_range("packs/ab/key", len(DATA), 0) == b""
    assert backend.read_range("packs/ab/key", -10, 4) == DATA[-10:-6]
    for offset, length in [(len(DATA) + 1, 0), (len(DATA) - 1, 2), (-len(DATA) - 1, 1)]:
        with pytest.raises(ShortReadError):
            backend.read_range("packs/ab/key", offset, length)
    with pytest.raises(ValueError, match="negative"):
        backend.read_range("packs/ab/key", 0, -1)
    with pytest.raises(ObjectNotFoundError):
        backend.read_range("packs/ab/missing", 0, 1)
    with pytest.raises(ObjectNotFoundError):
        backend.read_range("packs/ab", 0, 1)  # a folder of keys is no key


def test_stat_looks_once(backend: LocalDirBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = os.stat

    def counting(path: object, *args: object, **kw: object) -> os.stat_result:
        calls.append(path)
        return real(path, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(local_module.os, "stat", counting)
    assert backend.stat("packs/ab/key").size == len(DATA)
    assert len(calls) == 1
    with pytest.raises(ObjectNotFoundError):
        backend.stat("packs/ab")
