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


def compress(data: bytes | memoryview, level: int) -> tuple[int, bytes]:
    """Compress one chunk; return ``(codec, stored_bytes)``.

    The chunk is kept raw when zstd would not make it smaller (images, float weights).
    """
    if level <= 0 or len(data) < 64:
        return CODEC_RAW, bytes(data)
    packed = _compressor(level).compress(data)
    if len(packed) >= len(data):
        return CODEC_RAW, bytes(data)
    return CODEC_ZSTD, packed


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
