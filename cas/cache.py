"""The local cache: an accelerator only, never the truth (invariant 11).

It lives under the user's cache directory (``$XDG_CACHE_HOME/cas`` or ``~/.cache/cas``;
the caller decides) in one folder per store id, and mirrors remote keys::

    <root>/<store id>/index/<id>          index segments
    <root>/<store id>/commits/<h2>/<id>   commits
    <root>/<store id>/trees/<h2>/<id>     decoded tree blobs (their encoded bytes)
    <root>/<store id>/refs/...            ref entries (immutable)
    <root>/<store id>/packs/<h2>/<id>     whole packs fetched by checkout (size-capped, LRU)

Everything cached is immutable and named by its content, so it is never stale; readers
verify what they take from here and :meth:`LocalCache.evict` a damaged entry, after
which it is fetched again. Deleting the folder loses nothing.

A large object can be cached piece by piece while it streams past (:meth:`LocalCache.begin`):
its pieces go to a temp file that becomes the entry only when the writer, having checked
the whole object against its id, calls :meth:`CacheFile.commit`.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

DEFAULT_PACK_LIMIT = 4 << 30


class LocalCache:
    """A folder of immutable, content-named files mirroring remote keys."""

    def __init__(self, root: Path | None, *, pack_limit: int = DEFAULT_PACK_LIMIT) -> None:
        """Use ``root`` (created on demand); ``None`` disables caching."""
        self.root = root
        self.pack_limit = pack_limit

    @property
    def enabled(self) -> bool:
        """False when caching is disabled."""
        return self.root is not None

    def path(self, key: str) -> Path | None:
        """Where ``key`` is (or would be) cached."""
        return None if self.root is None else self.root / key

    def get(self, key: str) -> bytes | None:
        """The cached bytes of ``key``, or None."""
        p = self.path(key)
        if p is None:
            return None
        try:
            with open(p, "rb") as f:
                data = f.read()
        except OSError:
            return None
        if key.startswith("packs/"):
            with contextlib.suppress(OSError):
                os.utime(p)  # LRU order for packs
        return data

    def read_range(self, key: str, offset: int, length: int) -> bytes | None:
        """``length`` bytes of a cached ``key`` from ``offset``, or None if not cached."""
        p = self.path(key)
        if p is None:
            return None
        try:
            with open(p, "rb") as f:
                data = os.pread(f.fileno(), length, offset)
        except OSError:
            return None
        return data if len(data) == length else None

    def open_read(self, key: str) -> int | None:
        """A read-only descriptor of the cached ``key`` (the caller closes it), or None."""
        p = self.path(key)
        if p is None:
            return None
        try:
            return os.open(p, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None

    def begin(self, key: str) -> CacheFile | None:
        """Start caching ``key`` piece by piece; None when caching is off or impossible."""
        p = self.path(key)
        if p is None:
            return None
        tmp = p.with_name(f"{p.name}.{secrets.token_hex(4)}.tmp")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        try:
            try:
                fd = os.open(tmp, flags, 0o644)
            except FileNotFoundError:
                p.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(tmp, flags, 0o644)
        except OSError:
            return None
        return CacheFile(self, key, p, tmp, fd)

    def touch(self, key: str) -> None:
        """Mark a cached pack as recently used (LRU order)."""
        p = self.path(key)
        if p is not None:
            with contextlib.suppress(OSError):
                os.utime(p)

    def has(self, key: str) -> bool:
        """True when ``key`` is cached."""
        p = self.path(key)
        return p is not None and p.is_file()

    def put(self, key: str, data: bytes) -> None:
        """Cache ``data`` under ``key`` (best effort: a full disk just skips caching)."""
        p = self.path(key)
        if p is None:
            return
        tmp = p.with_name(f"{p.name}.{secrets.token_hex(4)}.tmp")
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, p)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink()
        if key.startswith("packs/"):
            self.trim_packs()

    def evict(self, key: str) -> None:
        """Drop a (damaged) entry."""
        p = self.path(key)
        if p is not None:
            with contextlib.suppress(OSError):
                p.unlink()

    def trim_packs(self) -> None:
        """Delete least recently used packs until they fit in ``pack_limit``."""
        if self.root is None:
            return
        files = []
        for dirpath, _dirs, names in os.walk(self.root / "packs"):
            for n in names:
                p = Path(dirpath) / n
                with contextlib.suppress(OSError):
                    st = p.stat()
                    files.append((st.st_mtime_ns, st.st_size, p))
        total = sum(f[1] for f in files)
        for _mtime, size, p in sorted(files):
            if total <= self.pack_limit:
                break
            with contextlib.suppress(OSError):
                p.unlink()
                total -= size


class CacheFile:
    """A cache entry being written piece by piece (best effort, like :meth:`LocalCache.put`).

    Pieces go to a temp file next to the entry. :meth:`commit` moves it into place (the
    caller has checked the whole object against its id); :meth:`abort` drops it. A failed
    write (a full disk) quietly turns the rest into no-ops and the commit into an abort.
    """

    def __init__(self, cache: LocalCache, key: str, path: Path, tmp: Path, fd: int) -> None:
        self._cache = cache
        self._key = key
        self._path = path
        self._tmp = tmp
        self._fd = fd
        self.size = 0

    def write(self, data: bytes | memoryview) -> None:
        """Append ``data``."""
        if self._fd < 0:
            return
        try:
            view = memoryview(data)
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
                self.size += n
        except OSError:
            self.abort()

    def commit(self) -> None:
        """Make the written bytes the cached entry (then trim the packs, for a pack)."""
        if self._fd < 0:
            return
        os.close(self._fd)
        self._fd = -1
        try:
            os.replace(self._tmp, self._path)
        except OSError:
            with contextlib.suppress(OSError):
                self._tmp.unlink()
            return
        if self._key.startswith("packs/"):
            self._cache.trim_packs()

    def abort(self) -> None:
        """Drop what was written."""
        if self._fd < 0:
            return
        os.close(self._fd)
        self._fd = -1
        with contextlib.suppress(OSError):
            self._tmp.unlink()
