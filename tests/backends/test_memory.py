"""The backend contract for MemoryBackend."""

from __future__ import annotations

import pytest

from cas.store.memory import MemoryBackend
from tests.backends.contract import BackendContract, CompareAndSwapContract


class MemoryHarness:
    """Reaches around a MemoryBackend through its dict (it has no other storage)."""

    same_size_rewrite_changes_version = True

    def __init__(self) -> None:
        self.backend: MemoryBackend | None = None

    def make(self) -> MemoryBackend:
        self.backend = MemoryBackend("contract")
        return self.backend

    def raw_write(self, key: str, data: bytes) -> None:
        assert self.backend is not None
        self.backend._data[key] = data
        self.backend._versions[key] = self.backend._versions.get(key, 0) + 1

    def raw_read(self, key: str) -> bytes | None:
        assert self.backend is not None
        return self.backend._data.get(key)

    def plant_temp(self, key: str) -> bool:
        return False  # writes are whole dict assignments: there is no temp upload


@pytest.fixture
def harness() -> MemoryHarness:
    return MemoryHarness()


class TestMemoryBackend(BackendContract, CompareAndSwapContract):
    pass


def test_instances_are_separate_stores() -> None:
    a, b = MemoryBackend("a"), MemoryBackend("b")
    a.write("k", b"x")
    assert list(b.list("")) == []
    assert a.location == "memory://a"


def test_stored_value_is_a_copy() -> None:
    backend = MemoryBackend()
    data = bytearray(b"abc")
    backend.write("k", data)  # type: ignore[arg-type]
    data[0] = 0
    assert backend.read("k") == b"abc"
