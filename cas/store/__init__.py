"""Storage backends and ``open_backend``, which picks one from a store location."""

from __future__ import annotations

import os

from cas.store.base import Backend, Capabilities, KeyInfo, validate_key
from cas.store.local import LocalDirBackend
from cas.store.memory import MemoryBackend

__all__ = [
    "Backend",
    "Capabilities",
    "KeyInfo",
    "LocalDirBackend",
    "MemoryBackend",
    "open_backend",
    "validate_key",
]


def open_backend(location: str) -> Backend:
    """Open the backend for a store location: a path or a ``file://`` URL.

    Raises:
        ValueError: an unknown URL scheme.
    """
    if location.startswith("file://"):
        return LocalDirBackend(location[len("file://") :])
    if "://" in location:
        scheme = location.split("://", 1)[0]
        raise ValueError(f"unsupported store URL scheme {scheme!r} (use a folder path)")
    return LocalDirBackend(os.path.abspath(os.path.expanduser(location)))
