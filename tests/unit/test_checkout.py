"""The parts of checkout's staging: pieces, ranges, the in-flight budget, the stager."""

from __future__ import annotations

import errno
import itertools
import os
import random
import stat
import threading
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import cas.checkout as checkout
from cas.checkout import (
    _STAGE_DIR_BITS,
    CheckoutPlan,
    _Budget,
    _coalesce,
    _pieces,
    _Stager,
    _Stopped,
)
from cas.hashing import hash_bytes
from cas.objects import ChunkRef, EntryKind, TreeEntry
from cas.worktree import Worktree

# ---------------------------------------------------------------------------- pieces


@st.composite
def _layouts(draw: st.DrawFn) -> tuple[list[tuple[int, int]], int, int]:
    """Non-overlapping items (offset, length) in a span, with gaps, and a piece limit."""
    items = []
    pos = draw(st.integers(0, 50))
    start = pos
    for _ in range(draw(st.integers(0, 30))):
        pos += draw(st.integers(0, 40))  # a gap (an unneeded blob, say)
        length = draw(st.integers(1, 120))
        items.append((pos, length))
        pos += length
    end = pos + draw(st.integers(0, 40))
    return items, start, max(end, start + 1)


@given(_layouts(), st.integers(1, 100))
def test_pieces_cover_the_span_and_never_cut_an_item(layout, limit: int) -> None:  # type: ignore[no-untyped-def]
    items, start, end = layout
    pieces = list(_pieces(items, start, end, limit))
    # Every byte of the span, in order, once.
    assert pieces[0][0] == start
    assert pieces[-1][1] == end
    for (_a, b, _), (c, _d, _) in itertools.pairwise(pieces):
        assert b == c
    seen = []
    for pos, cut, part in pieces:
        assert pos < cut
        # Each item lies wholly inside the piece that carries it.
        for off, length in part:
            assert pos <= off and off + length <= cut
        # A piece is at most the limit, unless it is one item larger than the limit.
        if cut - pos > limit:
            assert len(part) == 1 and part[0][1] > limit and part[0][0] == pos
        seen += part
    assert seen == items


def test_pieces_of_a_whole_pack_include_the_gaps() -> None:
    items = [(8, 10), (30, 10), (44, 30)]  # magic, blobs, an unneeded blob, a footer
    assert list(_pieces(items, 0, 100, 25)) == [
        (0, 25, [(8, 10)]),
        (25, 44, [(30, 10)]),  # the next blob would cross the limit: cut before it
        (44, 74, [(44, 30)]),  # larger than the limit: a piece of its own
        (74, 99, []),
        (99, 100, []),
    ]


def test_coalesce_merges_close_items_only() -> None:
    items = [(0, 10), (15, 5), (100, 10), (111, 1)]
    assert _coalesce(items, 5) == [(0, 20, [(0, 10), (15, 5)]), (100, 112, [(100, 10), (111, 1)])]
    assert _coalesce(items, 0) == [
        (0, 10, [(0, 10)]),
        (15, 20, [(15, 5)]),
        (100, 110, [(100, 10)]),
        (111, 112, [(111, 1)]),
    ]
    assert _coalesce([], 5) == []


# ---------------------------------------------------------------------------- budget


def test_budget_blocks_a_reader_until_bytes_are_released() -> None:
    budget = _Budget(100, threading.Event())
    got = threading.Event()

    def second() -> None:
        with budget.hold(10):
            got.set()

    with budget.hold(95):
        t = threading.Thread(target=second)
        t.start()
        assert not got.is_set()  # 95 + 10 > 100: it waits while the first piece is held
        assert budget.used == 95
    assert got.wait(10)
    t.join()
    assert budget.used == 0
    assert budget.peak <= 100


def test_budget_lets_one_oversized_piece_through_alone() -> None:
    budget = _Budget(100, threading.Event())
    with budget.hold(250):
        assert budget.used == 250
    assert budget.peak == 250 and budget.used == 0


def test_a_waiting_reader_gives_up_when_the_checkout_stops() -> None:
    stop = threading.Event()
    budget = _Budget(100, stop)
    errors: list[BaseException] = []

    def waiter() -> None:
        try:
            with budget.hold(50):
                pass
        except _Stopped as exc:
            errors.append(exc)

    with budget.hold(80):
        t = threading.Thread(target=waiter)
        t.start()
        stop.set()
        t.join(10)
    assert not t.is_alive()
    assert len(errors) == 1


# ---------------------------------------------------------------------------- stager


def _file_entry(name: str, data: bytes, pieces: int, mode: int = 0o644) -> TreeEntry:
    size = len(data)
    bounds = [size * i // pieces for i in range(pieces + 1)]
    chunks = tuple(
        ChunkRef(hash_bytes(data[a:b]), b - a) for a, b in itertools.pairwise(bounds) if b > a
    )
    return TreeEntry(
        name, EntryKind.FILE, mode, 1_234_567_890_123_456_789, size, hash_bytes(data), chunks
    )


def _plan(entries: dict[str, TreeEntry]) -> CheckoutPlan:
    return CheckoutPlan(target=dict(entries), writes=list(entries), files=len(entries))


@pytest.fixture
def wt(tmp_path: Path) -> Worktree:
    (tmp_path / ".cas").mkdir()
    return Worktree(tmp_path)


def test_stager_writes_files_in_any_order_from_many_threads(
    wt: Worktree, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pieces of many files, shuffled, from four threads; few descriptors may stay open,
    so files are closed and reopened between pieces. Every file ends up exact, with its
    mode and mtime, and nothing is left open."""
    monkeypatch.setattr(checkout, "_FD_CACHE", 3)
    rng = random.Random(7)
    datas = {f"f{i}": rng.randbytes(rng.randint(1, 5000)) for i in range(40)}
    entries = {
        name: _file_entry(name, data, rng.randint(1, 6), 0o755 if i % 3 == 0 else 0o640)
        for i, (name, data) in enumerate(datas.items())
    }
    entries["empty"] = TreeEntry("empty", EntryKind.FILE, 0o600, 42, 0, hash_bytes(b""))
    entries["link"] = TreeEntry(
        "link", EntryKind.SYMLINK, 0o777, 43, 0, hash_bytes(b"f1"), target="f1"
    )
    plan = _plan(entries)
    stager = _Stager(wt, plan)
    work = []
    for n, name in enumerate(plan.writes):
        off = 0
        for c in entries[name].chunks:
            work.append((n, off, datas[name][off : off + c.size]))
            off += c.size
    rng.shuffle(work)
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                if not work:
                    return
                n, off, data = work.pop()
            stager.write(n, off, data)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stager.check_complete()
    assert stager._open == 0 and not stager._slots
    for n, name in enumerate(plan.writes):
        path = stager.path(n)
        st_ = os.lstat(path)
        e = entries[name]
        if e.kind == EntryKind.SYMLINK:
            assert os.readlink(path) == "f1"
            continue
        assert stat.S_IMODE(st_.st_mode) == e.mode
        assert st_.st_mtime_ns == e.mtime_ns
        with open(path, "rb") as f:
            assert f.read() == datas.get(name, b"")
    stager.discard()
    assert not stager.dir.exists()


def test_stager_refuses_to_call_a_partly_written_file_complete(wt: Worktree) -> None:
    data = os.urandom(3000)
    plan = _plan({"big": _file_entry("big", data, 3)})
    stager = _Stager(wt, plan)
    stager.write(0, 0, data[:1000])
    stager.write(0, 2000, data[2000:])
    with pytest.raises(RuntimeError, match="staged 0 of 1 files"):
        stager.check_complete()
    stager.discard()


def _preallocating_stager(wt: Worktree, data: bytes, pieces: int) -> _Stager:
    """A stager of one file ``big`` in ``pieces``, told its filesystem preallocates."""
    stager = _Stager(wt, _plan({"big": _file_entry("big", data, pieces)}))
    stager._preallocate = True
    return stager


def _fallocate_fails(monkeypatch: pytest.MonkeyPatch, code: int, text: str) -> None:
    def failing(fd: int, offset: int, length: int) -> None:
        raise OSError(code, text)

    monkeypatch.setattr(checkout.os, "posix_fallocate", failing)


def test_a_file_staged_in_pieces_has_its_blocks_reserved_before_its_first_byte(
    wt: Worktree,
) -> None:
    """Where the filesystem reserves blocks natively, a file written in pieces gets all of
    them at its first piece (so ext4 has no delayed allocation to write out when the file
    is renamed over the old version); elsewhere it is a sparse file of its final length."""
    size = 8 << 20
    data = os.urandom(size)
    stager = _preallocating_stager(wt, data, 4)
    stager.write(0, 0, data[: 1 << 20])
    st_ = os.stat(stager.path(0))
    assert st_.st_size == size
    if checkout.filesystem_type(wt.root) in checkout.PREALLOCATING_FILESYSTEMS:
        assert st_.st_blocks * 512 >= size
    stager.write(0, 1 << 20, data[1 << 20 :])
    stager.check_complete()
    assert Path(stager.path(0)).read_bytes() == data
    stager.discard()


def test_a_filesystem_without_fallocate_gets_a_sparse_staged_file(
    wt: Worktree, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fallocate_fails(monkeypatch, errno.EOPNOTSUPP, "Operation not supported")
    data = os.urandom(3 << 20)
    stager = _preallocating_stager(wt, data, 3)
    stager.write(0, 1 << 20, data[1 << 20 : 2 << 20])
    assert os.stat(stager.path(0)).st_size == len(data)
    stager.write(0, 0, data[: 1 << 20])
    stager.write(0, 2 << 20, data[2 << 20 :])
    stager.check_complete()
    assert Path(stager.path(0)).read_bytes() == data
    stager.discard()


def test_a_full_disk_at_preallocation_is_an_error_not_a_fallback(
    wt: Worktree, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fallocate_fails(monkeypatch, errno.ENOSPC, "No space left on device")
    stager = _preallocating_stager(wt, b"x" * 3000, 3)
    with pytest.raises(OSError, match="No space left") as info:
        stager.write(0, 0, b"x" * 1000)
    assert info.value.errno == errno.ENOSPC
    stager.close()
    stager.discard()


def test_stager_creates_nothing_before_the_first_write(wt: Worktree) -> None:
    plan = _plan({f"f{i}": _file_entry(f"f{i}", b"x" * 10, 1) for i in range(5)})
    stager = _Stager(wt, plan)
    folder = Path(stager.path(0)).parent
    assert folder.parent.parent == stager.dir == wt.meta / "tmp"
    assert os.listdir(folder) == []
    stager.write(2, 0, b"x" * 10)
    assert os.listdir(folder) == ["2"]
    stager.discard()


def test_staged_files_are_spread_over_folders_of_consecutive_files(wt: Worktree) -> None:
    """Readers creating files at once do not all queue on one folder's lock."""
    n = 3 << _STAGE_DIR_BITS
    plan = _plan({f"f{i:04}": _file_entry(f"f{i:04}", b"x" * 10, 1) for i in range(n)})
    stager = _Stager(wt, plan)
    folders = {Path(stager.path(i)).parent for i in range(n)}
    assert len(folders) == 3
    assert Path(stager.path(0)).parent == Path(stager.path((1 << _STAGE_DIR_BITS) - 1)).parent
    for i in range(n):
        stager.write(i, 0, b"x" * 10)
    stager.check_complete()
    assert sum(len(os.listdir(f)) for f in folders) == n
    stager.discard()
    assert not stager.dir.exists()


def test_a_closed_stager_opens_nothing_and_leaves_a_descriptor_in_use_to_its_writer(
    wt: Worktree,
) -> None:
    """What a worker that outlived its checkout (a second Ctrl-C) finds."""
    data = os.urandom(3000)
    plan = _plan({"a": _file_entry("a", data, 3), "b": _file_entry("b", b"b" * 9, 1)})
    stager = _Stager(wt, plan)
    stager.write(0, 0, data[:1000])
    slot = stager._acquire(0, len(data))  # a worker is writing through it
    stager.close()
    os.fstat(slot.fd)  # still open for that worker
    fd = slot.fd
    assert stager._release(0, slot, 0) is False
    with pytest.raises(OSError, match="Bad file descriptor"):
        os.fstat(fd)  # closed by its last user
    with pytest.raises(_Stopped):
        stager.write(0, 1000, data[1000:2000])
    with pytest.raises(_Stopped):
        stager.write(1, 0, b"b" * 9)
    stager.discard()
    assert not stager.dir.exists()


def test_a_staged_file_is_never_written_through_a_planted_link(
    wt: Worktree, tmp_path: Path
) -> None:
    plan = _plan({"f": _file_entry("f", b"secret", 1)})
    stager = _Stager(wt, plan)
    outside = tmp_path / "outside"
    outside.write_bytes(b"")
    os.symlink(outside, stager.path(0))
    with pytest.raises(FileExistsError):
        stager.write(0, 0, b"secret")
    assert outside.read_bytes() == b""
    stager.discard()
