"""The backend contract: a narrow protocol that moves bytes under opaque keys.

A backend knows nothing about packs, refs or manifests. Keys are relative,
``/``-separated strings of lower-case ASCII letters, digits and ``._-%``; directories
are an implementation detail of folder backends. Every backend follows the contract
documented on :class:`Backend`; ``tests/backends/contract.py`` checks it for each one.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from cas.errors import ShortReadError

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
        consistent_listing: a listing right after a write shows that write.
        ordered_visibility: once a write has returned, it is visible to every reader
            on every machine, so objects become visible in the order they were written
            (S3 and its peers). A folder backend cannot promise it: the folder may be a
            Drive mount, whose uploads to other machines happen later, in any order.
        max_connections: how many operations may usefully run at once.
        cache_data: keeping copies of packs in the local cache pays. False for a folder
            on a local disk, which is read as fast as the cache itself: checkout then
            writes each restored byte once (into the worktree), not twice.
    """

    atomic_replace: bool = True
    conditional_write: bool = True
    consistent_listing: bool = True
    ordered_visibility: bool = False
    max_connections: int = 4
    cache_data: bool = True


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

        Raises:
            AlreadyExistsError: ``if_absent`` and the key exists.
        """
        ...

    def list(self, prefix: str) -> Iterator[KeyInfo]:
        """Yield every key under ``prefix`` (a ``/``-terminated folder or ``""``).

        Temporary names and names that are not valid keys are never yielded; the
        order is unspecified.
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
