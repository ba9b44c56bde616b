"""The backend contract for S3Backend, against a real S3-protocol server on loopback."""

from __future__ import annotations

import io
import os
from typing import Any

import pytest

from cas.errors import (
    AlreadyExistsError,
    BackendError,
    BackendUnavailableError,
    PermissionDeniedError,
    RepositoryError,
)
from cas.store import open_backend
from cas.store.base import SPOOL_PIECE, TEMP_SUFFIX, Spool, SpooledWrite
from cas.store.retry import RetryingBackend
from cas.store.s3 import S3Backend, parse_s3_url
from tests.backends.contract import BackendContract
from tests.conftest import S3_CREDENTIALS, S3_REGION, S3Server


class S3Harness:
    """Reaches around an S3Backend with a raw boto3 client."""

    same_size_rewrite_changes_version = True

    def __init__(self, server: S3Server) -> None:
        self.server = server
        self.bucket = server.new_bucket()
        self.prefix = "some/prefix/"

    def make(self) -> S3Backend:
        return S3Backend(
            self.bucket,
            self.prefix,
            endpoint_url=self.server.endpoint,
            region=S3_REGION,
            credentials=S3_CREDENTIALS,
            multipart_threshold=5 << 20,
        )

    def raw_write(self, key: str, data: bytes) -> None:
        self.server.client.put_object(Bucket=self.bucket, Key=self.prefix + key, Body=data)

    def raw_read(self, key: str) -> bytes | None:
        try:
            resp = self.server.client.get_object(Bucket=self.bucket, Key=self.prefix + key)
        except self.server.client.exceptions.NoSuchKey:
            return None
        return bytes(resp["Body"].read())

    def plant_temp(self, key: str) -> bool:
        self.raw_write(f"{key}.abc123{TEMP_SUFFIX}", b"half an upload")
        return True


@pytest.fixture
def harness(s3_server: S3Server) -> S3Harness:
    return S3Harness(s3_server)


class TestS3Backend(BackendContract):
    pass


def test_large_values_go_through_multipart(harness: S3Harness) -> None:
    backend = harness.make()
    data = bytes(range(256)) * (48 * 1024)  # 12 MiB: above the 5 MiB threshold
    backend.write("packs/ab/big", data, if_absent=True)
    assert harness.raw_read("packs/ab/big") == data
    assert backend.read_range("packs/ab/big", -1000, 1000) == data[-1000:]
    with pytest.raises(AlreadyExistsError):
        backend.write("packs/ab/big", data, if_absent=True)


@pytest.mark.parametrize("size", [3 << 20, 12 << 20], ids=["one-put", "multipart"])
def test_a_pack_goes_out_from_its_spool_file_not_from_memory(harness: S3Harness, size: int) -> None:
    """A pack is gathered in a spool file on the local disk and sent from it (one PUT,
    or a multipart upload above the threshold), so several on their way at once hold
    none of their bytes in memory; create-only still holds at the store."""
    backend = harness.make()
    assert not backend.capabilities.values_in_memory
    assert backend.capabilities.max_uploads == 4
    bodies: list[type] = []
    real_put, real_part = backend._client.put_object, backend._client.upload_part

    def put_object(**kw: Any) -> Any:
        bodies.append(type(kw["Body"]))
        return real_put(**kw)

    def upload_part(**kw: Any) -> Any:
        assert len(kw["Body"]) <= 16 << 20  # one part at a time, read from the spool
        return real_part(**kw)

    backend._client.put_object = put_object  # type: ignore[method-assign]
    backend._client.upload_part = upload_part  # type: ignore[method-assign]
    data = os.urandom(size)
    pending = backend.begin_write()
    assert isinstance(pending, SpooledWrite)
    for i in range(0, size, 1 << 20):
        pending.write(data[i : i + (1 << 20)])
    pending.commit("packs/cd/spooled", if_absent=True)
    assert harness.raw_read("packs/cd/spooled") == data
    if size < backend.multipart_threshold:
        assert bodies == [io.BufferedReader]  # streamed from the file, never bytes
    again = backend.begin_write()
    again.write(os.urandom(size))  # the same path: one PUT, or a multipart upload
    with pytest.raises(AlreadyExistsError):
        again.commit("packs/cd/spooled", if_absent=True)
    again.abort()  # (a failed commit keeps its spool for a retry)
    assert harness.raw_read("packs/cd/spooled") == data


def test_a_spooled_pack_cut_off_midway_is_sent_again_whole(harness: S3Harness) -> None:
    """A connection dropped while a pack's body is being sent: RetryingBackend commits
    again, and the store gets every byte, read from the spool's start."""
    import botocore.exceptions

    inner = harness.make()
    real_put = inner._client.put_object
    calls: list[int] = []

    def put_object(**kw: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            kw["Body"].read(1 << 20)  # part of the body went out, then the link dropped
            raise botocore.exceptions.ConnectionClosedError(endpoint_url="http://127.0.0.1")
        return real_put(**kw)

    inner._client.put_object = put_object  # type: ignore[method-assign]
    backend = RetryingBackend(inner, sleep=lambda _s: None)
    data = os.urandom(3 << 20)
    pending = backend.begin_write()
    pending.write(data)
    pending.commit("packs/cd/retried", if_absent=True)
    assert len(calls) == 2
    assert harness.raw_read("packs/cd/retried") == data


def test_a_failure_while_a_request_is_sent_is_a_cas_error(harness: S3Harness) -> None:
    """botocore wraps whatever fails while it sends (an SSL or proxy error, or our own
    error reading a spooled body) in HTTPClientError: it comes out as a cas error."""
    import botocore.exceptions

    backend = harness.make()
    ours = BackendError("a local spool file for a pack: its local spool file was dropped")
    with pytest.raises(BackendError) as exc, backend._errors("packs/ab/x", "write"):
        raise botocore.exceptions.HTTPClientError(error=ours)
    assert exc.value is ours
    with pytest.raises(BackendUnavailableError), backend._errors("packs/ab/x", "write"):
        raise botocore.exceptions.HTTPClientError(error=OSError("proxy refused"))


def test_a_spool_reads_back_as_a_seekable_file() -> None:
    """What an SDK does with a request body: read in pieces, seek back to retry, find
    the length from the end."""
    spool = Spool("a test value")
    data = os.urandom(3 * SPOOL_PIECE + 123)
    spool.append(data)
    with spool.reader() as body:
        assert body.seekable()
        assert body.read(10) == data[:10]
        assert body.tell() == 10
        assert body.read() == data[10:]
        assert body.seek(0, os.SEEK_END) == len(data)
        body.seek(5)
        assert body.read(7) == data[5:12]
        body.seek(0)
        assert body.read() == data
    spool.close()


def test_keys_outside_the_prefix_are_invisible(harness: S3Harness) -> None:
    backend = harness.make()
    harness.server.client.put_object(Bucket=harness.bucket, Key="elsewhere/config", Body=b"x")
    backend.write("config", b"mine")
    assert [i.key for i in backend.list("")] == ["config"]


def test_url_parsing_and_open_backend(s3_server: S3Server, s3_env: None) -> None:
    assert parse_s3_url("s3://b/p/q?region=eu-west-1") == ("b", "p/q/", {"region": "eu-west-1"})
    assert parse_s3_url("s3://b") == ("b", "", {})
    with pytest.raises(RepositoryError, match="unknown option"):
        parse_s3_url("s3://b/p?secret=x")
    bucket = s3_server.new_bucket()
    backend = open_backend(s3_server.url(bucket, "x"))
    backend.write("config", b"c")
    assert s3_server.client.get_object(Bucket=bucket, Key="x/config")["Body"].read() == b"c"


def test_wrong_credentials_are_permission_denied(s3_server: S3Server) -> None:
    bucket = s3_server.new_bucket()
    backend = S3Backend(
        bucket, "", endpoint_url="http://127.0.0.1:1", region=S3_REGION, credentials=S3_CREDENTIALS
    )
    from cas.errors import BackendUnavailableError

    with pytest.raises(BackendUnavailableError):
        backend.read("config")  # nothing listens on port 1: a connection error
    assert PermissionDeniedError  # (denials are tested with a read-only policy elsewhere)
