"""Storage backends and ``open_backend``, which picks one from a store location."""

from __future__ import annotations

import os

from cas.errors import RepositoryError
from cas.store.base import Backend, Capabilities, KeyInfo, validate_key
from cas.store.local import LocalDirBackend
from cas.store.memory import MemoryBackend
from cas.store.retry import RetryingBackend
from cas.store.s3 import S3Backend

__all__ = [
    "Backend",
    "Capabilities",
    "KeyInfo",
    "LocalDirBackend",
    "MemoryBackend",
    "RetryingBackend",
    "S3Backend",
    "open_backend",
    "validate_key",
]


def open_backend(location: str, *, retry: bool = True) -> Backend:
    """Open the backend for a store location: a path, a ``file://`` or an ``s3://`` URL.

    With ``retry`` (the default) transient failures are retried with backoff.

    Raises:
        RepositoryError: an unknown URL scheme.
    """
    backend: Backend
    if location.startswith("file://"):
        backend = LocalDirBackend(location[len("file://") :])
    elif location.startswith("s3://"):
        backend = S3Backend.from_url(location)
    elif "://" in location:
        scheme = location.split("://", 1)[0]
        raise RepositoryError(
            f"unsupported store location {location!r}: cas cannot open {scheme}:// stores",
            hint="use a folder path (a local folder, a mounted Drive folder) or s3://BUCKET/PREFIX"
            " (GCS: its S3-interoperable endpoint, see docs/backends.md)",
        )
    else:
        backend = LocalDirBackend(os.path.abspath(os.path.expanduser(location)))
    return RetryingBackend(backend) if retry else backend
