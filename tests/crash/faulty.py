"""Fault-injecting wrappers around a real backend (each overrides only what it breaks).

They model what a real folder or a Drive mount does on a bad day and cannot be made to do
on demand: bit rot on read, short reads, a failing Nth write, transient "Transport
endpoint is not connected" errors, and DriveFS's late, out-of-order visibility with
zero-byte ghosts and ``name (1)`` duplicates.
"""

from __future__ import annotations

import dataclasses
import errno
import threading
from collections.abc import Callable, Iterator

from cas.errors import BackendError, BackendUnavailableError, ObjectNotFoundError
from cas.store.base import Backend, Capabilities, KeyInfo, resolve_range


class Wrapper:
    """Passes everything through to ``inner``."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.lock = threading.Lock()

    @property
    def location(self) -> str:
        return self.inner.location

    @property
    def capabilities(self) -> Capabilities:
        return self.inner.capabilities

    def read(self, key: str) -> bytes:
        return self.inner.read(key)

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        return self.inner.read_range(key, offset, length)

    def write(self, key: str, data: bytes, *, if_absent: bool = False) -> None:
        self.inner.write(key, data, if_absent=if_absent)

    def list(self, prefix: str) -> Iterator[KeyInfo]:
        return self.inner.list(prefix)

    def list_keys(self, prefix: str) -> Iterator[str]:
        return (info.key for info in self.list(prefix))  # whatever list() makes of it

    def stat(self, key: str) -> KeyInfo:
        return self.inner.stat(key)

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def close(self) -> None:
        self.inner.close()


class NoCreateOnly(Wrapper):
    """A folder as a Drive mount shows it: the store does not enforce create-only writes
    (no hard links; DriveFS uploads each machine's files on its own), so racing ref
    updates both land and the branch diverges."""

    @property
    def capabilities(self) -> Capabilities:
        return dataclasses.replace(
            self.inner.capabilities, conditional_write=False, ordered_visibility=False
        )


class FlipByteOnRead(Wrapper):
    """Every read of a key under ``prefix`` comes back with one byte flipped (bit rot)."""

    def __init__(self, inner: Backend, prefix: str = "packs/") -> None:
        super().__init__(inner)
        self.prefix = prefix

    def _flip(self, key: str, data: bytes) -> bytes:
        if not key.startswith(self.prefix) or not data:
            return data
        b = bytearray(data)
        b[len(b) // 2] ^= 0x40
        return bytes(b)

    def read(self, key: str) -> bytes:
        return self._flip(key, self.inner.read(key))

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        return self._flip(key, self.inner.read_range(key, offset, length))


class TruncatingReads(Wrapper):
    """Reads under ``prefix`` silently return fewer bytes (a broken contract)."""

    def __init__(self, inner: Backend, prefix: str = "packs/") -> None:
        super().__init__(inner)
        self.prefix = prefix

    def read(self, key: str) -> bytes:
        data = self.inner.read(key)
        return data[: len(data) // 2] if key.startswith(self.prefix) else data

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        data = self.inner.read_range(key, offset, length)
        return data[: max(0, len(data) - 7)] if key.startswith(self.prefix) else data


class FailNthWrite(Wrapper):
    """The ``n``-th write (1-based) raises ``error``; the others go through."""

    def __init__(self, inner: Backend, n: int, error: Exception) -> None:
        super().__init__(inner)
        self.n = n
        self.error = error
        self.writes = 0

    def write(self, key: str, data: bytes, *, if_absent: bool = False) -> None:
        with self.lock:
            self.writes += 1
            fail = self.writes == self.n
        if fail:
            raise self.error
        self.inner.write(key, data, if_absent=if_absent)


class FailWritesUnder(Wrapper):
    """Every write of a key under ``prefix`` raises ``error``."""

    def __init__(self, inner: Backend, prefix: str, error: Exception) -> None:
        super().__init__(inner)
        self.prefix = prefix
        self.error = error

    def write(self, key: str, data: bytes, *, if_absent: bool = False) -> None:
        if key.startswith(self.prefix):
            raise self.error
        self.inner.write(key, data, if_absent=if_absent)


class Flaky(Wrapper):
    """Each operation on a key fails ``times`` times with a transient error, then works.

    Like a Drive mount whose FUSE daemon drops ("Transport endpoint is not connected",
    errno 107) and comes back.
    """

    def __init__(self, inner: Backend, times: int = 2) -> None:
        super().__init__(inner)
        self.times = times
        self.failures: dict[tuple[str, str], int] = {}
        self.injected = 0

    def _maybe_fail(self, op: str, key: str) -> None:
        with self.lock:
            n = self.failures.get((op, key), 0)
            if n < self.times:
                self.failures[(op, key)] = n + 1
                self.injected += 1
                raise BackendUnavailableError(
                    f"[Errno {errno.ENOTCONN}] Transport endpoint is not connected: {key}"
                )

    def read(self, key: str) -> bytes:
        self._maybe_fail("read", key)
        return self.inner.read(key)

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        self._maybe_fail(f"range{offset}:{length}", key)
        return self.inner.read_range(key, offset, length)

    def write(self, key: str, data: bytes, *, if_absent: bool = False) -> None:
        self._maybe_fail("write", key)
        self.inner.write(key, data, if_absent=if_absent)

    def list(self, prefix: str) -> Iterator[KeyInfo]:
        self._maybe_fail("list", prefix)
        return self.inner.list(prefix)

    def stat(self, key: str) -> KeyInfo:
        self._maybe_fail("stat", key)
        return self.inner.stat(key)


class DriveView(Wrapper):
    """What another runtime sees of a Drive folder while uploads are still in flight.

    Keys for which ``hidden(key)`` is true do not exist yet for this reader; keys for
    which ``ghost(key)`` is true exist as zero-byte files (DriveFS creates the entry
    before the content arrives).
    """

    def __init__(
        self,
        inner: Backend,
        hidden: Callable[[str], bool] = lambda _k: False,
        ghost: Callable[[str], bool] = lambda _k: False,
    ) -> None:
        super().__init__(inner)
        self.hidden = hidden
        self.ghost = ghost

    @property
    def capabilities(self) -> Capabilities:
        # However the folder behind it is stored, Drive shows writes late and in any order.
        return dataclasses.replace(self.inner.capabilities, ordered_visibility=False)

    def read(self, key: str) -> bytes:
        if self.hidden(key):
            raise ObjectNotFoundError(key)
        return b"" if self.ghost(key) else self.inner.read(key)

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        if self.hidden(key):
            raise ObjectNotFoundError(key)
        if self.ghost(key):
            resolve_range(key, 0, offset, length)  # raises ShortReadError
        return self.inner.read_range(key, offset, length)

    def list(self, prefix: str) -> Iterator[KeyInfo]:
        for info in self.inner.list(prefix):
            if self.hidden(info.key):
                continue
            yield KeyInfo(info.key, 0, "ghost") if self.ghost(info.key) else info

    def stat(self, key: str) -> KeyInfo:
        if self.hidden(key):
            raise ObjectNotFoundError(key)
        info = self.inner.stat(key)
        return KeyInfo(key, 0, "ghost") if self.ghost(key) else info

    def write(self, key: str, data: bytes, *, if_absent: bool = False) -> None:
        raise BackendError("this view is read-only")
