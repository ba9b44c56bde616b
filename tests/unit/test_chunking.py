"""FastCDC chunking: parameter validation, content-defined cuts, stream equals buffer.

The exact cut points are pinned in ``tests/golden/test_chunk_boundaries.py``; here we
check the behaviour that deduplication relies on.
"""

from __future__ import annotations

import io
import random

import pytest

import cas.chunking as chunking
from cas.chunking import ALGORITHM, Chunker, ChunkerParams

SMALL = ChunkerParams(min=1024, avg=4096, max=16384)


def _data(n: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(n)


def _cut(params: ChunkerParams, data: bytes) -> list[bytes]:
    return [bytes(c) for c in Chunker(params).iter_buffer(data)]


def test_defaults() -> None:
    p = ChunkerParams()
    p.validate()
    assert (p.min, p.avg, p.max) == (128 * 1024, 512 * 1024, 2 * 1024 * 1024)
    assert p.algorithm == ALGORITHM == "fastcdc2020"


@pytest.mark.parametrize(
    ("params", "match"),
    [
        (ChunkerParams(algorithm="rabin"), "unknown chunking algorithm"),
        (ChunkerParams(min=32, avg=4096, max=16384), "64 <= min"),
        (ChunkerParams(min=8192, avg=4096, max=16384), "min <= avg"),
        (ChunkerParams(min=1024, avg=32768, max=16384), "avg <= max"),
        (ChunkerParams(min=64, avg=128, max=4096), "range"),
        (ChunkerParams(min=64, avg=256, max=512), "range"),
        (ChunkerParams(min=1024, avg=8 << 20, max=16 << 20), "range"),
        (ChunkerParams(min=1024, avg=4096, max=32 << 20), "range"),
        (ChunkerParams(min=2 << 20, avg=3 << 20, max=8 << 20), "1 MiB"),
        (ChunkerParams(normalization=4), "normalization"),
    ],
)
def test_invalid_params_are_refused(params: ChunkerParams, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        params.validate()
    with pytest.raises(ValueError, match=match):
        Chunker(params)


def test_empty_input_has_no_chunks() -> None:
    assert _cut(SMALL, b"") == []


def test_input_below_min_is_one_chunk() -> None:
    data = _data(SMALL.min - 1)
    assert _cut(SMALL, data) == [data]


def test_chunks_cover_the_input_within_bounds() -> None:
    data = _data(300_000)
    chunks = _cut(SMALL, data)
    assert b"".join(chunks) == data
    assert len(chunks) > 20
    assert all(SMALL.min <= len(c) <= SMALL.max for c in chunks[:-1])
    assert 0 < len(chunks[-1]) <= SMALL.max


def test_constant_data_is_cut_at_max() -> None:
    chunks = _cut(SMALL, b"\x00" * (3 * SMALL.max + 5))
    assert [len(c) for c in chunks] == [SMALL.max] * 3 + [5]


def test_same_bytes_same_cuts() -> None:
    data = _data(100_000)
    assert _cut(SMALL, data) == _cut(SMALL, bytes(data))


def test_stream_gives_the_same_chunks_as_a_buffer() -> None:
    data = _data(200_000)
    chunker = Chunker(SMALL)
    streamed = [bytes(c) for c in chunker.iter_chunks(io.BytesIO(data))]
    assert streamed == _cut(SMALL, data)


@pytest.mark.parametrize("hint", [-1, 0, 10, 1 << 40])
@pytest.mark.parametrize("size", [0, 1, 5000, 60_000])
def test_a_file_read_whole_or_streamed_gives_the_same_chunks(
    monkeypatch: pytest.MonkeyPatch, size: int, hint: int
) -> None:
    """Small files are read whole, large ones streamed, one that grew past the limit
    since its lstat (a wrong hint) is streamed from where it started: the same cuts."""
    monkeypatch.setattr(chunking, "WHOLE_READ_LIMIT", 20_000)
    data = _data(size)
    f = io.BytesIO(b"skip" + data)
    f.seek(4)
    got = [bytes(c) for c in Chunker(SMALL).iter_file(f, hint)]
    assert got == _cut(SMALL, data)
    assert b"".join(got) == data


def test_a_small_file_is_read_in_one_call_without_a_stream_buffer() -> None:
    class OneRead(io.BytesIO):
        calls = 0

        def read(self, n: int | None = -1) -> bytes:
            self.calls += 1
            return super().read(n)

        def readinto(self, b: object) -> int:  # the stream chunker's way in
            raise AssertionError("a small file was streamed")

    f = OneRead(_data(50_000))
    assert b"".join(Chunker(SMALL).iter_file(f, 50_000)) == f.getvalue()
    assert f.calls == 1


def test_cuts_resynchronise_after_an_insertion() -> None:
    """Content-defined cuts: bytes inserted at the front disturb only the first chunks."""
    data = _data(400_000)
    before = _cut(SMALL, data)
    after = _cut(SMALL, b"inserted!" * 11 + data)
    shared = set(before) & set(after)
    assert len(shared) >= len(before) - 3


def test_seed_changes_the_cuts() -> None:
    data = _data(200_000)
    seeded = ChunkerParams(min=1024, avg=4096, max=16384, seed=7)
    assert _cut(seeded, data) != _cut(SMALL, data)
    assert b"".join(_cut(seeded, data)) == data
