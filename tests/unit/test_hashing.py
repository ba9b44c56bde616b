"""BLAKE3 hashing: known vectors, streaming equals one-shot, big buffers hash the same."""

from __future__ import annotations

import pytest

from cas.hashing import _MULTITHREAD_THRESHOLD, EMPTY_ID, StreamHasher, hash_bytes
from cas.ids import ObjectId

# Official BLAKE3 test vectors (default hash, 32-byte output).
EMPTY_HEX = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
ABC_HEX = "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"


def test_known_vectors() -> None:
    assert hash_bytes(b"").hex() == EMPTY_HEX
    assert hash_bytes(b"abc").hex() == ABC_HEX
    assert EMPTY_ID.hex() == EMPTY_HEX
    assert isinstance(hash_bytes(b"abc"), ObjectId)


@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview])
def test_accepts_any_buffer(wrap: type) -> None:
    assert hash_bytes(wrap(b"abc")).hex() == ABC_HEX


def test_stream_equals_one_shot() -> None:
    data = bytes(range(256)) * 100
    h = StreamHasher()
    for i in range(0, len(data), 777):
        h.update(memoryview(data)[i : i + 777])
    assert h.digest() == hash_bytes(data)
    assert StreamHasher().digest() == EMPTY_ID


def test_multithreaded_path_gives_the_same_id() -> None:
    data = b"\x5a" * _MULTITHREAD_THRESHOLD
    h = StreamHasher()
    h.update(data)
    assert hash_bytes(data) == h.digest()
