"""Per-chunk compression: zstd, or the bytes as they are when zstd does not shrink them.

Codec numbers are part of the pack format (``docs/design.md``):

* ``0`` — raw: stored bytes are the chunk itself;
* ``1`` — zstd: stored bytes are one zstd frame whose content size is recorded;
* ``2`` — zstd of the byte planes (element size 2): the chunk's bytes at even offsets,
  then those at odd offsets, as one zstd frame whose content size is recorded. Only
  stores whose config lists the mandatory feature :data:`FEATURE_PLANES2` hold it.

Why codec 2: a float16 or bfloat16 tensor interleaves a byte holding the sign and the
exponent (few distinct values: compressible) with a byte of mantissa (noise). zstd on the
interleaved bytes keeps ~92 % of random-mantissa float16 weights; grouped, the exponent
plane shrinks by a third and the whole chunk to ~84 %, and it costs no more CPU either
way (the noise plane passes through zstd as raw blocks). Chunks are cut at any offset,
so "even" may be the low or the high byte of the file's elements; either way the planes
separate.

zstandard and numpy's copies release the GIL, so worker threads compress in parallel.
Compressor objects are not thread-safe, so each thread keeps its own.
"""

from __future__ import annotations

import threading
from types import ModuleType

import zstandard

from cas.errors import CorruptObjectError

CODEC_RAW = 0
CODEC_ZSTD = 1
CODEC_PLANES2 = 2
CODECS = (CODEC_RAW, CODEC_ZSTD, CODEC_PLANES2)

# The config feature that allows codec 2 (mandatory: a reader without it cannot decode).
FEATURE_PLANES2 = "zstd-planes2"

_local = threading.local()


def _compressor(level: int) -> zstandard.ZstdCompressor:
    cache: dict[int, zstandard.ZstdCompressor] | None = getattr(_local, "c", None)
    if cache is None:
        cache = _local.c = {}
    comp = cache.get(level)
    if comp is None:
        comp = cache[level] = zstandard.ZstdCompressor(level=level, write_content_size=True)
    return comp


def _decompressor() -> zstandard.ZstdDecompressor:
    d: zstandard.ZstdDecompressor | None = getattr(_local, "d", None)
    if d is None:
        d = _local.d = zstandard.ZstdDecompressor()
    return d


# The probe: a chunk of at least PROBE_MIN bytes is first sampled — PROBE_SLICES slices
# of PROBE_SLICE bytes spread over it, each starting at an even offset — and the sample
# compressed at level 1. Unless that shrinks it to at most PROBE_RATIO of its size, the
# chunk is stored raw without compressing it whole. JPEG/PNG images and encrypted or
# already compressed data fail the probe at ~3 % of the cost of compressing the chunk;
# float weights and text pass it. Where codec 2 is allowed and the sample kept more than
# PLANES_TRY of its size (text shrinks to under half; numbers do not), its two byte planes
# are compressed too, and chosen when they save at least PLANES_GAIN more of the chunk.
# The probe only decides; it never changes stored bytes.
PROBE_MIN = 64 * 1024
PROBE_SLICE = 4096
PROBE_SLICES = 4
PROBE_RATIO = 0.97
PLANES_TRY = 0.6
PLANES_GAIN = 0.02


def _probe(data: bytes | memoryview, planes: bool) -> int:
    """The codec a large chunk should get, judged on a sample."""
    n = len(data)
    step = (n // PROBE_SLICES) & ~1  # even: the sample's planes are the chunk's planes
    view = memoryview(data)
    sample = b"".join(view[i * step : i * step + PROBE_SLICE] for i in range(PROBE_SLICES))
    size = len(sample)
    plain = len(_compressor(1).compress(sample))
    if planes and plain > PLANES_TRY * size:
        # Each plane on its own, as in a whole chunk, whose planes fill separate zstd
        # blocks (128 KiB); one 16 KiB sample would mix them in one block's entropy table.
        grouped = len(_compressor(1).compress(sample[0::2])) + len(
            _compressor(1).compress(sample[1::2])
        )
        if grouped <= plain - PLANES_GAIN * size:
            return CODEC_PLANES2 if grouped <= PROBE_RATIO * size else CODEC_RAW
    return CODEC_ZSTD if plain <= PROBE_RATIO * size else CODEC_RAW


def compress(data: bytes | memoryview, level: int, *, planes: bool = False) -> tuple[int, bytes]:
    """Compress one chunk; return ``(codec, stored_bytes)``.

    The chunk is kept raw (given ``bytes``, that very object, not a copy) when zstd would
    not make it smaller (images, already compressed files) or the probe says it would not.
    With ``planes`` (the store has :data:`FEATURE_PLANES2`) a chunk of 16-bit numbers is
    stored as codec 2 when the probe finds that its planes compress better.
    """
    if level <= 0 or len(data) < 64:
        return CODEC_RAW, _as_bytes(data)
    codec = _probe(data, planes) if len(data) >= PROBE_MIN else CODEC_ZSTD
    if codec == CODEC_RAW:
        return CODEC_RAW, _as_bytes(data)
    packed = _compressor(level).compress(_to_planes(data) if codec == CODEC_PLANES2 else data)
    if len(packed) >= len(data):
        return CODEC_RAW, _as_bytes(data)
    return codec, packed


def _numpy() -> ModuleType:
    """numpy, imported on first use: it costs ~0.1 s, which a CLI command that
    never meets a codec-2 chunk should not pay."""
    import numpy

    return numpy


def _to_planes(data: bytes | memoryview) -> memoryview:
    """The bytes at even offsets, then those at odd offsets (a fresh buffer)."""
    np = _numpy()
    a = np.frombuffer(data, dtype=np.uint8)
    half = (len(a) + 1) // 2
    out = np.empty(len(a), dtype=np.uint8)
    out[:half] = a[0::2]
    out[half:] = a[1::2]
    return memoryview(out)


def _from_planes(planes: bytes) -> bytes:
    """Undo :func:`_to_planes`."""
    np = _numpy()
    b = np.frombuffer(planes, dtype=np.uint8)
    half = (len(b) + 1) // 2
    out = np.empty(len(b), dtype=np.uint8)
    out[0::2] = b[:half]
    out[1::2] = b[half:]
    return bytes(out.data)


def _as_bytes(data: bytes | memoryview) -> bytes:
    return data if isinstance(data, bytes) else bytes(data)


def decompress(codec: int, stored: bytes | memoryview, raw_len: int, what: str) -> bytes:
    """Undo :func:`compress`; the result has exactly ``raw_len`` bytes or it is an error.

    ``raw_len`` comes from the pack entry and is checked before any allocation, so a
    damaged frame cannot make us allocate more than the entry promised.
    """
    if codec == CODEC_RAW:
        if len(stored) != raw_len:
            raise CorruptObjectError(what, f"raw chunk of {len(stored)} bytes, expected {raw_len}")
        return bytes(stored)
    if codec in (CODEC_ZSTD, CODEC_PLANES2):
        try:
            # Trust the frame's declared size only after comparing it with the entry's.
            declared = zstandard.frame_content_size(stored)
            if declared != raw_len:
                raise CorruptObjectError(
                    what, f"zstd frame declares {declared} bytes, expected {raw_len}"
                )
            out = _decompressor().decompress(stored, max_output_size=raw_len)
        except zstandard.ZstdError as exc:
            raise CorruptObjectError(what, f"zstd frame does not decode ({exc})") from exc
        if len(out) != raw_len:
            raise CorruptObjectError(what, f"decoded {len(out)} bytes, expected {raw_len}")
        return out if codec == CODEC_ZSTD else _from_planes(out)
    raise CorruptObjectError(what, f"unknown codec {codec}")
