"""Per-chunk compression: zstd when it shrinks, raw otherwise; strict decompression."""

from __future__ import annotations

import random

import pytest
import zstandard

from cas.compression import (
    CODEC_PLANES2,
    CODEC_RAW,
    CODEC_ZSTD,
    CODECS,
    _to_planes,
    compress,
    decompress,
)
from cas.errors import CorruptObjectError

TEXT = b"the quick brown fox jumps over the lazy dog. " * 50


def test_codec_numbers_are_part_of_the_format() -> None:
    assert (CODEC_RAW, CODEC_ZSTD, CODEC_PLANES2) == (0, 1, 2)
    assert CODECS == (0, 1, 2)


def test_compressible_data_is_zstd() -> None:
    codec, stored = compress(TEXT, 3)
    assert codec == CODEC_ZSTD
    assert len(stored) < len(TEXT)
    assert zstandard.frame_content_size(stored) == len(TEXT)
    assert decompress(codec, stored, len(TEXT), "chunk") == TEXT


def test_incompressible_data_is_kept_raw() -> None:
    data = random.Random(0).randbytes(4096)
    assert compress(data, 3) == (CODEC_RAW, data)


@pytest.mark.parametrize("data", [b"", b"a" * 63])
def test_tiny_data_is_kept_raw(data: bytes) -> None:
    assert compress(data, 19) == (CODEC_RAW, data)


@pytest.mark.parametrize("level", [0, -1])
def test_level_zero_or_below_disables_compression(level: int) -> None:
    assert compress(TEXT, level) == (CODEC_RAW, TEXT)


def test_accepts_memoryview() -> None:
    codec, stored = compress(memoryview(TEXT), 1)
    assert decompress(codec, memoryview(stored), len(TEXT), "chunk") == TEXT


def test_raw_length_mismatch() -> None:
    with pytest.raises(CorruptObjectError, match="raw chunk of 3 bytes, expected 4") as ei:
        decompress(CODEC_RAW, b"abc", 4, "chunk X in pack Y")
    assert ei.value.what == "chunk X in pack Y"
    assert "chunk X in pack Y" in str(ei.value)


def test_zstd_declared_size_must_match_the_entry() -> None:
    _, stored = compress(TEXT, 3)
    with pytest.raises(CorruptObjectError, match="declares"):
        decompress(CODEC_ZSTD, stored, len(TEXT) + 1, "chunk")


def test_zstd_frame_without_content_size_is_refused() -> None:
    stored = zstandard.ZstdCompressor(write_content_size=False).compress(TEXT)
    with pytest.raises(CorruptObjectError, match="declares"):
        decompress(CODEC_ZSTD, stored, len(TEXT), "chunk")


@pytest.mark.parametrize(
    "damage",
    [
        lambda s: b"",
        lambda s: b"\x00" * 16,
        lambda s: s[:-4],
        lambda s: s[:10],
    ],
    ids=["empty", "zeros", "truncated-end", "truncated-header"],
)
def test_damaged_zstd_frame(damage) -> None:  # type: ignore[no-untyped-def]
    _, stored = compress(TEXT, 3)
    with pytest.raises(CorruptObjectError):
        decompress(CODEC_ZSTD, damage(stored), len(TEXT), "chunk")


@pytest.mark.parametrize("codec", [3, 255, -1])
def test_unknown_codec(codec: int) -> None:
    with pytest.raises(CorruptObjectError, match=f"unknown codec {codec}"):
        decompress(codec, b"x", 1, "chunk")


def test_flipped_byte_in_frame_body_is_left_to_the_hash_check() -> None:
    """Frames carry no checksum: a flipped literal may decode to wrong bytes of the right
    length. That is why every blob is hashed after decompression (Repository.decode_blob)."""
    _, stored = compress(TEXT, 3)
    damaged = stored[:20] + bytes([stored[20] ^ 0xFF]) + stored[21:]
    try:
        out = decompress(CODEC_ZSTD, damaged, len(TEXT), "chunk")
    except CorruptObjectError:
        return
    assert len(out) == len(TEXT)
    assert out != TEXT


# ---------------------------------------------------------------------------- the probe


@pytest.mark.parametrize("planes", [False, True], ids=["zstd-only", "planes-allowed"])
def test_probe_keeps_random_chunks_raw_without_compressing_them_whole(
    monkeypatch: pytest.MonkeyPatch, planes: bool
) -> None:
    """A large random chunk is stored raw after zstd saw only the probe's sample (and,
    where codec 2 is allowed, the sample's planes)."""
    import cas.compression as compression

    data = random.Random(1).randbytes(512 * 1024)
    seen: list[int] = []
    real = compression._compressor

    class Spy:
        def __init__(self, inner: zstandard.ZstdCompressor) -> None:
            self.inner = inner

        def compress(self, b: bytes) -> bytes:
            seen.append(len(b))
            return self.inner.compress(b)

    monkeypatch.setattr(compression, "_compressor", lambda level: Spy(real(level)))
    codec, stored = compress(data, 3, planes=planes)
    assert codec == CODEC_RAW and stored is data  # the very object: no copy
    sample = compression.PROBE_SLICES * compression.PROBE_SLICE
    assert seen == ([sample, sample // 2, sample // 2] if planes else [sample])


def test_probe_passes_compressible_and_float_like_chunks() -> None:
    rng = random.Random(2)
    text = b"".join(
        f'{{"id": {i}, "text": "sample {rng.random()}"}}\n'.encode() for i in range(9000)
    )
    # float16-looking: random mantissas, a narrow band of exponents (shrinks ~8 %)
    floats = bytes(
        b
        for _ in range(100_000)
        for b in (rng.randbytes(1)[0], rng.choice((0x3B, 0x3C, 0xBB, 0xBC)))
    )
    for data in (text, floats):
        assert len(data) >= 64 * 1024
        codec, stored = compress(data, 1)
        assert codec == CODEC_ZSTD and len(stored) < len(data)
        assert decompress(codec, stored, len(data), "chunk") == data


def test_chunk_compressible_only_outside_the_sample_may_be_kept_raw() -> None:
    """The probe only chooses the codec: either way the bytes round-trip."""
    rng = random.Random(3)
    data = bytearray(rng.randbytes(256 * 1024))
    data[10_000:60_000] = bytes(50_000)  # zeros between the sampled slices
    codec, stored = compress(bytes(data), 1)
    assert decompress(codec, stored, len(data), "chunk") == bytes(data)


def test_memoryview_input_gives_bytes() -> None:
    data = random.Random(4).randbytes(100_000)
    codec, stored = compress(memoryview(data), 1)
    assert codec == CODEC_RAW and isinstance(stored, bytes) and stored == data
    codec, stored = compress(memoryview(TEXT), 1)
    assert codec == CODEC_ZSTD and decompress(codec, stored, len(TEXT), "chunk") == TEXT


# ------------------------------------------------------------- codec 2: byte planes


def _float16_like(rng: random.Random, n: int) -> bytes:
    """Random mantissa bytes interleaved with a narrow band of sign/exponent bytes, as in
    trained float16 weights (zstd alone keeps ~92 % of them)."""
    lows = rng.randbytes(n)
    highs = bytes(rng.choice((0x2F, 0x33, 0x37, 0xAF, 0xB3, 0xB7)) for _ in range(n))
    out = bytearray(2 * n)
    out[0::2] = lows
    out[1::2] = highs
    return bytes(out)


def test_planes_put_even_offsets_first_then_odd() -> None:
    assert bytes(_to_planes(b"abcdef")) == b"acebdf"
    assert bytes(_to_planes(b"abcde")) == b"acebd"
    assert bytes(_to_planes(b"a")) == b"a"


@pytest.mark.parametrize("shift", [0, 1], ids=["aligned", "cut-at-an-odd-offset"])
def test_float16_chunks_are_stored_as_planes_when_the_store_allows_it(shift: int) -> None:
    """Chunks are cut anywhere, so the file's high bytes may sit at even or odd offsets:
    either way the planes separate and beat zstd on the interleaved bytes."""
    data = _float16_like(random.Random(5), 200_000)[shift:]
    plain_codec, plain = compress(data, 1)
    codec, stored = compress(data, 1, planes=True)
    assert plain_codec == CODEC_ZSTD
    assert codec == CODEC_PLANES2
    assert len(stored) < 0.97 * len(plain)
    assert zstandard.frame_content_size(stored) == len(data)
    assert decompress(codec, stored, len(data), "chunk") == data
    assert decompress(codec, memoryview(stored), len(data), "chunk") == data


def test_planes_are_never_written_unless_allowed() -> None:
    data = _float16_like(random.Random(6), 100_000)
    assert compress(data, 1)[0] == CODEC_ZSTD
    assert compress(memoryview(data), 1, planes=False)[0] == CODEC_ZSTD


def test_text_keeps_plain_zstd_with_planes_allowed() -> None:
    rng = random.Random(7)
    text = b"".join(f'{{"id": {i}, "w": "{rng.random()}"}}\n'.encode() for i in range(9000))
    codec, stored = compress(text, 1, planes=True)
    assert codec == CODEC_ZSTD
    assert decompress(codec, stored, len(text), "chunk") == text


def test_small_chunks_are_never_probed_nor_stored_as_planes() -> None:
    data = _float16_like(random.Random(8), 1000)
    codec, stored = compress(data, 1, planes=True)
    assert codec == CODEC_ZSTD
    assert decompress(codec, stored, len(data), "chunk") == data


def test_planes_frame_declared_size_must_match_the_entry() -> None:
    data = _float16_like(random.Random(9), 50_000)
    codec, stored = compress(data, 1, planes=True)
    assert codec == CODEC_PLANES2
    with pytest.raises(CorruptObjectError, match="declares"):
        decompress(CODEC_PLANES2, stored, len(data) - 1, "chunk")
    with pytest.raises(CorruptObjectError, match="does not decode"):
        decompress(CODEC_PLANES2, stored[:-3], len(data), "chunk")


def test_planes_odd_length_round_trips() -> None:
    data = _float16_like(random.Random(10), 40_000) + b"\x01"
    codec, stored = compress(data, 3, planes=True)
    assert codec == CODEC_PLANES2
    assert decompress(codec, stored, len(data), "chunk") == data
