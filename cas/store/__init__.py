"""Storage backends and ``open_backend``, which picks one from a store location."""

from __future__ import annotations

import os

from cas.errors import RepositoryError
from cas.store.base import Backend, Capabilities, KeyInfo, validate_key
from cas.store.local import LocalDirBackend
from cas.store.memory import MemoryBackend
from cas.store.retry import RetryingBackend

__all__ = [
    "Backend",
    "Capabilities",
    "KeyInfo",
    "LocalDirBackend",
    "MemoryBackend",
    "RetryingBackend",
    "open_backend",
    "validate_key",
]


def open_backend(location: str, *, retry: bool = True) -> Backend:
    """Open the backend for a store location: a path or a ``file://`` URL.

    With ``retry`` (the default) transient failures are retried with backoff.

    Raises:
        RepositoryError: an unknown URL scheme.
    """
    backend: Backend
    if location.startswith("file://"):
        backend = LocalDirBackend(location[len("file://") :])
    elif "://" in location:
        scheme = location.split("://", 1)[0]
        raise RepositoryError(
            f"unsupported store location {location!r}: cas cannot open {scheme}:// stores yet",
            hint="use a folder path (a local folder or a mounted Google Drive folder)",
        )
    else:
        backend = LocalDirBackend(os.path.abspath(os.path.expanduser(location)))
    return RetryingBackend(backend) if retry else backend
