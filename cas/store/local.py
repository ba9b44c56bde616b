"""A folder backend: a local directory or a mounted Google Drive folder.

Each write goes to a temp file in the target directory (named after the key plus a
random part and :data:`TEMP_SUFFIX`), is flushed and fsync'ed, then moved into place with
``os.replace`` — or, for a create-only write, hard-linked into place so that an existing
key makes the link fail. Directories are created only when a write finds them missing,
because metadata calls are slow on network mounts.

OS errors are translated here, once: ENOENT → :class:`ObjectNotFoundError`; ENOSPC and
EDQUOT → :class:`NoSpaceError`; EACCES, EPERM and EROFS → :class:`PermissionDeniedError`;
EIO, ENOTCONN ("Transport endpoint is not connected"), ETIMEDOUT, ESTALE and friends →
:class:`BackendUnavailableError` (transient); anything else → :class:`BackendError`.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import stat
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from cas.errors import (
    AlreadyExistsError,
    BackendError,
    BackendUnavailableError,
    NoSpaceError,
    ObjectNotFoundError,
    PermissionDeniedError,
    ShortReadError,
)
from cas.store.base import (
    TEMP_SUFFIX,
    Capabilities,
    KeyInfo,
    PendingWrite,
    Spool,
    SpooledWrite,
    is_valid_key,
    resolve_range,
    validate_key,
    validate_prefix,
)

_TRANSIENT = {
    errno.EIO,
    errno.ENOTCONN,
    errno.ETIMEDOUT,
    errno.ESTALE,
    errno.EAGAIN,
    errno.EINTR,
    errno.ECONNRESET,
    errno.ECONNABORTED,
    errno.EHOSTDOWN,
    errno.ENETDOWN,
    errno.EBUSY,
}
_NO_SPACE = {errno.ENOSPC, errno.EDQUOT}
_DENIED = {errno.EACCES, errno.EPERM, errno.EROFS}
# Link failures that mean "this filesystem has no hard links" rather than "exists".
_NO_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK, errno.ENOSYS}

# Seam for tests: how a temp file is opened (a test may replace it to raise ENOSPC).
open_temp = os.open


def translate_os_error(exc: OSError, key: str, action: str) -> Exception:
    """Map an ``OSError`` on ``key`` to the backend error family."""
    code = exc.errno
    where = f"{action} {key}"
    if code == errno.ENOENT:
        return ObjectNotFoundError(key)
    if code in _NO_SPACE:
        return NoSpaceError(f"no space left on device while trying to {where}")
    if code in _DENIED:
        return PermissionDeniedError(
            f"permission denied while trying to {where} ({os.strerror(code or 0)})",
            hint="check that the store folder is writable (a read-only store can still be read)",
        )
    if code in _TRANSIENT:
        return BackendUnavailableError(f"the store did not answer while trying to {where}: {exc}")
    return BackendError(f"failed to {where}: {exc}")


def _version(st: os.stat_result) -> str:
    """A version token that changes on every write: each write is a new file (a new inode)
    moved into place, so the inode changes even when size and mtime do not."""
    return f"{st.st_size}-{st.st_mtime_ns}-{st.st_ino}"


def _read_rest(fd: int, head: bytes, length: int, start: int) -> bytes:
    """``head`` and what follows it, up to ``length`` bytes in all or the end of the file."""
    parts = [head]
    got = len(head)
    while got < length:
        more = os.pread(fd, length - got, start + got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def _write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _create_temp(tmp: Path) -> int:
    """Open a new temp file for writing, creating its folder if it is missing."""
    try:
        return open_temp(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileNotFoundError:
        tmp.parent.mkdir(parents=True, exist_ok=True)
        return open_temp(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)


def _unlink_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass  # gone already, or best effort: a leftover temp name is ignored by every reader


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # FUSE mounts (Drive) and some filesystems refuse fsync on directories.
    finally:
        os.close(fd)


# Filesystems that live on a local disk or in memory. A store on one of them is read as
# fast as the local cache would be, so its packs are not copied into the cache.
LOCAL_FILESYSTEMS = frozenset(
    {
        "ext2",
        "ext3",
        "ext4",
        "xfs",
        "btrfs",
        "zfs",
        "f2fs",
        "jfs",
        "reiserfs",
        "bcachefs",
        "tmpfs",
        "ramfs",
        "overlay",
        "apfs",
        "hfs",
    }
)


def _caching_pays(fstype: str | None) -> bool:
    """Whether copies of packs in cas's local cache save anything for a store folder on a
    filesystem of this type.

    Not on a local disk (as fast as the cache), nor on a FUSE mount: Google Drive's DriveFS
    (``fuse.drive`` on Colab) already keeps every file read on the VM's disk, so a copy of
    its packs would be the third copy of the data there (with the worktree). A network
    share (NFS, SMB) or a filesystem cas cannot identify keeps no such copy: cached.
    """
    if fstype is None:
        return True
    return fstype not in LOCAL_FILESYSTEMS and fstype != "fuse" and not fstype.startswith("fuse.")


def filesystem_type(
    path: str | os.PathLike[str], mountinfo: str = "/proc/self/mountinfo"
) -> str | None:
    """The type of the filesystem holding ``path`` (from Linux's ``mountinfo``: the mount
    point that is the longest prefix of its real path), or None where unknown."""
    try:
        real = os.path.realpath(path)
        with open(mountinfo, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    best, fstype = -1, None
    for line in lines:
        left, sep, right = line.partition(" - ")
        fields = left.split()
        if not sep or len(fields) < 5 or not right:
            continue
        mount = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])
        inside = real == mount or real.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) > best:
            best, fstype = len(mount), right.split()[0]
    return fstype


# Files kept open after a ranged read, for the next range of the same object: reading a
# pack in pieces then costs one open, not one per piece (an open is a round trip of tens
# of milliseconds on a Drive mount). Safe because keys are never overwritten in place: a
# write replaces the file (a new inode), and every object is immutable once written.
READERS_KEPT = 16


def _identity(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


class _Reader:
    __slots__ = ("fd", "identity", "kept", "users")

    def __init__(self, fd: int, identity: tuple[int, int, int, int]) -> None:
        self.fd = fd
        self.identity = identity  # of the file when opened
        self.users = 1
        self.kept = False  # held in _OpenFiles for later reads


class _OpenFiles:
    """A few read-only descriptors by key, least recently used dropped first; a dropped
    one is closed once no thread reads through it.

    A kept descriptor is used again only while ``stat`` of its path still shows the file
    it was opened on (device, inode, size, mtime): a pack replaced by another process (a
    repair, Drive filling in a zero-byte "ghost") is opened afresh, never read through a
    descriptor of its old file. A ``stat`` is cheap where an open is not: FUSE mounts
    cache attributes but send every open to their daemon.
    """

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._lock = threading.Lock()
        self._kept: OrderedDict[str, _Reader] = OrderedDict()
        self._closed = False

    def acquire(self, key: str, path: Path) -> _Reader:
        """A descriptor open on ``path``, counted as in use until :meth:`release`."""
        with self._lock:
            r = self._kept.get(key)
            if r is not None:
                r.users += 1
        if r is not None:
            try:
                same = _identity(os.stat(path)) == r.identity
            except OSError:
                same = False
            if same:
                return r
            self.release(r)
            self.forget(key, r)
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)  # outside the lock: may be slow
        try:
            r = _Reader(fd, _identity(os.fstat(fd)))
        except BaseException:
            os.close(fd)
            raise
        with self._lock:
            if not self._closed and key not in self._kept:
                r.kept = True
                self._kept[key] = r
                self._trim()
        return r

    def release(self, r: _Reader) -> None:
        with self._lock:
            r.users -= 1
            if r.users == 0 and not r.kept:
                os.close(r.fd)

    def forget(self, key: str, only: _Reader | None = None) -> None:
        """Drop ``key``'s descriptor (``only`` that one, if given): its file was replaced."""
        with self._lock:
            r = self._kept.get(key)
            if r is not None and (only is None or r is only):
                del self._kept[key]
                self._drop(r)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._trim()

    def _trim(self) -> None:
        limit = 0 if self._closed else self._limit
        while len(self._kept) > limit:
            _key, r = self._kept.popitem(last=False)
            self._drop(r)

    @staticmethod
    def _drop(r: _Reader) -> None:
        r.kept = False
        if r.users == 0:
            os.close(r.fd)


# Values on their way at once to a folder on a mount (Drive). There every write ends
# with a dozen round trips (create, fsync, link, unlink, the folder's fsync) during which
# its bytes do not flow. Four uploads of equal packs finish together and start their
# next ones together, so the link idled for the length of those round trips every four
# packs (medium preset, Drive-like remote: 89 MB/s of 100 on average); with eight it
# stays busy (100 MB/s, first commit 30.3 s -> 28.6 s). Reads stay at four: a restore
# keeps the link busy with four (31.1 s; 33.3 s with eight).
MOUNT_UPLOADS = 8


# One folder's files as listed: (key, its directory entry).
_Files = list[tuple[str, "os.DirEntry[str]"]]

# Stats in flight while listing a folder on a mount.
LIST_STATS = 8


def _lstat_entry(entry: os.DirEntry[str]) -> os.stat_result | None:
    """The entry's lstat, or None if it is gone (a temp name renamed meanwhile)."""
    try:
        return entry.stat(follow_symlinks=False)
    except FileNotFoundError:
        return None


class LocalDirBackend:
    """Keys as files below a root directory."""

    def __init__(self, root: str | os.PathLike[str], *, fsync: bool = True) -> None:
        self.root = Path(root)
        self._fsync = fsync
        # Cleared when the filesystem turns out to have no hard links (some FUSE mounts):
        # create-only writes are then checked, not enforced.
        self._links_work = True
        fstype = filesystem_type(self.root)
        self._cache_data = _caching_pays(fstype)
        self._local_disk = fstype in LOCAL_FILESYSTEMS
        self._readers = _OpenFiles(READERS_KEPT)

    @property
    def location(self) -> str:
        return str(self.root)

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            atomic_replace=True,
            conditional_write=self._links_work,
            consistent_listing=True,
            max_connections=4,
            max_uploads=4 if self._local_disk else MOUNT_UPLOADS,
            cache_data=self._cache_data,
            streaming_write=self._local_disk,
            values_in_memory=False,  # streamed onto a local disk, else spooled
            # On a local disk every reader goes through this kernel: a write is visible
            # to all of them once it returns, in the order written. A FUSE mount (Drive)
            # or a network share is seen by other machines later, in any order.
            ordered_visibility=self._local_disk,
        )

    def _path(self, key: str) -> Path:
        return self.root / validate_key(key)

    def read(self, key: str) -> bytes:
        try:
            with open(self._path(key), "rb") as f:
                return f.read()
        except IsADirectoryError:
            raise ObjectNotFoundError(key) from None
        except OSError as exc:
            raise translate_os_error(exc, key, "read") from exc

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        path = self._path(key)
        try:
            reader = self._readers.acquire(key, path)
            fd = reader.fd
            try:
                if offset < 0 or length <= 0:
                    # From the end, or empty: the size decides (and checks) the range.
                    start, _ = resolve_range(key, os.fstat(fd).st_size, offset, length)
                else:
                    start = offset  # a read past the end comes back short, checked below
                data = os.pread(fd, length, start)
                if 0 < len(data) < length:  # a short read before the end (some FUSE mounts)
                    data = _read_rest(fd, data, length, start)
                if self._local_disk and length >= DROP_CACHED_MIN:
                    # Read once: see _drop_from_page_cache. Not on a mount, where the
                    # advice may be a round trip or drop the mount's own read-ahead.
                    _advise_dontneed(fd, start, len(data))
            finally:
                self._readers.release(reader)
        except IsADirectoryError:
            raise ObjectNotFoundError(key) from None
        except OSError as exc:
            raise translate_os_error(exc, key, "read") from exc
        if len(data) != length:
            raise ShortReadError(key, length, len(data))
        return data

    def write(self, key: str, data: bytes | bytearray, *, if_absent: bool = False) -> None:
        self._write_pieces(key, (data,), if_absent)

    def _write_spool(
        self,
        key: str,
        spool: Spool,
        if_absent: bool,
        before_publish: Callable[[], None] | None = None,
    ) -> None:
        self._write_pieces(key, spool.pieces(), if_absent, before_publish)

    def _write_pieces(
        self,
        key: str,
        pieces: Iterable[bytes | bytearray],
        if_absent: bool,
        before_publish: Callable[[], None] | None = None,
    ) -> None:
        """Write ``pieces`` to a temp file beside ``key``, then put it in place."""
        path = self._path(key)
        tmp = path.with_name(f"{path.name}.{secrets.token_hex(6)}{TEMP_SUFFIX}")
        try:
            fd = _create_temp(tmp)
            try:
                for data in pieces:
                    _write_all(fd, data)
                if before_publish is not None:
                    before_publish()  # once the bytes are written, before the rename
            except BaseException:
                os.close(fd)
                raise
        except BaseException as exc:
            _unlink_quietly(tmp)
            if isinstance(exc, OSError):
                raise translate_os_error(exc, key, "write") from exc
            raise
        self._put_in_place(fd, tmp, key, if_absent)

    def _put_in_place(self, fd: int, tmp: Path, key: str, if_absent: bool) -> None:
        """Make the fully written temp file ``tmp`` (open as ``fd``, which this closes)
        durable and visible as ``key``; the temp name is gone afterwards."""
        path = self._path(key)
        self._readers.forget(key)
        try:
            try:
                if self._fsync:
                    try:
                        os.fsync(fd)
                    except OSError as exc:
                        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
                            raise
                    else:
                        if self._local_disk:  # (on a mount, fstat may be a round trip)
                            _drop_from_page_cache(fd)
            finally:
                os.close(fd)
            if tmp.parent != path.parent:
                path.parent.mkdir(parents=True, exist_ok=True)
            if if_absent:
                self._link_into_place(tmp, path, key)
            else:
                os.replace(tmp, path)
        except OSError as exc:
            raise translate_os_error(exc, key, "write") from exc
        finally:
            _unlink_quietly(tmp)
        if self._fsync:
            _fsync_dir(path.parent)

    def make_folders(self, prefixes: Iterable[str]) -> None:
        """Create the folders of ``prefixes`` (see :func:`cas.store.base.make_folders`):
        on a Drive mount each folder a write finds missing costs a failed create and a
        mkdir per level, round trips a new store would otherwise pay in its first
        commit."""
        for prefix in prefixes:
            try:
                (self.root / validate_prefix(prefix)).mkdir(parents=True, exist_ok=True)
            except OSError:
                pass  # best effort: the first write there creates it, or reports why not

    def begin_write(self) -> PendingWrite:
        if not self._local_disk:
            # Gathered on the local disk, then written whole: a Drive mount that drops
            # halfway through a write can be retried from the spool, and many packs may
            # be on their way at once without holding any of them in memory.
            return SpooledWrite(self._write_spool, f"a value on its way to {self.root}")
        return _FileWrite(self)

    def _link_into_place(self, tmp: Path, path: Path, key: str) -> None:
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise AlreadyExistsError(key) from None
        except OSError as exc:
            if exc.errno not in _NO_LINKS:
                raise
            self._links_work = False
            # No hard links here (some FUSE mounts): check, then move. Not race-free;
            # Capabilities says so and refs never rely on it (see docs/backends.md).
            if path.exists():
                raise AlreadyExistsError(key) from None
            os.replace(tmp, path)

    def list(self, prefix: str) -> Iterator[KeyInfo]:
        # On a mount every stat of a listed file is a round trip (Drive: tens of ms), so
        # they go out LIST_STATS at a time; on a local disk a thread would cost more.
        pool: ThreadPoolExecutor | None = None
        try:
            for files in self._walk(prefix):
                try:
                    if len(files) > 1 and not self._local_disk:
                        if pool is None:
                            pool = ThreadPoolExecutor(LIST_STATS, thread_name_prefix="cas-list")
                        stats = list(pool.map(_lstat_entry, (e for _k, e in files)))
                    else:
                        stats = [_lstat_entry(e) for _k, e in files]
                except OSError as exc:  # the mount dropped meanwhile, say
                    raise translate_os_error(exc, prefix or "/", "list") from exc
                for (key, _e), st in zip(files, stats, strict=True):
                    if st is not None:
                        yield KeyInfo(key, st.st_size, _version(st))
        finally:
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)

    def list_keys(self, prefix: str) -> Iterator[str]:
        for files in self._walk(prefix):
            for key, _entry in files:
                yield key

    def _walk(self, prefix: str) -> Iterator[_Files]:
        """The files under ``prefix`` whose names are keys, one folder at a time (the
        folder's type comes with its listing: no stat)."""
        stack = [self.root / validate_prefix(prefix) if prefix else self.root]
        while stack:
            d = stack.pop()
            try:
                entries = list(os.scandir(d))
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise translate_os_error(exc, prefix or "/", "list") from exc
            files: _Files = []
            for entry in entries:
                try:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(Path(entry.path))
                        continue
                except FileNotFoundError:
                    continue
                except OSError as exc:  # no type in the listing: a stat, which may fail
                    raise translate_os_error(exc, prefix or "/", "list") from exc
                key = Path(entry.path).relative_to(self.root).as_posix()
                if is_valid_key(key):
                    files.append((key, entry))
            yield files

    def stat(self, key: str) -> KeyInfo:
        try:
            st = os.stat(self._path(key))
        except OSError as exc:
            raise translate_os_error(exc, key, "stat") from exc
        if not stat.S_ISREG(st.st_mode):
            raise ObjectNotFoundError(key)
        return KeyInfo(key, st.st_size, _version(st))

    def delete(self, key: str) -> None:
        self._readers.forget(key)
        try:
            os.unlink(self._path(key))
        except (FileNotFoundError, IsADirectoryError):
            pass  # missing, or only a folder of other keys: no such key either way
        except OSError as exc:
            raise translate_os_error(exc, key, "delete") from exc

    def close(self) -> None:
        self._readers.close()


# Values at least this large leave the page cache once they are on the disk.
DROP_CACHED_MIN = 1 << 20


def _drop_from_page_cache(fd: int) -> None:
    """Let the kernel drop the cached pages of a value just made durable, if it is large.

    A commit writes gigabytes of packs that nothing reads back soon (a checkout reads
    each piece it needs once). Left in the page cache, they push out pages
    the user still wants — the dataset a notebook is training on — and every new pack
    takes fresh pages; dropped, the next pack reuses the memory of the last. On a
    virtual machine whose idle memory goes back to the host (Colab's runtimes, this
    project's benchmark machine), fresh pages cost a fault in the host each: writing
    into them ran at ~0.45 GB/s there against ~5 GB/s into reused ones. The pages are
    clean after fsync, so dropping them writes nothing. Only on a local disk: on a mount
    the fstat that gives the size may be a round trip.
    """
    try:
        size = os.fstat(fd).st_size
    except OSError:
        return  # advice only: the value is durable whatever this says
    if size >= DROP_CACHED_MIN:
        _advise_dontneed(fd, 0, 0)


def _advise_dontneed(fd: int, offset: int, length: int) -> None:
    try:
        os.posix_fadvise(fd, offset, length, os.POSIX_FADV_DONTNEED)
    except (OSError, AttributeError):
        pass  # advice only: a filesystem or platform without it keeps its pages


class _FileWrite:
    """A value streamed into a temp file at the store's root, moved to its key's place
    at commit (the same filesystem, so a rename). Readers never see the temp name."""

    def __init__(self, backend: LocalDirBackend) -> None:
        self._backend = backend
        self._tmp = backend.root / f"{secrets.token_hex(8)}{TEMP_SUFFIX}"
        try:
            self._fd = _create_temp(self._tmp)
        except OSError as exc:
            raise translate_os_error(exc, "(new value)", "write") from exc

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._fd < 0:
            raise ValueError("write to a committed or aborted value")
        try:
            _write_all(self._fd, data)
        except OSError as exc:
            raise translate_os_error(exc, "(new value)", "write") from exc

    def commit(
        self, key: str, *, if_absent: bool = False, before_publish: Callable[[], None] | None = None
    ) -> None:
        if self._fd < 0:
            raise ValueError("commit of a committed or aborted value")
        if before_publish is not None:
            before_publish()  # (the value is written already: nothing to overlap)
        fd, self._fd = self._fd, -1
        self._backend._put_in_place(fd, self._tmp, key, if_absent)

    def abort(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        _unlink_quietly(self._tmp)
