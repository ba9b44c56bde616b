"""The folder backend's read paths: one open per object read in pieces, one stat per stat,
and ranges whole even where the filesystem returns short reads (some FUSE mounts do)."""

from __future__ import annotations

import os
import threading
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


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _counting_opens(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    opened: list[object] = []
    real = os.open

    def counting(path: object, *args: object, **kw: object) -> int:
        opened.append(path)
        return real(path, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(local_module.os, "open", counting)
    return opened


def test_an_object_read_in_pieces_is_opened_once(
    backend: LocalDirBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a Drive mount every open is a round trip: a pack streamed in pieces costs one."""
    opened = _counting_opens(monkeypatch)
    pieces = [backend.read_range("packs/ab/key", off, 1024) for off in range(0, len(DATA), 1024)]
    assert b"".join(pieces) == DATA
    assert len(opened) == 1


def test_few_descriptors_stay_open_and_close_closes_them(tmp_path: Path) -> None:
    b = LocalDirBackend(tmp_path / "store", fsync=False)
    keys = [f"packs/{i:02x}/k" for i in range(3 * local_module.READERS_KEPT)]
    for k in keys:
        b.write(k, DATA)
    before = _open_fds()
    for k in keys:
        assert b.read_range(k, 5, 10) == DATA[5:15]
    assert _open_fds() - before == local_module.READERS_KEPT
    b.close()
    assert _open_fds() == before


def test_a_replaced_or_deleted_object_is_not_read_through_an_old_descriptor(
    backend: LocalDirBackend, tmp_path: Path
) -> None:
    assert backend.read_range("packs/ab/key", 0, 4) == DATA[:4]
    backend.write("packs/ab/key", b"new bytes")
    assert backend.read_range("packs/ab/key", 0, 3) == b"new"
    # Replaced by another process (a repair; Drive filling in a "ghost"), behind our back:
    path = tmp_path / "store" / "packs" / "ab" / "key"
    (tmp_path / "other").write_bytes(b"other bytes")
    os.replace(tmp_path / "other", path)
    assert backend.read_range("packs/ab/key", 0, 5) == b"other"
    path.write_bytes(b"grown in place, same inode")  # a ghost that gets its bytes
    assert backend.read_range("packs/ab/key", 0, 6) == b"grown "
    backend.delete("packs/ab/key")
    with pytest.raises(ObjectNotFoundError):
        backend.read_range("packs/ab/key", 0, 3)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"back")
    assert backend.read_range("packs/ab/key", 0, 4) == b"back"
    path.unlink()  # deleted by another process
    with pytest.raises(ObjectNotFoundError):
        backend.read_range("packs/ab/key", 0, 3)


def test_a_descriptor_in_use_is_closed_by_its_last_reader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dropped (limit reached, or close) while a thread reads through it: that thread's
    read completes, and the descriptor is closed when it is done."""
    b = LocalDirBackend(tmp_path / "store", fsync=False)
    b.write("packs/ab/key", DATA)
    entered, go = threading.Event(), threading.Event()
    real = os.pread
    results: list[bytes] = []

    def slow(fd: int, n: int, offset: int) -> bytes:
        if threading.current_thread().name == "slow-reader":
            entered.set()
            assert go.wait(10)
        return real(fd, n, offset)

    monkeypatch.setattr(os, "pread", slow)
    before = _open_fds()
    t = threading.Thread(
        target=lambda: results.append(b.read_range("packs/ab/key", 0, 100)), name="slow-reader"
    )
    t.start()
    assert entered.wait(10)
    b.close()  # drops the descriptor the reader is using
    assert _open_fds() == before + 1
    go.set()
    t.join(10)
    assert results == [DATA[:100]]
    assert _open_fds() == before
