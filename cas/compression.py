"""Per-chunk compression: zstd, or the bytes as they are when zstd does not shrink them.

Codec numbers are part of the pack format (``docs/design.md``):

* ``0`` — raw: stored bytes are the chunk itself;
* ``1`` — zstd: stored bytes are one zstd frame whose content size is recorded.

zstandard releases the GIL, so worker threads compress in parallel. Compressor objects
are not thread-safe, so each thread keeps its own.
"""

from __future__ import annotations

import threading

import zstandard

from cas.errors import CorruptObjectError

CODEC_RAW = 0
CODEC_ZSTD = 1
CODECS = (CODEC_RAW, CODEC_ZSTD)

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


# The incompressibility probe: a chunk of at least PROBE_MIN bytes is first sampled —
# PROBE_SLICES slices of PROBE_SLICE bytes spread over it — and the sample compressed at
# level 1. Unless that shrinks it to at most PROBE_RATIO of its size, the chunk is stored
# raw without compressing it whole. JPEG/PNG images and encrypted or already compressed
# data fail the probe at ~3 % of the cost of compressing the chunk; float weights (which
# shrink ~8 %) and text pass it. The probe only decides; it never changes stored bytes.
PROBE_MIN = 64 * 1024
PROBE_SLICE = 4096
PROBE_SLICES = 4
PROBE_RATIO = 0.97


def _looks_incompressible(data: bytes | memoryview) -> bool:
    n = len(data)
    step = n // PROBE_SLICES
    view = memoryview(data)
    sample = b"".join(view[i * step : i * step + PROBE_SLICE] for i in range(PROBE_SLICES))
    return len(_compressor(1).compress(sample)) > PROBE_RATIO * len(sample)


def compress(data: bytes | memoryview, level: int) -> tuple[int, bytes]:
    """Compress one chunk; return ``(codec, stored_bytes)``.

    The chunk is kept raw (given ``bytes``, that very object, not a copy) when zstd would
    not make it smaller (images, already compressed files) or the probe says it would not.
    """
    if level <= 0 or len(data) < 64:
        return CODEC_RAW, _as_bytes(data)
    if len(data) >= PROBE_MIN and _looks_incompressible(data):
        return CODEC_RAW, _as_bytes(data)
    packed = _compressor(level).compress(data)
    if len(packed) >= len(data):
        return CODEC_RAW, _as_bytes(data)
    return CODEC_ZSTD, packed


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
    if codec == CODEC_ZSTD:
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
        return out
    raise CorruptObjectError(what, f"unknown codec {codec}")
