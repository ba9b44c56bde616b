"""The backend contract for LocalDirBackend, plus its error translation and seams."""

from __future__ import annotations

import errno
import os
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

import cas.store.base as base_module
import cas.store.local as local_module
from cas.errors import (
    AlreadyExistsError,
    BackendError,
    BackendUnavailableError,
    NoSpaceError,
    ObjectNotFoundError,
    PermissionDeniedError,
)
from cas.store.base import TEMP_SUFFIX, SpooledWrite
from cas.store.local import LocalDirBackend, translate_os_error
from cas.store.retry import RetryingBackend
from tests.backends.contract import BackendContract


class LocalHarness:
    """Reaches around a LocalDirBackend straight on disk."""

    # The version token is size + mtime_ns; mtime moves with the kernel's coarse clock.
    same_size_rewrite_changes_version = True

    def __init__(self, root: Path, *, fsync: bool, fstype: str | None = "ext4") -> None:
        self.root = root
        self.fsync = fsync
        self.fstype = fstype

    def make(self) -> LocalDirBackend:
        # As found on a local disk (values streamed) or on a Drive mount (spooled).
        with mock.patch.object(local_module, "filesystem_type", return_value=self.fstype):
            return LocalDirBackend(self.root, fsync=self.fsync)

    def raw_write(self, key: str, data: bytes) -> None:
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def raw_read(self, key: str) -> bytes | None:
        path = self.root / key
        return path.read_bytes() if path.is_file() else None

    def plant_temp(self, key: str) -> bool:
        path = self.root / f"{key}.abc123{TEMP_SUFFIX}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half an upload")
        return True


@pytest.fixture(
    params=[(False, "ext4"), (True, "ext4"), (True, "fuse.drive")],
    ids=["no-fsync", "fsync", "drive-mount"],
)
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> LocalHarness:
    fsync, fstype = request.param
    return LocalHarness(tmp_path / "store", fsync=fsync, fstype=fstype)


class TestLocalDirBackend(BackendContract):
    pass


# ---------------------------------------------------------------------------- on disk


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def backend(root: Path) -> LocalDirBackend:
    return LocalDirBackend(root)


def _temp_files(root: Path) -> list[Path]:
    return list(root.rglob(f"*{TEMP_SUFFIX}")) if root.exists() else []


def test_keys_are_files_below_the_root(backend: LocalDirBackend, root: Path) -> None:
    backend.write("packs/ab/abcd", b"x")
    assert (root / "packs" / "ab" / "abcd").read_bytes() == b"x"
    assert backend.location == str(root)


def test_no_temp_files_are_left_behind(backend: LocalDirBackend, root: Path) -> None:
    backend.write("a/b", b"1")
    backend.write("a/b", b"2")
    backend.write("a/c", b"3", if_absent=True)
    with pytest.raises(AlreadyExistsError):
        backend.write("a/c", b"4", if_absent=True)
    assert _temp_files(root) == []
    assert sorted(p.name for p in (root / "a").iterdir()) == ["b", "c"]


def test_listing_skips_names_that_are_not_keys(backend: LocalDirBackend, root: Path) -> None:
    backend.write("packs/ab/good", b"x")
    (root / "packs" / "ab" / "Desktop.ini").write_bytes(b"junk")  # uppercase: not a key
    (root / "packs" / "ab" / "copy (1)").write_bytes(b"junk")  # Drive's duplicate names
    assert [i.key for i in backend.list("")] == ["packs/ab/good"]


def test_version_token_is_size_mtime_and_inode(backend: LocalDirBackend, root: Path) -> None:
    backend.write("k", b"12345")
    st = os.stat(root / "k")
    assert backend.stat("k").version == f"5-{st.st_mtime_ns}-{st.st_ino}"
    os.utime(root / "k", ns=(1, 2))
    assert backend.stat("k").version == f"5-2-{st.st_ino}"
    backend.write("k", b"54321")  # a new file moved into place: a new inode
    assert backend.stat("k").version != f"5-2-{st.st_ino}"


# ---------------------------------------------------------------------------- the seam


def _raising(code: int) -> Callable[..., int]:
    def open_temp(path: Any, flags: int, mode: int = 0o777) -> int:
        raise OSError(code, os.strerror(code), str(path))

    return open_temp


def _create_then_raise(code: int) -> Callable[..., int]:
    """The temp file is created, then the open fails: the writer must remove it."""

    def open_temp(path: Any, flags: int, mode: int = 0o777) -> int:
        os.close(os.open(path, flags, mode))
        raise OSError(code, os.strerror(code), str(path))

    return open_temp


@pytest.mark.parametrize("make_seam", [_raising, _create_then_raise])
def test_no_space_is_a_permanent_error(
    backend: LocalDirBackend, root: Path, monkeypatch: pytest.MonkeyPatch, make_seam: Any
) -> None:
    backend.write("packs/ab/p", b"old")
    monkeypatch.setattr(local_module, "open_temp", make_seam(errno.ENOSPC))
    with pytest.raises(NoSpaceError, match="no space left") as ei:
        backend.write("packs/ab/p", b"new")
    assert ei.value.transient is False
    assert isinstance(ei.value.__cause__, OSError)
    assert ei.value.__cause__.errno == errno.ENOSPC
    assert "free space" in ei.value.hint
    assert _temp_files(root) == []
    assert backend.read("packs/ab/p") == b"old"


def test_no_space_while_writing_the_bytes(
    backend: LocalDirBackend, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The temp file exists, and the write into it fails (here: into /dev/full)."""
    if not os.path.exists("/dev/full"):
        pytest.skip("needs /dev/full")

    def open_temp(path: Any, flags: int, mode: int = 0o777) -> int:
        os.close(os.open(path, flags, mode))
        return os.open("/dev/full", os.O_WRONLY)

    monkeypatch.setattr(local_module, "open_temp", open_temp)
    with pytest.raises(NoSpaceError):
        backend.write("packs/ab/new", b"x" * 100_000)
    assert _temp_files(root) == []
    with pytest.raises(ObjectNotFoundError):
        backend.read("packs/ab/new")


@pytest.mark.parametrize("code", [errno.EACCES, errno.EPERM, errno.EROFS])
def test_permission_errors_are_permanent(
    backend: LocalDirBackend, root: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    monkeypatch.setattr(local_module, "open_temp", _create_then_raise(code))
    with pytest.raises(PermissionDeniedError, match="permission denied") as ei:
        backend.write("config", b"x")
    assert ei.value.transient is False
    assert ei.value.__cause__.errno == code  # type: ignore[union-attr]
    assert "writable" in ei.value.hint
    assert _temp_files(root) == []


@pytest.mark.parametrize("code", [errno.ENOTCONN, errno.EIO, errno.ETIMEDOUT, errno.ESTALE])
def test_unreachable_mount_is_transient(
    backend: LocalDirBackend, root: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    monkeypatch.setattr(local_module, "open_temp", _raising(code))
    with pytest.raises(BackendUnavailableError, match="did not answer") as ei:
        backend.write("config", b"x")
    assert ei.value.transient is True
    assert ei.value.__cause__.errno == code  # type: ignore[union-attr]


def test_fsync_failure_removes_the_temp_file(
    backend: LocalDirBackend, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fsync(fd: int) -> None:
        raise OSError(errno.EIO, "I/O error")

    backend.write("k", b"old")
    monkeypatch.setattr(local_module.os, "fsync", fsync)
    with pytest.raises(BackendUnavailableError):
        backend.write("k", b"new")
    monkeypatch.undo()
    assert _temp_files(root) == []
    assert backend.read("k") == b"old"


@pytest.mark.parametrize("code", [errno.EINVAL, errno.ENOTSUP])
def test_fsync_not_supported_is_tolerated(
    backend: LocalDirBackend, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    """FUSE mounts (Google Drive) refuse fsync; the write still happens."""

    def fsync(fd: int) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(local_module.os, "fsync", fsync)
    backend.write("k", b"data")
    monkeypatch.undo()
    assert backend.read("k") == b"data"


def test_create_only_without_hard_links(
    backend: LocalDirBackend, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def link(src: Any, dst: Any) -> None:
        raise OSError(errno.ENOTSUP, "no hard links on this mount")

    monkeypatch.setattr(local_module.os, "link", link)
    backend.write("k", b"first", if_absent=True)
    with pytest.raises(AlreadyExistsError):
        backend.write("k", b"second", if_absent=True)
    assert backend.read("k") == b"first"
    assert _temp_files(root) == []


# ---------------------------------------------------------------------------- read-only store


@pytest.fixture
def read_only_root(root: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A store folder with mode 0o555.

    Tests run as root here, and root may write into any folder, so for root the
    ``open_temp`` seam applies the permission bits the way the kernel does for everyone
    else (EACCES when the folder has no write bit).
    """
    LocalDirBackend(root).write("config", b"cfg")
    LocalDirBackend(root).write("index/old", b"seg")
    os.chmod(root / "index", 0o555)
    os.chmod(root, 0o555)
    if os.geteuid() == 0:
        real_open = local_module.open_temp

        def open_temp(path: Any, flags: int, mode: int = 0o777) -> int:
            if not os.stat(os.path.dirname(path)).st_mode & stat.S_IWUSR:
                raise OSError(errno.EACCES, os.strerror(errno.EACCES), str(path))
            return real_open(path, flags, mode)

        monkeypatch.setattr(local_module, "open_temp", open_temp)
    yield root
    os.chmod(root, 0o755)
    os.chmod(root / "index", 0o755)


def test_read_only_store_refuses_writes_but_reads(read_only_root: Path) -> None:
    backend = LocalDirBackend(read_only_root)
    with pytest.raises(PermissionDeniedError) as ei:
        backend.write("index/abc", b"x")
    assert ei.value.transient is False
    with pytest.raises(PermissionDeniedError):
        backend.write("config2", b"x", if_absent=True)
    assert backend.read("config") == b"cfg"
    assert backend.read_range("index/old", -3, 3) == b"seg"
    assert sorted(i.key for i in backend.list("")) == ["config", "index/old"]
    assert _temp_files(read_only_root) == []


# ---------------------------------------------------------------------------- translation


@pytest.mark.parametrize(
    ("code", "cls", "transient"),
    [
        (errno.ENOENT, ObjectNotFoundError, False),
        (errno.ENOSPC, NoSpaceError, False),
        (errno.EDQUOT, NoSpaceError, False),
        (errno.EACCES, PermissionDeniedError, False),
        (errno.EPERM, PermissionDeniedError, False),
        (errno.EROFS, PermissionDeniedError, False),
        (errno.EIO, BackendUnavailableError, True),
        (errno.ENOTCONN, BackendUnavailableError, True),
        (errno.ETIMEDOUT, BackendUnavailableError, True),
        (errno.ESTALE, BackendUnavailableError, True),
        (errno.EAGAIN, BackendUnavailableError, True),
        (errno.EBUSY, BackendUnavailableError, True),
        (errno.ENAMETOOLONG, BackendError, False),
        (errno.EINVAL, BackendError, False),
        (None, BackendError, False),
    ],
)
def test_translate_os_error(code: int | None, cls: type[Exception], transient: bool) -> None:
    exc = OSError(code, "boom") if code is not None else OSError("no errno")
    out = translate_os_error(exc, "packs/ab/cd", "read")
    assert type(out) is cls
    if isinstance(out, BackendError):
        assert out.transient is transient
        assert "read packs/ab/cd" in str(out)
    else:
        assert out.key == "packs/ab/cd"  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------- other calls


def test_read_of_an_unreachable_mount_is_transient(
    backend: LocalDirBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend.write("k", b"x")

    def broken_open(*args: Any, **kwargs: Any) -> Any:
        raise OSError(errno.ENOTCONN, "Transport endpoint is not connected")

    monkeypatch.setattr(local_module, "open", broken_open, raising=False)
    monkeypatch.setattr(local_module.os, "open", broken_open)  # read_range opens with os.open
    with pytest.raises(BackendUnavailableError, match="did not answer while trying to read k"):
        backend.read("k")
    with pytest.raises(BackendUnavailableError):
        backend.read_range("k", 0, 1)


def test_list_of_an_unreachable_mount_is_transient(
    backend: LocalDirBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend.write("packs/ab/x", b"x")

    def scandir(path: Any) -> Any:
        raise OSError(errno.ENOTCONN, "Transport endpoint is not connected")

    monkeypatch.setattr(local_module.os, "scandir", scandir)
    with pytest.raises(BackendUnavailableError, match="list packs/"):
        list(backend.list("packs/"))


@pytest.mark.parametrize("fstype", ["ext4", "fuse.drive"], ids=["local-disk", "drive-mount"])
def test_list_skips_a_file_removed_while_listing(
    root: Path, monkeypatch: pytest.MonkeyPatch, fstype: str
) -> None:
    """On a mount the stats run on a pool (each a round trip); either way a file gone
    before its stat is left out."""
    monkeypatch.setattr(local_module, "filesystem_type", lambda path: fstype)
    backend = LocalDirBackend(root)
    backend.write("a/gone", b"x")
    backend.write("a/kept", b"y")
    real_scandir = os.scandir

    def scandir(path: Any) -> Any:
        entries = list(real_scandir(path))
        gone = root / "a" / "gone"
        if gone.exists() and any(e.name == "gone" for e in entries):
            gone.unlink()  # vanishes between the directory read and the stat
        return iter(entries)

    monkeypatch.setattr(local_module.os, "scandir", scandir)
    assert [i.key for i in backend.list("a/")] == ["a/kept"]


def test_delete_refused_by_the_filesystem(
    backend: LocalDirBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend.write("k", b"x")

    def unlink(path: Any) -> None:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(local_module.os, "unlink", unlink)
    with pytest.raises(PermissionDeniedError, match="delete k"):
        backend.delete("k")


def test_create_only_link_failing_for_another_reason(
    backend: LocalDirBackend, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def link(src: Any, dst: Any) -> None:
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(local_module.os, "link", link)
    with pytest.raises(BackendUnavailableError):
        backend.write("k", b"x", if_absent=True)
    monkeypatch.undo()
    assert _temp_files(root) == []
    with pytest.raises(ObjectNotFoundError):
        backend.read("k")


# ---------------------------------------------------------------------------- cache_data


MOUNTINFO = """\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
61 27 0:52 / /content/drive rw,nosuid,nodev,relatime shared:1 - fuse.drive drive rw
62 61 0:53 / /content/drive/My\\040Drive/x rw,relatime - nfs4 srv:/x rw
"""


@pytest.mark.parametrize(
    ("path", "fstype"),
    [
        ("/", "ext4"),
        ("/content", "ext4"),
        ("/content/drive", "fuse.drive"),
        ("/content/drive/MyDrive/store", "fuse.drive"),
        ("/content/driveX", "ext4"),  # a prefix of a mount point's name is not inside it
        ("/content/drive/My Drive/x/store", "nfs4"),  # octal escapes in mount points
        ("/proc/self", "proc"),
    ],
)
def test_filesystem_type_is_the_longest_mount_point_holding_the_path(
    tmp_path: Path, path: str, fstype: str
) -> None:
    info = tmp_path / "mountinfo"
    info.write_text(MOUNTINFO)
    assert local_module.filesystem_type(path, str(info)) == fstype


def test_filesystem_type_unknown_without_mountinfo(tmp_path: Path) -> None:
    assert local_module.filesystem_type("/", str(tmp_path / "none")) is None


@pytest.mark.parametrize(
    ("fstype", "cached"),
    [
        ("ext4", False),
        ("tmpfs", False),
        ("fuse.drive", False),
        ("fuse", False),
        ("fuseblk", True),
        ("nfs4", True),
        ("cifs", True),
        (None, True),
    ],
)
def test_packs_are_cached_only_where_no_local_copy_exists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fstype: str | None, cached: bool
) -> None:
    """A local disk is as fast as the cache; a FUSE mount such as Drive keeps its own
    copy of what is read; a network share or an unknown filesystem keeps none."""
    monkeypatch.setattr(local_module, "filesystem_type", lambda path: fstype)
    assert LocalDirBackend(tmp_path).capabilities.cache_data is cached


def test_this_machines_temp_folder_is_a_local_disk(tmp_path: Path) -> None:
    """What the test suite relies on: stores under tmp_path are not cached."""
    assert local_module.filesystem_type(tmp_path) in local_module.LOCAL_FILESYSTEMS


# ---------------------------------------------------------------------------- streaming


@pytest.mark.parametrize(
    ("fstype", "streams"),
    [
        ("ext4", True),
        ("xfs", True),
        ("tmpfs", True),
        ("fuse.drive", False),
        ("nfs4", False),
        (None, False),
    ],
)
def test_values_stream_only_onto_a_local_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fstype: str | None, streams: bool
) -> None:
    """A local disk has no transient failures to retry; on a Drive mount or a network
    share a value is spooled on the local disk and written whole, so a dropped
    connection can be retried — never held in memory, so several packs may be on their
    way at once. Only a local disk shows writes in order to every reader (they all go
    through this kernel); a Drive mount or a network share shows other machines' writes
    late and in any order, so a young ref entry there is checked pack by pack before it
    is trusted."""
    monkeypatch.setattr(local_module, "filesystem_type", lambda path: fstype)
    backend = LocalDirBackend(tmp_path)
    assert backend.capabilities.streaming_write is streams
    assert backend.capabilities.ordered_visibility is streams
    assert backend.capabilities.values_in_memory is False
    pending = backend.begin_write()
    assert isinstance(pending, SpooledWrite) is not streams
    pending.write(b"abc")
    pending.commit("packs/00/x")
    assert backend.read("packs/00/x") == b"abc"
    assert [p.name for p in tmp_path.iterdir()] == ["packs"]  # no temp name left


def test_a_stream_that_fails_halfway_leaves_no_temp_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = LocalDirBackend(tmp_path)
    pending = backend.begin_write()
    pending.write(b"abc")

    def full(fd: int, data: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(local_module.os, "write", full)
    with pytest.raises(NoSpaceError):
        pending.write(b"more")
    monkeypatch.undo()
    pending.abort()
    assert list(tmp_path.iterdir()) == []


def test_retrying_backend_streams_onto_a_local_disk_and_retries_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through RetryingBackend, a local disk's stream is used as it is; elsewhere the
    value is spooled on the local disk and its commit is retried, each attempt writing
    it whole from the spool's start: a mount that drops halfway through a pack (after
    some of its bytes went out) still ends with the whole pack under its name."""
    local = RetryingBackend(LocalDirBackend(tmp_path / "a"), sleep=lambda s: None)
    assert not isinstance(local.begin_write(), SpooledWrite)

    monkeypatch.setattr(local_module, "filesystem_type", lambda path: "fuse.drive")
    monkeypatch.setattr(base_module, "SPOOL_PIECE", 4)
    inner = LocalDirBackend(tmp_path / "b")
    writes: list[bytes] = []
    real_write_all = local_module._write_all

    def dropping(fd: int, data: bytes) -> None:
        writes.append(bytes(data))
        if len(writes) == 2:  # the mount drops after the first piece went out
            raise OSError(errno.ENOTCONN, "Transport endpoint is not connected")
        real_write_all(fd, data)

    monkeypatch.setattr(local_module, "_write_all", dropping)
    drive = RetryingBackend(inner, sleep=lambda s: None)
    pending = drive.begin_write()
    pending.write(b"pack ")
    pending.write(b"bytes")
    pending.commit("packs/00/y", if_absent=True)
    assert drive.retries == 1
    assert writes == [b"pack", b" byt", b"pack", b" byt", b"es"]
    assert inner.read("packs/00/y") == b"pack bytes"
    assert sorted(p.name for p in (tmp_path / "b" / "packs" / "00").iterdir()) == ["y"]
    pending.abort()  # harmless after commit


def test_a_spooled_value_gives_up_on_a_permanent_error_and_leaves_no_temp_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local_module, "filesystem_type", lambda path: "fuse.drive")
    inner = LocalDirBackend(tmp_path)
    drive = RetryingBackend(inner, sleep=lambda s: None)
    pending = drive.begin_write()
    pending.write(b"pack bytes")

    def full(fd: int, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(local_module, "_write_all", full)
    with pytest.raises(NoSpaceError):
        pending.commit("packs/00/z", if_absent=True)
    assert drive.retries == 0
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []
    with pytest.raises(ValueError, match="committed or aborted"):
        pending.write(b"more")  # its spool was let go


def test_a_full_local_disk_while_spooling_names_the_spool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local_module, "filesystem_type", lambda path: "fuse.drive")
    pending = LocalDirBackend(tmp_path).begin_write()

    def full(fd: int, data: object, offset: int) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(base_module.os, "pwrite", full)
    with pytest.raises(NoSpaceError) as info:
        pending.write(b"pack bytes")
    assert "local spool file" in info.value.message
    assert "TMPDIR" in (info.value.hint or "")
    monkeypatch.undo()
    pending.abort()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("fstype", ["ext4", "fuse.drive"], ids=["local-disk", "drive-mount"])
def test_listing_a_folder_of_many_files_on_either_filesystem(
    root: Path, monkeypatch: pytest.MonkeyPatch, fstype: str
) -> None:
    monkeypatch.setattr(local_module, "filesystem_type", lambda path: fstype)
    backend = LocalDirBackend(root)
    keys = {f"index/{i:064x}": b"s" * i for i in range(40)}
    keys["index/sub/deeper"] = b"d"
    for key, data in keys.items():
        backend.write(key, data)
    listed = {i.key: i.size for i in backend.list("index/")}
    assert listed == {k: len(v) for k, v in keys.items()}


# ------------------------------------------------------------------- page cache advice


def _advice(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int, int]]:
    calls: list[tuple[int, int, int]] = []
    real = os.posix_fadvise

    def record(fd: int, offset: int, length: int, advice: int) -> None:
        assert advice == os.POSIX_FADV_DONTNEED
        calls.append((os.fstat(fd).st_size, offset, length))
        real(fd, offset, length, advice)

    monkeypatch.setattr(local_module.os, "posix_fadvise", record)
    return calls


def test_a_large_value_leaves_the_page_cache_once_durable(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pack nothing reads back soon does not push the user's files out of the page
    cache, and the next pack reuses its memory; small values (refs, commits) stay."""
    monkeypatch.setattr(local_module, "filesystem_type", lambda path: "ext4")
    backend = LocalDirBackend(root)
    calls = _advice(monkeypatch)
    big = local_module.DROP_CACHED_MIN
    backend.write("commits/ab/small", b"c" * 100)
    assert calls == []
    backend.write("packs/00/big", b"p" * big)
    pending = backend.begin_write()
    pending.write(b"q" * big)
    pending.commit("packs/00/streamed")
    assert calls == [(big, 0, 0), (big, 0, 0)]
    assert backend.read("packs/00/big") == b"p" * big  # advice only: nothing is lost


def test_no_advice_without_fsync(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Dirty pages are never dropped: the advice follows fsync only."""
    monkeypatch.setattr(local_module, "filesystem_type", lambda path: "ext4")
    backend = LocalDirBackend(root, fsync=False)
    calls = _advice(monkeypatch)
    backend.write("packs/00/big", b"p" * local_module.DROP_CACHED_MIN)
    assert calls == []


def test_a_large_range_read_leaves_the_page_cache(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local_module, "filesystem_type", lambda path: "ext4")
    backend = LocalDirBackend(root)
    size = 3 * local_module.DROP_CACHED_MIN
    data = os.urandom(size)
    backend.write("packs/00/big", data)
    calls = _advice(monkeypatch)
    assert backend.read_range("packs/00/big", 0, 100) == data[:100]
    assert calls == []
    n = local_module.DROP_CACHED_MIN
    assert backend.read_range("packs/00/big", n, n) == data[n : 2 * n]
    assert calls == [(size, n, n)]


def test_no_advice_on_a_mount(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a mount (Drive's FUSE, NFS, SMB) the advice may be a round trip or drop the
    mount's own read-ahead: neither writes nor reads give it."""
    monkeypatch.setattr(local_module, "filesystem_type", lambda path: "fuse.drive")
    backend = LocalDirBackend(root)
    calls = _advice(monkeypatch)
    data = os.urandom(2 * local_module.DROP_CACHED_MIN)
    backend.write("packs/00/big", data)
    n = local_module.DROP_CACHED_MIN
    assert backend.read_range("packs/00/big", n, n) == data[n:]
    assert calls == []


def test_advice_refused_by_the_platform_is_harmless(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local_module, "filesystem_type", lambda path: "ext4")
    backend = LocalDirBackend(root)

    def refuse(*args: object) -> None:
        raise OSError(errno.ENOSYS, "not here")

    monkeypatch.setattr(local_module.os, "posix_fadvise", refuse)
    data = os.urandom(2 * local_module.DROP_CACHED_MIN)
    backend.write("packs/00/big", data)
    assert backend.read_range("packs/00/big", 0, len(data)) == data


@pytest.mark.parametrize("fstype", ["ext4", "fuse.drive"], ids=["local-disk", "drive-mount"])
def test_a_stat_failing_while_listing_is_a_backend_error(
    root: Path, monkeypatch: pytest.MonkeyPatch, fstype: str
) -> None:
    """A mount that drops between the folder's listing and its stats: a transient
    backend error (retried by RetryingBackend), never a raw OSError."""
    monkeypatch.setattr(local_module, "filesystem_type", lambda path: fstype)
    backend = LocalDirBackend(root)
    backend.write("a/x", b"1")
    backend.write("a/y", b"2")

    def dropped(entry: os.DirEntry[str]) -> os.stat_result | None:
        raise OSError(errno.ENOTCONN, "Transport endpoint is not connected")

    monkeypatch.setattr(local_module, "_lstat_entry", dropped)
    with pytest.raises(BackendUnavailableError):
        list(backend.list("a/"))
    assert sorted(backend.list_keys("a/")) == ["a/x", "a/y"]  # names need no stat


def test_a_folder_type_failing_while_listing_is_a_backend_error(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A filesystem whose listing carries no entry types makes ``is_dir`` a stat; one
    failing on a dropped mount is a backend error too, never a raw OSError."""
    backend = LocalDirBackend(root)
    backend.write("a/x", b"1")
    real_scandir = os.scandir

    class Untyped:
        def __init__(self, entry: os.DirEntry[str]) -> None:
            self.path, self.name = entry.path, entry.name

        def is_dir(self, *, follow_symlinks: bool = True) -> bool:
            raise OSError(errno.ENOTCONN, "Transport endpoint is not connected")

    def scandir(path: str) -> list[Untyped]:
        return [Untyped(e) for e in real_scandir(path)]

    monkeypatch.setattr(local_module.os, "scandir", scandir)
    with pytest.raises(BackendUnavailableError):
        list(backend.list_keys("a/"))
    monkeypatch.undo()
    assert list(backend.list_keys("a/")) == ["a/x"]


def test_a_listing_abandoned_midway_on_a_mount_stops_its_stat_threads(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A caller that stops reading a listing (found what it looked for) leaves no stat
    threads behind, and the next listing is whole."""
    monkeypatch.setattr(local_module, "filesystem_type", lambda path: "fuse.drive")
    backend = LocalDirBackend(root)
    keys = {f"packs/{d:02x}/{i:064x}" for d in range(3) for i in range(5)}
    for key in keys:
        backend.write(key, b"p")
    before = set(threading.enumerate())
    listing = backend.list("packs/")
    first = next(listing)
    assert first.key in keys
    listing.close()  # abandoned after one folder's stats
    for t in set(threading.enumerate()) - before:
        assert t.name.startswith("cas-list")
        t.join(5)
        assert not t.is_alive()
    assert {i.key for i in backend.list("packs/")} == keys
