"""Pinned chunk boundaries: the same bytes must be cut at the same places forever.

Cut points are part of the on-remote format even though no byte of them is stored: a
chunk is found again only if the next commit cuts the file at the same offsets. If a
change to pyfastcdc (its version is pinned exactly in ``pyproject.toml``), to
``ChunkerParams`` defaults or to the way ``cas.chunking`` drives the cutter moves a
single cut, every existing store silently stops deduplicating against new commits:
nothing fails, each commit just uploads everything again. These tests make that change
fail loudly instead. If a change of cut points is truly intended, it needs a new
chunking algorithm name in the config (old stores keep the old one), not new numbers
here.

The data is a fixed 64-bit LCG (Knuth's MMIX constants), written out below so that the
input does not depend on any library's random generator.
"""

from __future__ import annotations

import array
import io
import struct
import sys
from functools import cache

import pytest
from blake3 import blake3

from cas.chunking import Chunker, ChunkerParams
from tests.conftest import SMALL_CHUNKER

DATA_SIZE = 8 << 20
DATA_SEED = 0x2545F4914F6CDD1D
DATA_BLAKE3 = "e794b47c08de4ca7450fbfc95f8089e09f4cfed5257922ca441c2bc7f2400347"

OTHER = ChunkerParams(min=2048, avg=16384, max=65536, normalization=2, seed=7)

# name → (params, chunk count, blake3 of the (offset, length) list, first cut offsets)
PINNED = {
    "default": (
        ChunkerParams(),
        10,
        "625d7b836798611893ae6781940b75c9f1451a88f3b924fcf776edcbdfa32ef3",
        [658729, 1989038, 2617169, 3431921, 4350009, 4504427, 6468543, 7550482],
    ),
    "small": (
        SMALL_CHUNKER,
        1652,
        "9a8b34a7ec5f7d54f25b2a5044dba64bcaa5e7275b9cf7be30b606b29a163563",
        [6119, 7676, 12121, 17143, 23112, 28245, 29388, 31497],
    ),
    "other": (
        OTHER,
        466,
        "bdd470d4526326e7aea1bc646ce3f0d17ef92d114eded8600cc59e14e7922dd8",
        [19304, 43885, 68700, 86003, 105415, 122918, 131654, 136302],
    ),
}


def lcg_bytes(n: int, seed: int) -> bytes:
    """``n`` bytes: the high 32 bits of each MMIX LCG state, little-endian."""
    a, c, mask = 6364136223846793005, 1442695040888963407, (1 << 64) - 1
    words = array.array("I", bytes(4 * ((n + 3) // 4)))
    assert words.itemsize == 4
    x = seed
    for i in range(len(words)):
        x = (a * x + c) & mask
        words[i] = x >> 32
    if sys.byteorder != "little":
        words.byteswap()
    return words.tobytes()[:n]


@cache
def golden_data() -> bytes:
    return lcg_bytes(DATA_SIZE, DATA_SEED)


def _cuts(lengths: list[int]) -> list[tuple[int, int]]:
    out, offset = [], 0
    for n in lengths:
        out.append((offset, n))
        offset += n
    return out


def _digest(cuts: list[tuple[int, int]]) -> str:
    return blake3(b"".join(struct.pack("<QQ", o, n) for o, n in cuts)).hexdigest()


class _TrickleReader(io.RawIOBase):
    """A stream that returns at most ``step`` bytes per read, like a FUSE mount may."""

    def __init__(self, data: bytes, step: int) -> None:
        self._data = data
        self._pos = 0
        self._step = step

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:  # type: ignore[no-untyped-def,override]
        n = min(len(buf), self._step, len(self._data) - self._pos)
        buf[:n] = self._data[self._pos : self._pos + n]
        self._pos += n
        return n


def test_lcg_data_is_unchanged() -> None:
    # First state from seed 1 is 0x6c576fac_........: its high word, little-endian.
    assert lcg_bytes(16, 1).hex() == "ac6f576cb386688299e1faa5cd550362"
    assert lcg_bytes(5, 1) == lcg_bytes(16, 1)[:5]
    assert blake3(golden_data()).hexdigest() == DATA_BLAKE3


@pytest.mark.parametrize("name", sorted(PINNED))
def test_buffer_cut_points_are_pinned(name: str) -> None:
    params, count, digest, first = PINNED[name]
    cuts = _cuts([len(c) for c in Chunker(params).iter_buffer(golden_data())])
    assert [o for o, _ in cuts[1 : len(first) + 1]] == first
    assert len(cuts) == count
    assert _digest(cuts) == digest
    assert sum(n for _, n in cuts) == DATA_SIZE


@pytest.mark.parametrize("name", sorted(PINNED))
@pytest.mark.parametrize("step", [None, 1000, 65537], ids=["whole", "trickle-1000", "odd-65537"])
def test_stream_cut_points_are_the_same(name: str, step: int | None) -> None:
    """Commits cut files as streams; a short read must never move a cut."""
    params, count, digest, _ = PINNED[name]
    data = golden_data()
    stream = io.BytesIO(data) if step is None else _TrickleReader(data, step)
    cuts = _cuts([len(c) for c in Chunker(params).iter_chunks(stream)])  # type: ignore[arg-type]
    assert len(cuts) == count
    assert _digest(cuts) == digest


def test_defaults_are_the_pinned_ones() -> None:
    p = ChunkerParams()
    assert (p.min, p.avg, p.max, p.normalization, p.seed, p.algorithm) == (
        128 * 1024,
        512 * 1024,
        2 * 1024 * 1024,
        1,
        0,
        "fastcdc2020",
    )
