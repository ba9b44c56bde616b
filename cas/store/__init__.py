"""Storage backends and ``open_backend``, which picks one from a store location."""

from __future__ import annotations

import os
import re
from urllib.parse import unquote, urlsplit

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
    "location_scheme",
    "open_backend",
    "parse_file_url",
    "resolve_location",
    "validate_key",
]

_FOLDER_HINT = (
    "give a folder as file:///ABSOLUTE/PATH (three slashes), file://localhost/ABSOLUTE/PATH,"
    " or a plain path (relative paths are fine there)"
)
_GCS_HINT = (
    "use Google Cloud Storage through its S3-interoperable endpoint, with an HMAC key as the"
    " AWS key pair: s3://BUCKET/PREFIX?endpoint=https://storage.googleapis.com&region=auto"
    " (docs/backends.md, section 5)"
)


_URL = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")


def location_scheme(location: str) -> str:
    """The URL scheme of a location (lower case), or ``""`` for a plain path."""
    if location[:5].lower() == "file:":
        return "file"  # also file:/abs/path (RFC 8089 allows no authority)
    m = _URL.match(location)
    return m.group(1).lower() if m else ""


def parse_file_url(location: str) -> str:
    """The absolute folder path of a ``file:`` URL (RFC 8089).

    The host must be empty or ``localhost``; the path must be absolute and is
    percent-decoded (``file:///tmp/my%20store`` is the folder ``/tmp/my store``).

    Raises:
        RepositoryError: another host, a relative path, a query or fragment, a NUL.
    """
    parts = urlsplit(location)
    if parts.scheme.lower() != "file":
        raise RepositoryError(f"not a file URL: {location!r}", hint=_FOLDER_HINT)
    if parts.netloc and parts.netloc.lower() != "localhost":
        raise RepositoryError(
            f"file URL {location!r} names the host {parts.netloc!r}: cas opens local folders only"
            f" (for a folder {parts.netloc!r} here, give the plain path)",
            hint=_FOLDER_HINT,
        )
    if parts.query or parts.fragment:
        raise RepositoryError(
            f"file URL {location!r} has a query or fragment",
            hint="write ? as %3F and # as %23 in a folder name; " + _FOLDER_HINT,
        )
    path = unquote(parts.path, errors="surrogateescape")
    if not path.startswith("/"):
        raise RepositoryError(f"file URL {location!r} has a relative path", hint=_FOLDER_HINT)
    if "\0" in path:
        raise RepositoryError(f"file URL {location!r} has a NUL in its path", hint=_FOLDER_HINT)
    return os.path.normpath(path)


def resolve_location(location: str) -> str:
    """The canonical form of a store location, independent of the working directory:
    what a worktree records.

    A plain path (``~`` expanded) or a ``file:`` URL becomes an absolute folder path; an
    ``s3://`` URL stays as given.

    Raises:
        RepositoryError: a bad ``file:`` URL, or a scheme cas cannot open.
    """
    scheme = location_scheme(location)
    if scheme == "file":
        return parse_file_url(location)
    if scheme == "s3":
        return location
    if scheme == "gs":
        raise RepositoryError(
            f"unsupported store location {location!r}: cas has no native gs:// backend",
            hint=_GCS_HINT,
        )
    if scheme:
        raise RepositoryError(
            f"unsupported store location {location!r}: cas cannot open {scheme}:// stores",
            hint="use a folder path (a local folder, a mounted Drive folder) or s3://BUCKET/PREFIX"
            " (GCS: its S3-interoperable endpoint, see docs/backends.md)",
        )
    return os.path.abspath(os.path.expanduser(location))


def open_backend(location: str, *, retry: bool = True) -> Backend:
    """Open the backend for a store location: a path, a ``file:`` or an ``s3://`` URL.

    With ``retry`` (the default) transient failures are retried with backoff.

    Raises:
        RepositoryError: an unknown URL scheme, a bad URL, or (``s3://``) boto3 missing.
    """
    backend: Backend
    resolved = resolve_location(location)
    if location_scheme(resolved) == "s3":
        backend = S3Backend.from_url(resolved)
    else:
        backend = LocalDirBackend(resolved)
    return RetryingBackend(backend) if retry else backend
