"""The backend contract, one suite for every backend (STYLE §9.3).

A test module for a backend supplies a ``harness`` fixture (see :class:`Harness`) and a
class deriving from :class:`BackendContract`; every test here then runs against that
backend. The harness also reads and writes *around* the backend (straight on disk, or
with a raw S3 client), so that what the backend claims to have stored is checked through
an independent channel.

Adding S3 later is one module: a ``harness`` fixture that starts moto, a
``S3Harness`` whose ``raw_*`` methods use boto3 directly, and
``class TestS3Backend(BackendContract): pass``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Protocol

import pytest

from cas.errors import (
    AlreadyExistsError,
    NotFoundError,
    ObjectNotFoundError,
    PreconditionFailedError,
    ShortReadError,
)
from cas.store.base import (
    TEMP_SUFFIX,
    Backend,
    Capabilities,
    KeyInfo,
    begin_write,
    is_valid_key,
    write_if_version,
)

ALL_BYTES = bytes(range(256)) * 4

INVALID_KEYS = [
    "",
    "Config",
    "packs/AB/cd",
    "..",
    ".",
    "a/../b",
    "a/./b",
    "/abs",
    "a/",
    "a//b",
    "a b",
    "a\tb",
    "a\\b",
    "ü",
    f"x.abc123{TEMP_SUFFIX}",
    f"dir/x.abc123{TEMP_SUFFIX}",
]


BAD_KEY = "invalid backend key"


class Harness(Protocol):
    """How the contract suite makes a backend and reaches around it."""

    #: False where a rewrite of the same size may keep the version token (a folder's
    #: token is size + mtime, and mtime has the kernel's coarse clock resolution).
    same_size_rewrite_changes_version: bool

    def make(self) -> Backend:
        """A new, empty backend."""
        ...

    def raw_write(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key`` without going through the backend."""
        ...

    def raw_read(self, key: str) -> bytes | None:
        """The bytes under ``key`` as the storage holds them, or None."""
        ...

    def plant_temp(self, key: str) -> bool:
        """Leave a temp upload (``<key>.<random><TEMP_SUFFIX>``) beside ``key``, as a
        crashed writer would; False where the storage cannot hold one."""
        ...


def _keys(backend: Backend, prefix: str = "") -> list[str]:
    return sorted(i.key for i in backend.list(prefix))


class BackendContract:
    """Every backend passes these (a backend with ``compare_and_swap`` also passes
    :class:`CompareAndSwapContract`)."""

    @pytest.fixture
    def backend(self, harness: Harness) -> Iterator[Backend]:
        b = harness.make()
        yield b
        b.close()

    # ------------------------------------------------------------------ basics

    def test_is_a_backend(self, backend: Backend) -> None:
        assert isinstance(backend, Backend)
        assert isinstance(backend.capabilities, Capabilities)
        assert backend.capabilities.max_connections >= 1
        assert backend.location

    @pytest.mark.parametrize(
        "key", ["config", "packs/ab/abcdef", "refs/heads/a%2fb/0-x", "a.b_c-d"]
    )
    def test_write_read_round_trip(self, backend: Backend, harness: Harness, key: str) -> None:
        backend.write(key, ALL_BYTES)
        assert backend.read(key) == ALL_BYTES
        assert harness.raw_read(key) == ALL_BYTES

    def test_read_sees_what_was_stored_around_the_backend(
        self, backend: Backend, harness: Harness
    ) -> None:
        harness.raw_write("index/abc", b"from outside")
        assert backend.read("index/abc") == b"from outside"
        assert backend.stat("index/abc").size == 12
        assert _keys(backend) == ["index/abc"]

    def test_write_replaces(self, backend: Backend, harness: Harness) -> None:
        backend.write("k", b"old value")
        backend.write("k", b"new")
        assert backend.read("k") == b"new"
        assert harness.raw_read("k") == b"new"

    def test_zero_byte_value(self, backend: Backend) -> None:
        backend.write("empty", b"")
        assert backend.read("empty") == b""
        assert backend.stat("empty").size == 0
        assert backend.read_range("empty", 0, 0) == b""
        assert list(backend.list("")) == [KeyInfo("empty", 0, backend.stat("empty").version)]
        with pytest.raises(ShortReadError):
            backend.read_range("empty", 0, 1)

    def test_large_value(self, backend: Backend) -> None:
        data = ALL_BYTES * 1024  # 1 MiB
        backend.write("packs/00/big", data)
        assert backend.read("packs/00/big") == data
        assert backend.read_range("packs/00/big", 500_000, 1000) == data[500_000:501_000]

    # ------------------------------------------------------------------ missing keys

    def test_read_missing(self, backend: Backend) -> None:
        with pytest.raises(ObjectNotFoundError) as ei:
            backend.read("nope/missing")
        assert ei.value.key == "nope/missing"
        assert isinstance(ei.value, NotFoundError)
        assert isinstance(ei.value, LookupError)

    def test_read_range_and_stat_of_missing(self, backend: Backend) -> None:
        with pytest.raises(ObjectNotFoundError):
            backend.read_range("missing", 0, 1)
        with pytest.raises(ObjectNotFoundError):
            backend.read_range("missing", -1, 1)
        with pytest.raises(ObjectNotFoundError):
            backend.stat("missing")

    def test_a_folder_of_keys_is_not_a_key(self, backend: Backend) -> None:
        backend.write("dir/child", b"x")
        with pytest.raises(ObjectNotFoundError):
            backend.read("dir")
        with pytest.raises(ObjectNotFoundError):
            backend.read_range("dir", 0, 0)
        with pytest.raises(ObjectNotFoundError):
            backend.stat("dir")
        backend.delete("dir")
        assert backend.read("dir/child") == b"x"

    # ------------------------------------------------------------------ ranges

    @pytest.mark.parametrize(
        ("offset", "length", "expected"),
        [
            (0, 10, ALL_BYTES[:10]),
            (100, 50, ALL_BYTES[100:150]),
            (len(ALL_BYTES) - 7, 7, ALL_BYTES[-7:]),  # exactly at the end
            (0, len(ALL_BYTES), ALL_BYTES),
            (len(ALL_BYTES), 0, b""),
            (5, 0, b""),
            (-24, 24, ALL_BYTES[-24:]),  # a pack trailer
            (-24, 8, ALL_BYTES[-24:-16]),
            (-len(ALL_BYTES), len(ALL_BYTES), ALL_BYTES),
            (-1, 1, ALL_BYTES[-1:]),
        ],
    )
    def test_read_range(self, backend: Backend, offset: int, length: int, expected: bytes) -> None:
        backend.write("packs/ab/p", ALL_BYTES)
        assert backend.read_range("packs/ab/p", offset, length) == expected

    @pytest.mark.parametrize(
        ("offset", "length", "available"),
        [
            (len(ALL_BYTES) - 2, 3, 2),  # one byte past the end
            (len(ALL_BYTES), 1, 0),
            (len(ALL_BYTES) + 100, 10, 0),
            (-5, 6, 5),  # negative offset, length past the end
            (-len(ALL_BYTES) - 1, 1, 0),  # before the start
            (0, len(ALL_BYTES) + 1, len(ALL_BYTES)),
        ],
    )
    def test_read_range_past_the_end_is_an_error(
        self, backend: Backend, offset: int, length: int, available: int
    ) -> None:
        backend.write("p", ALL_BYTES)
        with pytest.raises(ShortReadError) as ei:
            backend.read_range("p", offset, length)
        assert ei.value.key == "p"
        assert ei.value.expected == length
        assert ei.value.actual == available

    def test_read_range_negative_length(self, backend: Backend) -> None:
        backend.write("p", ALL_BYTES)
        with pytest.raises(ValueError, match="negative"):
            backend.read_range("p", 0, -1)

    # ------------------------------------------------------------------ create-only

    def test_if_absent_on_a_new_key(self, backend: Backend, harness: Harness) -> None:
        backend.write("refs/heads/main/1-x", b"entry", if_absent=True)
        assert backend.read("refs/heads/main/1-x") == b"entry"
        assert harness.raw_read("refs/heads/main/1-x") == b"entry"

    def test_if_absent_on_an_existing_key(self, backend: Backend) -> None:
        backend.write("k", b"first")
        with pytest.raises(AlreadyExistsError) as ei:
            backend.write("k", b"second", if_absent=True)
        assert "k" in str(ei.value)
        assert backend.read("k") == b"first"

    def test_if_absent_on_an_existing_zero_byte_key(self, backend: Backend) -> None:
        backend.write("k", b"")
        with pytest.raises(AlreadyExistsError):
            backend.write("k", b"x", if_absent=True)
        assert backend.read("k") == b""

    def test_if_absent_after_delete(self, backend: Backend) -> None:
        backend.write("k", b"first", if_absent=True)
        backend.delete("k")
        backend.write("k", b"again", if_absent=True)
        assert backend.read("k") == b"again"

    def test_racing_create_only_writes_have_one_winner(self, backend: Backend) -> None:
        if not backend.capabilities.conditional_write:
            pytest.skip("create-only is checked, not enforced, on this backend")
        winners: list[int] = []
        losers: list[int] = []
        barrier = threading.Barrier(8)

        def write(i: int) -> None:
            barrier.wait()
            try:
                backend.write("refs/heads/main/0000000002-x", b"writer %d" % i, if_absent=True)
            except AlreadyExistsError:
                losers.append(i)
            else:
                winners.append(i)

        threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(winners) == 1
        assert len(losers) == 7
        assert backend.read("refs/heads/main/0000000002-x") == b"writer %d" % winners[0]

    def test_readers_never_see_half_a_write(self, backend: Backend) -> None:
        values = [bytes([i]) * 200_000 for i in (1, 2)]
        backend.write("k", values[0])
        stop = threading.Event()
        seen: list[bytes] = []

        def read() -> None:
            while not stop.is_set():
                seen.append(backend.read("k"))

        reader = threading.Thread(target=read)
        reader.start()
        try:
            for i in range(20):
                backend.write("k", values[i % 2])
        finally:
            stop.set()
            reader.join()
        assert seen
        assert all(v in values for v in seen)

    # ------------------------------------------------------------------ listing

    def test_list_sees_every_key_with_its_size(self, backend: Backend) -> None:
        written = {
            "config": b"c",
            "packs/ab/ab01": b"p" * 10,
            "packs/ab/ab02": b"",
            "packs/cd/cd01": b"q" * 3,
            "index/i1": b"i" * 7,
            "refs/heads/main/0000000001-x": b"r",
        }
        for k, v in written.items():
            backend.write(k, v)
        listed = {i.key: i.size for i in backend.list("")}
        assert listed == {k: len(v) for k, v in written.items()}
        assert _keys(backend, "packs/") == ["packs/ab/ab01", "packs/ab/ab02", "packs/cd/cd01"]
        assert _keys(backend, "packs/ab/") == ["packs/ab/ab01", "packs/ab/ab02"]
        assert _keys(backend, "refs/") == ["refs/heads/main/0000000001-x"]
        assert all(is_valid_key(k) for k in listed)
        for prefix in ("", "packs/", "packs/ab/", "refs/", "index/", "nothing/"):
            assert sorted(backend.list_keys(prefix)) == _keys(backend, prefix)

    def test_list_versions_match_stat(self, backend: Backend) -> None:
        backend.write("a/b", b"12345")
        (info,) = backend.list("a/")
        assert info == backend.stat("a/b")

    def test_list_of_a_missing_prefix_is_empty(self, backend: Backend) -> None:
        assert list(backend.list("")) == []
        assert list(backend.list("packs/")) == []
        backend.write("packs/ab/x", b"x")
        assert list(backend.list("index/")) == []
        assert list(backend.list("packs/zz/")) == []

    def test_list_prefix_is_a_folder_not_a_string_prefix(self, backend: Backend) -> None:
        backend.write("pack/x", b"1")
        backend.write("packs/y", b"2")
        assert _keys(backend, "pack/") == ["pack/x"]

    @pytest.mark.parametrize("prefix", ["packs", "packs/ab", "../", "/etc/", "Packs/", "a//"])
    def test_list_refuses_a_bad_prefix(self, backend: Backend, prefix: str) -> None:
        with pytest.raises(ValueError, match="invalid list prefix"):
            list(backend.list(prefix))
        with pytest.raises(ValueError, match="invalid list prefix"):
            list(backend.list_keys(prefix))

    def test_list_hides_temp_files(self, backend: Backend, harness: Harness) -> None:
        backend.write("packs/ab/real", b"data")
        if not harness.plant_temp("packs/ab/crashed"):
            pytest.skip("this storage cannot hold a temp upload")
        harness.plant_temp("config")
        assert _keys(backend) == ["packs/ab/real"]
        assert _keys(backend, "packs/ab/") == ["packs/ab/real"]
        assert list(backend.list_keys("")) == ["packs/ab/real"]

    # ------------------------------------------------------------------ begin_write

    def test_a_streamed_value_appears_whole_at_commit(
        self, backend: Backend, harness: Harness
    ) -> None:
        pending = begin_write(backend)
        for i in range(8):
            pending.write(ALL_BYTES * (i + 1))
            assert _keys(backend) == []  # invisible until committed, temp name included
        pending.commit("packs/ab/streamed", if_absent=True)
        expected = b"".join(ALL_BYTES * (i + 1) for i in range(8))
        assert backend.read("packs/ab/streamed") == expected
        assert harness.raw_read("packs/ab/streamed") == expected
        assert _keys(backend) == ["packs/ab/streamed"]
        pending.abort()  # harmless after commit
        assert backend.read("packs/ab/streamed") == expected

    def test_a_streamed_create_only_value_does_not_replace(self, backend: Backend) -> None:
        backend.write("packs/ab/x", b"first")
        pending = begin_write(backend)
        pending.write(b"second")
        with pytest.raises(AlreadyExistsError):
            pending.commit("packs/ab/x", if_absent=True)
        pending.abort()
        assert backend.read("packs/ab/x") == b"first"
        assert _keys(backend) == ["packs/ab/x"]

    def test_an_aborted_stream_leaves_nothing(self, backend: Backend, harness: Harness) -> None:
        pending = begin_write(backend)
        pending.write(ALL_BYTES)
        pending.abort()
        pending.abort()
        assert _keys(backend) == []
        assert harness.raw_read("packs/ab/never") is None

    def test_a_streamed_value_may_be_empty_or_replace(self, backend: Backend) -> None:
        backend.write("k", b"old")
        pending = begin_write(backend)
        pending.commit("k")
        assert backend.read("k") == b""

    def test_list_after_delete(self, backend: Backend) -> None:
        backend.write("a/1", b"x")
        backend.write("a/2", b"y")
        backend.delete("a/1")
        assert _keys(backend, "a/") == ["a/2"]

    # ------------------------------------------------------------------ delete

    def test_delete_is_idempotent(self, backend: Backend, harness: Harness) -> None:
        backend.delete("never/written")
        backend.write("k", b"x")
        backend.delete("k")
        backend.delete("k")
        with pytest.raises(ObjectNotFoundError):
            backend.read("k")
        assert harness.raw_read("k") is None
        assert _keys(backend) == []

    # ------------------------------------------------------------------ stat

    def test_stat(self, backend: Backend) -> None:
        backend.write("s/k", b"12345")
        info = backend.stat("s/k")
        assert (info.key, info.size) == ("s/k", 5)
        assert info.version

    def test_stat_changes_after_a_rewrite(self, backend: Backend) -> None:
        backend.write("k", b"12345")
        before = backend.stat("k")
        backend.write("k", b"123456789")
        after = backend.stat("k")
        assert after.size == 9
        assert after.version != before.version

    def test_stat_version_changes_after_a_same_size_rewrite(
        self, backend: Backend, harness: Harness, request: pytest.FixtureRequest
    ) -> None:
        if not harness.same_size_rewrite_changes_version:
            request.applymarker(
                pytest.mark.xfail(
                    reason="version token is size + mtime; mtime may not move within a tick",
                    strict=False,
                )
            )
        backend.write("k", b"aaaa")
        before = backend.stat("k").version
        backend.write("k", b"bbbb")
        assert backend.stat("k").version != before

    # ------------------------------------------------------------------ keys

    @pytest.mark.parametrize("key", INVALID_KEYS)
    def test_invalid_keys_are_refused(self, backend: Backend, key: str) -> None:
        with pytest.raises(ValueError, match=BAD_KEY):
            backend.write(key, b"x")
        with pytest.raises(ValueError, match=BAD_KEY):
            backend.write(key, b"x", if_absent=True)
        with pytest.raises(ValueError, match=BAD_KEY):
            backend.read(key)
        with pytest.raises(ValueError, match=BAD_KEY):
            backend.read_range(key, 0, 1)
        with pytest.raises(ValueError, match=BAD_KEY):
            backend.stat(key)
        with pytest.raises(ValueError, match=BAD_KEY):
            backend.delete(key)
        assert list(backend.list("")) == []

    # ------------------------------------------------------------------ compare-and-swap

    def test_compare_and_swap_is_there_exactly_where_the_capability_says(
        self, backend: Backend
    ) -> None:
        backend.write("k", b"old")
        version = backend.stat("k").version
        if backend.capabilities.compare_and_swap:
            write_if_version(backend, "k", b"new", version)
            assert backend.read("k") == b"new"
        else:
            with pytest.raises(ValueError, match="no compare-and-swap"):
                write_if_version(backend, "k", b"new", version)
            assert backend.read("k") == b"old"


class CompareAndSwapContract:
    """Backends with ``capabilities.compare_and_swap`` pass these too (mix in beside
    :class:`BackendContract`): ``write(..., if_version=token)``."""

    @pytest.fixture
    def cas_backend(self, backend: Backend) -> Backend:
        assert backend.capabilities.compare_and_swap, "mixed into a backend without it"
        return backend

    def test_a_write_at_the_expected_version_replaces(
        self, cas_backend: Backend, harness: Harness
    ) -> None:
        cas_backend.write("refs/x", b"one")
        version = cas_backend.stat("refs/x").version
        write_if_version(cas_backend, "refs/x", b"two", version)
        assert cas_backend.read("refs/x") == b"two"
        assert harness.raw_read("refs/x") == b"two"
        assert cas_backend.stat("refs/x").version != version

    def test_a_version_from_list_is_a_token_too(self, cas_backend: Backend) -> None:
        cas_backend.write("refs/x", b"one")
        (info,) = cas_backend.list("refs/")
        write_if_version(cas_backend, "refs/x", b"two", info.version)
        assert cas_backend.read("refs/x") == b"two"

    def test_a_write_at_a_stale_version_fails(self, cas_backend: Backend, harness: Harness) -> None:
        cas_backend.write("refs/x", b"one")
        version = cas_backend.stat("refs/x").version
        harness.raw_write("refs/x", b"someone else's")
        with pytest.raises(PreconditionFailedError):
            write_if_version(cas_backend, "refs/x", b"mine", version)
        assert cas_backend.read("refs/x") == b"someone else's"

    def test_a_write_at_a_version_of_a_deleted_key_fails(self, cas_backend: Backend) -> None:
        cas_backend.write("refs/x", b"one")
        version = cas_backend.stat("refs/x").version
        cas_backend.delete("refs/x")
        with pytest.raises(PreconditionFailedError):
            write_if_version(cas_backend, "refs/x", b"mine", version)
        with pytest.raises(ObjectNotFoundError):
            cas_backend.read("refs/x")

    def test_a_write_at_a_version_of_a_missing_key_fails(self, cas_backend: Backend) -> None:
        cas_backend.write("refs/other", b"one")
        version = cas_backend.stat("refs/other").version
        with pytest.raises(PreconditionFailedError):
            write_if_version(cas_backend, "refs/x", b"mine", version)
        with pytest.raises(ObjectNotFoundError):
            cas_backend.read("refs/x")

    def test_an_empty_token_is_a_bug(self, cas_backend: Backend) -> None:
        cas_backend.write("refs/x", b"one")
        with pytest.raises(ValueError, match="version token"):
            write_if_version(cas_backend, "refs/x", b"two", "")
        assert cas_backend.read("refs/x") == b"one"

    def test_racing_swaps_from_one_version_have_one_winner(self, cas_backend: Backend) -> None:
        cas_backend.write("refs/x", b"start")
        version = cas_backend.stat("refs/x").version
        winners: list[int] = []
        losers: list[int] = []
        barrier = threading.Barrier(8)

        def swap(i: int) -> None:
            barrier.wait()
            try:
                write_if_version(cas_backend, "refs/x", b"writer %d" % i, version)
            except PreconditionFailedError:
                losers.append(i)
            else:
                winners.append(i)

        threads = [threading.Thread(target=swap, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(winners) == 1
        assert len(losers) == 7
        assert cas_backend.read("refs/x") == b"writer %d" % winners[0]
