"""Content-defined chunking with FastCDC (2020 variant, ``pyfastcdc``).

Cut points are part of the on-remote format: the same bytes must always be cut at the
same places, or new commits stop deduplicating against old ones. The parameters live in
the store's config (:class:`ChunkerParams`), the implementation version is pinned in
``pyproject.toml``, and ``tests/golden/test_chunk_boundaries.py`` pins cut points.

The chunker does no I/O of its own: it cuts a binary stream (anything with ``readinto``)
and yields memoryviews that are valid only until the next chunk is produced.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, cast

from pyfastcdc import FastCDC, NormalizedChunking

ALGORITHM = "fastcdc2020"


@dataclass(frozen=True, slots=True)
class ChunkerParams:
    """FastCDC parameters, as stored in the config.

    ``avg`` is pyfastcdc's ``avg_size``; the mean chunk length it produces is close to
    ``avg + min`` (the paper's cut-point skipping).
    """

    min: int = 128 * 1024
    avg: int = 512 * 1024
    max: int = 2 * 1024 * 1024
    normalization: int = 1
    seed: int = 0
    algorithm: str = ALGORITHM

    def validate(self) -> None:
        """Raise ``ValueError`` unless pyfastcdc accepts these parameters."""
        if self.algorithm != ALGORITHM:
            raise ValueError(f"unknown chunking algorithm {self.algorithm!r}")
        if not (64 <= self.min <= self.avg <= self.max):
            raise ValueError("chunk sizes must satisfy 64 <= min <= avg <= max")
        if not (256 <= self.avg <= 4 << 20 and 1024 <= self.max <= 16 << 20):
            raise ValueError("chunk sizes out of FastCDC's range")
        if self.min > 1 << 20:
            raise ValueError("min chunk size above 1 MiB")
        if self.normalization not in (0, 1, 2, 3):
            raise ValueError("normalization must be 0..3")


class Chunker:
    """Cuts streams into chunks; one instance per thread (pyfastcdc is not thread-safe)."""

    __slots__ = ("_cdc", "params")

    def __init__(self, params: ChunkerParams) -> None:
        params.validate()
        self.params = params
        self._cdc = FastCDC(
            params.avg,
            min_size=params.min,
            max_size=params.max,
            normalized_chunking=cast(NormalizedChunking, params.normalization),
            seed=params.seed,
        )

    def iter_chunks(self, stream: BinaryIO) -> Iterator[memoryview]:
        """Yield the chunks of ``stream`` in order; each view dies at the next yield."""
        for chunk in self._cdc.cut_stream(stream):
            yield chunk.data

    def iter_buffer(self, data: bytes | memoryview) -> Iterator[memoryview]:
        """Yield the chunks of an in-memory buffer (views into ``data``)."""
        for chunk in self._cdc.cut_buf(data):
            yield chunk.data
