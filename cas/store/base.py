"""The backend contract: a narrow protocol that moves bytes under opaque keys.

A backend knows nothing about packs, refs or manifests. Keys are relative,
``/``-separated strings of lower-case ASCII letters, digits and ``._-%``; directories
are an implementation detail of folder backends. Every backend follows the contract
documented on :class:`Backend`; ``tests/backends/contract.py`` checks it for each one.
"""

from __future__ import annotations

import errno
import io
import os
import re
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from cas.errors import BackendError, NoSpaceError, ShortReadError

TEMP_SUFFIX = ".cas-tmp"
_KEY_RE = re.compile(r"^[a-z0-9._%-]+(/[a-z0-9._%-]+)*$")


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """A listed or stat'ed key: its name, its size and an opaque version token."""

    key: str
    size: int
    version: str = ""


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a backend guarantees beyond the base contract.

    Attributes:
        atomic_replace: a write replaces an existing key atomically.
        conditional_write: ``if_absent`` is enforced by the store itself, so two
            racing writers of one key cannot both succeed.
        compare_and_swap: the backend's ``write`` also takes ``if_version`` and the store
            itself enforces it (S3's ``If-Match``): see :func:`write_if_version`. Refs do
            not need it (docs/decisions/002 and 005).
        consistent_listing: a listing right after a write shows that write.
        ordered_visibility: once a write has returned, it is visible to every reader
            on every machine, so objects become visible in the order they were written
            (S3 and its peers). A folder backend cannot promise it: the folder may be a
            Drive mount, whose uploads to other machines happen later, in any order.
        max_connections: how many operations may usefully run at once.
        max_uploads: how many values written with :meth:`Backend.begin_write` may
            usefully be on their way at once (None: ``max_connections``). Only where
            they are not held in memory (``values_in_memory`` false).
        cache_data: keeping copies of packs in the local cache pays. False for a folder
            on a local disk, which is read as fast as the cache itself: checkout then
            writes each restored byte once (into the worktree), not twice.
        streaming_write: :meth:`Backend.begin_write` sends bytes to the store as they
            are written. Only a folder on a local disk: a transient failure halfway (a
            dropped Drive mount) could not be retried without the bytes, so elsewhere a
            value is gathered first (in memory, or in a local spool file) and written
            whole at commit.
        values_in_memory: :meth:`Backend.begin_write` holds a value in memory whole until
            its commit (a :class:`BufferedWrite`), so only a few values may be on their
            way at once. False where values stream to the store or to a
            :class:`SpooledWrite`'s file on the local disk: then up to ``max_uploads``
            may be on their way, their memory bounded by a buffer.
    """

    atomic_replace: bool = True
    conditional_write: bool = True
    compare_and_swap: bool = False
    consistent_listing: bool = True
    ordered_visibility: bool = False
    max_connections: int = 4
    max_uploads: int | None = None
    cache_data: bool = True
    streaming_write: bool = False
    values_in_memory: bool = True


def is_valid_key(key: str) -> bool:
    """True for a key the backends accept (and ``list`` may return)."""
    return (
        bool(_KEY_RE.match(key))
        and TEMP_SUFFIX not in key
        and all(part not in (".", "..") for part in key.split("/"))
    )


def validate_key(key: str) -> str:
    """Return ``key`` or raise ``ValueError`` (a bug, never user input) if it is invalid."""
    if not is_valid_key(key):
        raise ValueError(f"invalid backend key {key!r}")
    return key


def validate_prefix(prefix: str) -> str:
    """Return a ``list`` prefix (``""`` or a valid key plus ``/``), else ``ValueError``."""
    if prefix and not (prefix.endswith("/") and is_valid_key(prefix[:-1])):
        raise ValueError(f"invalid list prefix {prefix!r}: '' or a folder ending in '/'")
    return prefix


class PendingWrite(Protocol):
    """A value being written whose key comes last (see :meth:`Backend.begin_write`)."""

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Append ``data``."""
        ...

    def commit(
        self, key: str, *, if_absent: bool = False, before_publish: Callable[[], None] | None = None
    ) -> None:
        """Store everything written under ``key``, atomically and durably, as
        :meth:`Backend.write` would.

        ``before_publish``, if given, is called (possibly more than once, on retries)
        after the bytes are sent and before the value becomes visible under ``key`` (the
        rename on a folder; on an object store, where sending is publishing, before the
        request); if it raises, nothing is published. A caller uses it to have something
        else durable first while the bytes travel.

        Raises:
            AlreadyExistsError: ``if_absent`` and the key exists (the value is dropped).
        """
        ...

    def abort(self) -> None:
        """Drop the value; harmless after ``commit`` or a failed ``commit``."""
        ...


class BufferedWrite:
    """A :class:`PendingWrite` that gathers the value in memory and stores it with one
    :meth:`Backend.write` at ``commit`` (so that write's retries and atomicity apply).

    The value is held once: each piece is appended to one buffer as it comes (a large
    buffer grows by remapping its pages, not by copying them) and handed to ``write``
    as it is.
    """

    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self._buf = bytearray()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._buf += data

    def commit(
        self, key: str, *, if_absent: bool = False, before_publish: Callable[[], None] | None = None
    ) -> None:
        data, self._buf = self._buf, bytearray()
        if before_publish is not None:
            before_publish()
        self._backend.write(key, data, if_absent=if_absent)

    def abort(self) -> None:
        self._buf = bytearray()


# A spooled value is read back in pieces of this size when it is stored.
SPOOL_PIECE = 1 << 20


class Spool:
    """The bytes of a :class:`SpooledWrite`: an anonymous file on the local disk (no
    name, so it is gone with the process, even one killed), read back from its start as
    often as a store needs to retry."""

    def __init__(self, what: str) -> None:
        self._what = what
        self._lock = threading.Lock()
        self.size = 0
        try:
            # Kept open for the spool's life; closed by close().
            self._file = tempfile.TemporaryFile(prefix="cas-spool-")  # noqa: SIM115
        except OSError as exc:
            raise self._error(exc) from exc
        self._fd = self._file.fileno()

    def _error(self, exc: OSError) -> BackendError:
        where = f"a local spool file for {self._what} in {tempfile.gettempdir()}"
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return NoSpaceError(
                f"no space left for {where}",
                hint="free space on the local disk, or point TMPDIR at a folder with room",
            )
        return BackendError(f"failed to write {where}: {exc}")

    def append(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        try:
            while view:
                n = os.pwrite(self._fd, view, self.size)
                self.size += n
                view = view[n:]
        except OSError as exc:
            raise self._error(exc) from exc

    def pieces(self) -> Iterator[bytes]:
        """The bytes from the start, ``SPOOL_PIECE`` at a time."""
        piece = SPOOL_PIECE
        offset = 0
        while offset < self.size:
            data = self.read_at(offset, piece)
            if not data:
                raise BackendError(f"{self._what}: its local spool file ended early")
            offset += len(data)
            yield data

    def read_at(self, offset: int, length: int) -> bytes:
        """Up to ``length`` bytes from ``offset`` (fewer only at the end)."""
        with self._lock:  # never read through a descriptor closed (and reused) meanwhile
            if self._file.closed:
                raise BackendError(f"{self._what}: its local spool file was dropped")
            try:
                return os.pread(self._fd, max(0, min(length, self.size - offset)), offset)
            except OSError as exc:
                raise self._error(exc) from exc

    def reader(self) -> io.BufferedReader:
        """A file object over the bytes from the start, with its own position (an SDK
        that streams a request body from a file, and seeks back to retry, reads it)."""
        return io.BufferedReader(_SpoolReader(self), SPOOL_PIECE)

    def close(self) -> None:
        with self._lock:
            self._file.close()


class _SpoolReader(io.RawIOBase):
    """A seekable read-only view of a :class:`Spool` (pread: no shared file offset)."""

    def __init__(self, spool: Spool) -> None:
        self._spool = spool
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if whence == os.SEEK_CUR:
            offset += self._pos
        elif whence == os.SEEK_END:
            offset += self._spool.size
        elif whence != os.SEEK_SET:
            raise ValueError(f"invalid whence {whence}")
        if offset < 0:
            raise ValueError("negative seek position")
        self._pos = offset
        return offset

    def readinto(self, buffer: Any) -> int:
        if self.closed:
            raise ValueError("read of a closed spool reader")
        data = self._spool.read_at(self._pos, len(buffer))
        n = len(data)
        buffer[:n] = data
        self._pos += n
        return n


class SpooledWrite:
    """A :class:`PendingWrite` that gathers the value in a :class:`Spool` on the local
    disk and hands it at ``commit`` to ``store(key, spool, if_absent)``, which writes it
    to the store from the spool's start.

    Memory stays at one piece however large the value and however many values are on
    their way; and ``commit`` may be called again after a transient failure (it reads
    the spool afresh), so :class:`~cas.store.retry.RetryingBackend` retries it.
    """

    def __init__(
        self,
        store: Callable[[str, Spool, bool, Callable[[], None] | None], None],
        what: str,
    ) -> None:
        self._store = store
        self._spool: Spool | None = Spool(what)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._spool is None:
            raise ValueError("write to a committed or aborted value")
        self._spool.append(data)

    def commit(
        self, key: str, *, if_absent: bool = False, before_publish: Callable[[], None] | None = None
    ) -> None:
        if self._spool is None:
            raise ValueError("commit of a committed or aborted value")
        self._store(key, self._spool, if_absent, before_publish)
        self.abort()

    def abort(self) -> None:
        if self._spool is not None:
            self._spool.close()
            self._spool = None


def write_if_version(backend: Backend, key: str, data: bytes | bytearray, version: str) -> None:
    """Compare-and-swap: store ``data`` under ``key`` only if the key's current version
    token (from :meth:`Backend.stat` or :meth:`Backend.list`) is ``version``.

    Only where ``backend.capabilities.compare_and_swap``: such a backend's ``write``
    takes ``if_version``, and the store checks it and writes in one step, so of two
    writers holding the same version only one succeeds. A retried write whose first
    attempt landed unseen fails, like a lost race: read the key back to tell them apart.

    Raises:
        PreconditionFailedError: the key has another version, or no longer exists.
        ValueError: the backend has no compare-and-swap (a bug: ask the capability).
    """
    if not backend.capabilities.compare_and_swap:
        raise ValueError(f"{backend.location} has no compare-and-swap")
    if not version:
        raise ValueError("write_if_version needs a version token from stat() or list()")
    write: Any = backend.write  # the keyword exists where the capability says so
    write(key, data, if_version=version)


def begin_write(backend: Backend) -> PendingWrite:
    """``backend.begin_write()`` where its class defines one, else a
    :class:`BufferedWrite` that ends in ``backend.write``.

    The class is asked, not the object: a wrapper that overrides ``write`` and hands
    every other attribute to the backend it wraps (``__getattr__``) must not have its
    ``write`` bypassed by the inner backend's stream.
    """
    native = getattr(type(backend), "begin_write", None)
    return native(backend) if native is not None else BufferedWrite(backend)


def make_folders(backend: Backend, prefixes: Iterable[str]) -> None:
    """Have ``backend`` create the folders of these ``/``-terminated prefixes now, where
    its class defines ``make_folders`` (a folder backend), so that the first write
    under each does not pay for creating it; elsewhere nothing (an object store has no
    folders). Best effort: a folder that cannot be made now is made by the write that
    needs it, or that write reports the error."""
    native = getattr(type(backend), "make_folders", None)
    if native is not None:
        native(backend, [validate_prefix(p) for p in prefixes if p])


@runtime_checkable
class Backend(Protocol):
    """Byte storage under keys.

    Errors are the :class:`~cas.errors.BackendError` family plus
    :class:`~cas.errors.ObjectNotFoundError`, :class:`~cas.errors.AlreadyExistsError` and
    :class:`~cas.errors.ShortReadError`; a backend translates its native errors once.
    """

    @property
    def location(self) -> str:
        """A human-readable name of the store (path or URL) for messages."""
        ...

    @property
    def capabilities(self) -> Capabilities:
        """What this backend guarantees."""
        ...

    def read(self, key: str) -> bytes:
        """Return the whole value of ``key``.

        Raises:
            ObjectNotFoundError: the key does not exist.
        """
        ...

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        """Return exactly ``length`` bytes of ``key`` starting at ``offset``.

        A negative ``offset`` counts from the end of the value (``-n`` reads the last
        ``n`` bytes when ``length == n``). A range that is not wholly inside the value is
        an error, never a silently short result.

        Raises:
            ObjectNotFoundError: the key does not exist.
            ShortReadError: the range extends past the end of the value.
        """
        ...

    def write(self, key: str, data: bytes | bytearray, *, if_absent: bool = False) -> None:
        """Store ``data`` under ``key`` atomically: readers see all of it or none.

        With ``if_absent`` the write fails when the key exists (create-only); where
        ``capabilities.conditional_write`` is false this is checked, not enforced.
        Where ``capabilities.compare_and_swap`` is true, ``write`` also takes
        ``if_version`` (see :func:`write_if_version`).

        Raises:
            AlreadyExistsError: ``if_absent`` and the key exists.
        """
        ...

    def begin_write(self) -> PendingWrite:
        """Start a value whose key is known only at its end (a pack, named by the hash
        of its bytes): append to it with ``write``, then ``commit`` it under its key, or
        ``abort`` it. Until committed it is invisible; a crash leaves at most a temporary
        name. Without ``streaming_write`` the value is gathered first: in a
        :class:`SpooledWrite`'s file on the local disk (a Drive mount, S3), or in a
        :class:`BufferedWrite` in memory (``values_in_memory``).
        """
        ...

    def list(self, prefix: str) -> Iterator[KeyInfo]:
        """Yield every key under ``prefix`` (a ``/``-terminated folder or ``""``).

        Temporary names and names that are not valid keys are never yielded; the
        order is unspecified.
        """
        ...

    def list_keys(self, prefix: str) -> Iterator[str]:
        """The keys :meth:`list` would yield, without their sizes and versions.

        For a caller that needs only names (ref entries, index segments): a folder store
        then saves a stat per key, a round trip each on a Drive mount.
        """
        ...

    def stat(self, key: str) -> KeyInfo:
        """Size and version token of ``key``.

        Raises:
            ObjectNotFoundError: the key does not exist.
        """
        ...

    def delete(self, key: str) -> None:
        """Remove ``key``; removing a missing key is not an error."""
        ...

    def close(self) -> None:
        """Release handles and clients."""
        ...


def resolve_range(key: str, size: int, offset: int, length: int) -> tuple[int, int]:
    """Turn a possibly negative offset into ``(start, end)`` inside ``size`` or raise."""
    if length < 0:
        raise ValueError("length must not be negative")
    start = size + offset if offset < 0 else offset
    if start < 0 or start + length > size:
        available = max(0, min(size, start + length) - max(start, 0))
        raise ShortReadError(key, length, available)
    return start, start + length
