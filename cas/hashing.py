"""BLAKE3 hashing; the only module that imports ``blake3``.

blake3 releases the GIL while hashing, so worker threads hash in parallel.
"""

from __future__ import annotations

from blake3 import blake3

from cas.ids import ObjectId

# Hash large buffers with blake3's own threads only above this size: below it the
# thread hand-off costs more than it saves.
_MULTITHREAD_THRESHOLD = 8 << 20


def hash_bytes(data: bytes | bytearray | memoryview) -> ObjectId:
    """Return the BLAKE3 id of ``data``."""
    if len(data) >= _MULTITHREAD_THRESHOLD:
        return ObjectId(blake3(data, max_threads=blake3.AUTO).digest())
    return ObjectId(blake3(data).digest())


class StreamHasher:
    """Incremental BLAKE3 over a sequence of buffers."""

    __slots__ = ("_h",)

    def __init__(self) -> None:
        self._h = blake3()

    def update(self, data: bytes | bytearray | memoryview) -> None:
        """Feed the next bytes."""
        self._h.update(data)

    def digest(self) -> ObjectId:
        """The id of everything fed so far."""
        return ObjectId(self._h.digest())


EMPTY_ID = hash_bytes(b"")
