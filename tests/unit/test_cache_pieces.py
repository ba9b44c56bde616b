"""LocalCache entries written piece by piece (checkout streams a pack into the cache)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from cas.cache import LocalCache


def _pack_key(n: int) -> str:
    h = f"{n:064x}"
    return f"packs/{h[:2]}/{h}"


def _files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_pieces_become_the_entry_on_commit(tmp_path: Path) -> None:
    cache = LocalCache(tmp_path)
    sink = cache.begin(_pack_key(1))
    assert sink is not None
    sink.write(b"0123")
    sink.write(memoryview(b"xx456789")[2:])
    assert not cache.has(_pack_key(1))  # nothing visible before the commit
    sink.commit()
    assert cache.get(_pack_key(1)) == b"0123456789"
    assert _files(tmp_path) == [_pack_key(1)]  # no temp file left
    sink.commit()  # a second commit (or abort) does nothing
    sink.abort()
    assert cache.has(_pack_key(1))


def test_an_aborted_entry_leaves_nothing(tmp_path: Path) -> None:
    cache = LocalCache(tmp_path)
    sink = cache.begin(_pack_key(2))
    assert sink is not None
    sink.write(b"not what the id says")
    sink.abort()
    sink.write(b"ignored")
    sink.commit()
    assert not cache.has(_pack_key(2))
    assert _files(tmp_path) == []


def test_no_entry_when_caching_is_off_or_impossible(tmp_path: Path) -> None:
    assert LocalCache(None).begin(_pack_key(3)) is None
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    assert LocalCache(blocker).begin(_pack_key(3)) is None  # a file where the folder goes


def test_a_failed_write_turns_the_commit_into_an_abort(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = LocalCache(tmp_path)
    sink = cache.begin(_pack_key(4))
    assert sink is not None
    sink.write(b"first piece")

    def full(fd: int, data: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    sink.write(b"second piece")  # best effort: no error
    monkeypatch.undo()
    sink.commit()
    assert not cache.has(_pack_key(4))
    assert _files(tmp_path) == []


def test_committing_a_pack_trims_the_packs(tmp_path: Path) -> None:
    cache = LocalCache(tmp_path, pack_limit=25)
    for n in range(4):
        sink = cache.begin(_pack_key(n))
        assert sink is not None
        sink.write(bytes(10))
        sink.commit()
        os.utime(tmp_path / _pack_key(n), ns=(n * 10**9, n * 10**9))  # a clear LRU order
    assert [cache.has(_pack_key(n)) for n in range(4)] == [False, False, True, True]


def test_open_read(tmp_path: Path) -> None:
    cache = LocalCache(tmp_path)
    cache.put(_pack_key(5), b"cached bytes")
    fd = cache.open_read(_pack_key(5))
    assert fd is not None
    try:
        assert os.pread(fd, 5, 7) == b"bytes"
    finally:
        os.close(fd)
    assert cache.open_read(_pack_key(6)) is None
    assert LocalCache(None).open_read(_pack_key(5)) is None
