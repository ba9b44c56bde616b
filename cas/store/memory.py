"""An in-memory backend for tests and examples; one instance is one store."""

from __future__ import annotations

import threading
from collections.abc import Iterator

from cas.errors import AlreadyExistsError, ObjectNotFoundError, PreconditionFailedError
from cas.store.base import (
    BufferedWrite,
    Capabilities,
    KeyInfo,
    PendingWrite,
    resolve_range,
    validate_key,
    validate_prefix,
)


class MemoryBackend:
    """A dict of keys to bytes behind a lock."""

    def __init__(self, name: str = "memory") -> None:
        self._data: dict[str, bytes] = {}
        self._versions: dict[str, int] = {}
        self._lock = threading.Lock()
        self._name = name

    @property
    def location(self) -> str:
        return f"memory://{self._name}"

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(max_connections=8, compare_and_swap=True)

    def read(self, key: str) -> bytes:
        validate_key(key)
        with self._lock:
            try:
                return self._data[key]
            except KeyError:
                raise ObjectNotFoundError(key) from None

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        data = self.read(key)
        start, end = resolve_range(key, len(data), offset, length)
        return data[start:end]

    def write(
        self,
        key: str,
        data: bytes | bytearray,
        *,
        if_absent: bool = False,
        if_version: str | None = None,
    ) -> None:
        validate_key(key)
        with self._lock:
            if if_absent and key in self._data:
                raise AlreadyExistsError(key)
            if if_version is not None and (
                key not in self._data or str(self._versions[key]) != if_version
            ):
                raise PreconditionFailedError(f"{key} changed: its version is not {if_version}")
            self._data[key] = bytes(data)
            self._versions[key] = self._versions.get(key, 0) + 1

    def begin_write(self) -> PendingWrite:
        return BufferedWrite(self)

    def list_keys(self, prefix: str) -> Iterator[str]:
        for info in self.list(prefix):
            yield info.key

    def list(self, prefix: str) -> Iterator[KeyInfo]:
        validate_prefix(prefix)
        with self._lock:
            items = [(k, len(v)) for k, v in self._data.items() if k.startswith(prefix)]
        for k, size in items:
            yield KeyInfo(k, size, str(self._versions[k]))

    def stat(self, key: str) -> KeyInfo:
        validate_key(key)
        with self._lock:
            if key not in self._data:
                raise ObjectNotFoundError(key)
            return KeyInfo(key, len(self._data[key]), str(self._versions[key]))

    def delete(self, key: str) -> None:
        validate_key(key)
        with self._lock:
            self._data.pop(key, None)

    def close(self) -> None:
        pass
