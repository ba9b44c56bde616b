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

# A file up to this size is read whole (one read, one buffer of its own size) and cut in
# memory. pyfastcdc's stream chunker allocates a zeroed buffer of twice the maximum chunk
# size (4 MiB by default) for every stream: for a 100 KB image that costs 40 times the
# file, and on a folder of small images it was most of a commit's CPU. The cut points are
# the same either way (tests/unit/test_chunking.py).
WHOLE_READ_LIMIT = 8 << 20


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

    def iter_file(self, f: BinaryIO, size_hint: int = -1) -> Iterator[memoryview]:
        """Yield the chunks of an open file from its current position.

        A file of at most ``WHOLE_READ_LIMIT`` bytes is read whole and cut in memory
        (views into one buffer); a larger one is streamed. ``size_hint`` (the size seen by
        ``lstat``) only saves a small read at the start of a file known to be large; the
        bytes cut are always those read, up to the end of the file.
        """
        if size_hint <= WHOLE_READ_LIMIT:
            start = f.tell()
            # One byte more than expected tells the end was reached (the buffer is sized
            # to the file: a larger one would be allocated, then shrunk, for every file).
            want = WHOLE_READ_LIMIT + 1 if size_hint < 0 else size_hint + 1
            head = f.read(want)
            if len(head) < want:
                yield from self.iter_buffer(head)
                return
            f.seek(start)  # it grew since it was seen: stream it instead
        yield from self.iter_chunks(f)

    def iter_buffer(self, data: bytes | memoryview) -> Iterator[memoryview]:
        """Yield the chunks of an in-memory buffer (views into ``data``)."""
        for chunk in self._cdc.cut_buf(data):
            yield chunk.data
