"""The backend contract for S3Backend, against a real S3-protocol server on loopback.

Beyond the contract: which requests the backend sends (multipart, no flexible
checksums), how every botocore error is translated, and what is retried. Faults that the
server cannot produce on demand are injected into the real client's requests through
botocore's event hooks (:mod:`tests.backends.s3_tools`); everything else is real.
"""

from __future__ import annotations

import io
import os
import ssl
from pathlib import Path
from typing import Any

import pytest

from cas.errors import (
    AlreadyExistsError,
    BackendError,
    BackendUnavailableError,
    CasError,
    ObjectNotFoundError,
    PermissionDeniedError,
    PreconditionFailedError,
    RepositoryError,
)
from cas.store import open_backend
from cas.store.base import SPOOL_PIECE, TEMP_SUFFIX, Spool, SpooledWrite, write_if_version
from cas.store.retry import RetryingBackend
from cas.store.s3 import S3Backend, parse_s3_url
from tests.backends.contract import BackendContract, CompareAndSwapContract
from tests.backends.s3_tools import S3Calls
from tests.conftest import S3_CREDENTIALS, S3_REGION, S3Server

MULTIPART_OPS = ["CreateMultipartUpload", "UploadPart", "UploadPart", "UploadPart"]


class S3Harness:
    """Reaches around an S3Backend with a raw boto3 client."""

    same_size_rewrite_changes_version = True

    def __init__(self, server: S3Server) -> None:
        self.server = server
        self.bucket = server.new_bucket()
        self.prefix = "some/prefix/"

    def make(self, endpoint: str | None = None) -> S3Backend:
        # Multipart from 5 MiB, in 5 MiB parts (S3's smallest): 12 MiB is 3 parts.
        return S3Backend(
            self.bucket,
            self.prefix,
            endpoint_url=endpoint or self.server.endpoint,
            region=S3_REGION,
            credentials=S3_CREDENTIALS,
            multipart_threshold=5 << 20,
            part_size=5 << 20,
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

    def open_uploads(self) -> list[str]:
        """Keys of the multipart uploads started and neither completed nor aborted."""
        resp = self.server.client.list_multipart_uploads(Bucket=self.bucket)
        return [u["Key"] for u in resp.get("Uploads", [])]


@pytest.fixture
def harness(s3_server: S3Server) -> S3Harness:
    return S3Harness(s3_server)


class TestS3Backend(BackendContract, CompareAndSwapContract):
    pass


class MaxRandom:
    """A random source whose ``uniform`` returns its upper bound, and records bounds."""

    def __init__(self) -> None:
        self.bounds: list[tuple[float, float]] = []

    def uniform(self, a: float, b: float) -> float:
        self.bounds.append((a, b))
        return b


def retrying(inner: S3Backend, **kw: Any) -> tuple[RetryingBackend, list[float], MaxRandom]:
    """``inner`` behind RetryingBackend, sleeping nowhere: the sleeps are recorded."""
    sleeps: list[float] = []
    rng = MaxRandom()
    return RetryingBackend(inner, sleep=sleeps.append, rng=rng, **kw), sleeps, rng


# ---------------------------------------------------------------------------- multipart


def test_large_values_go_through_multipart(harness: S3Harness) -> None:
    backend = harness.make()
    calls = S3Calls(backend._client)
    data = bytes(range(256)) * (48 * 1024)  # 12 MiB: above the 5 MiB threshold
    backend.write("packs/ab/big", data, if_absent=True)
    assert calls.ops == [*MULTIPART_OPS, "CompleteMultipartUpload"]
    # The completing request carries the create-only condition.
    assert calls.headers_of("CompleteMultipartUpload")[0]["If-None-Match"] == "*"
    assert harness.raw_read("packs/ab/big") == data
    assert backend.read_range("packs/ab/big", -1000, 1000) == data[-1000:]
    calls.ops.clear()
    with pytest.raises(AlreadyExistsError) as ei:
        backend.write("packs/ab/big", data, if_absent=True)
    # What the server answered the completion with (AWS documents the same).
    answer = ei.value.__cause__.response  # type: ignore[union-attr]
    assert (answer["ResponseMetadata"]["HTTPStatusCode"], answer["Error"]["Code"]) == (
        412,
        "PreconditionFailed",
    )
    assert calls.ops == [*MULTIPART_OPS, "CompleteMultipartUpload", "AbortMultipartUpload"]
    assert harness.open_uploads() == []
    assert harness.raw_read("packs/ab/big") == data


def test_small_values_go_out_in_one_put(harness: S3Harness) -> None:
    backend = harness.make()
    calls = S3Calls(backend._client)
    backend.write("packs/ab/small", os.urandom((5 << 20) - 1), if_absent=True)
    assert calls.ops == ["PutObject"]
    assert calls.headers_of("PutObject")[0]["If-None-Match"] == "*"
    with pytest.raises(AlreadyExistsError) as ei:
        backend.write("packs/ab/small", b"other", if_absent=True)
    answer = ei.value.__cause__.response  # type: ignore[union-attr]
    assert (answer["ResponseMetadata"]["HTTPStatusCode"], answer["Error"]["Code"]) == (
        412,
        "PreconditionFailed",
    )


@pytest.mark.parametrize("size", [3 << 20, 12 << 20], ids=["one-put", "multipart"])
def test_a_pack_goes_out_from_its_spool_file_not_from_memory(harness: S3Harness, size: int) -> None:
    """A pack is gathered in a spool file on the local disk and sent from it (one PUT,
    or a multipart upload above the threshold), so several on their way at once hold
    none of their bytes in memory; create-only still holds at the store."""
    backend = harness.make()
    calls = S3Calls(backend._client)
    assert not backend.capabilities.values_in_memory
    assert backend.capabilities.max_uploads == 4
    bodies: list[type] = []
    real_put, real_part = backend._client.put_object, backend._client.upload_part

    def put_object(**kw: Any) -> Any:
        bodies.append(type(kw["Body"]))
        return real_put(**kw)

    def upload_part(**kw: Any) -> Any:
        assert len(kw["Body"]) <= 5 << 20  # one part at a time, read from the spool
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
        assert calls.ops == ["PutObject"]
        assert bodies == [io.BufferedReader]  # streamed from the file, never bytes
    else:
        assert calls.ops == [*MULTIPART_OPS, "CompleteMultipartUpload"]
        assert bodies == []
    again = backend.begin_write()
    again.write(os.urandom(size))  # the same path: one PUT, or a multipart upload
    with pytest.raises(AlreadyExistsError):
        again.commit("packs/cd/spooled", if_absent=True)
    again.abort()  # (a failed commit keeps its spool for a retry)
    assert harness.raw_read("packs/cd/spooled") == data
    assert harness.open_uploads() == []


@pytest.mark.parametrize("how", ["error-answer", "connection-dropped"])
@pytest.mark.parametrize("spooled", [False, True], ids=["bytes", "spool"])
def test_a_multipart_upload_failing_midway_is_aborted_and_leaves_nothing(
    harness: S3Harness, how: str, spooled: bool
) -> None:
    import botocore.exceptions

    backend = harness.make()
    calls = S3Calls(backend._client)
    if how == "error-answer":
        calls.fail("UploadPart", 500, "InternalError", after=1)  # the second part fails
    else:
        calls.raise_(
            "UploadPart",
            botocore.exceptions.ConnectionClosedError(endpoint_url=harness.server.endpoint),
            after=1,
        )
    data = os.urandom(12 << 20)
    if spooled:
        pending = backend.begin_write()
        pending.write(data)
        with pytest.raises(BackendUnavailableError):
            pending.commit("packs/ef/cut", if_absent=True)
        pending.abort()
    else:
        with pytest.raises(BackendUnavailableError):
            backend.write("packs/ef/cut", data, if_absent=True)
    assert calls.ops == [
        "CreateMultipartUpload",
        "UploadPart",
        "UploadPart",
        "AbortMultipartUpload",
    ]
    assert harness.open_uploads() == []
    assert harness.raw_read("packs/ef/cut") is None
    # Retried as a whole, it lands: a new upload from the first byte.
    backend.write("packs/ef/cut", data, if_absent=True)
    assert harness.raw_read("packs/ef/cut") == data
    assert harness.open_uploads() == []


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


# ---------------------------------------------------------------------------- checksums


def _checksum_headers(headers: dict[str, str]) -> dict[str, str]:
    """The headers of botocore's flexible checksums (CRC32 and friends, aws-chunked)."""
    return {
        k: v
        for k, v in headers.items()
        if k.lower().startswith(("x-amz-checksum", "x-amz-sdk-checksum", "x-amz-trailer"))
        or (k.lower() == "content-encoding" and "aws-chunked" in v)
        or (k.lower() == "x-amz-content-sha256" and v.startswith("STREAMING-"))
        or (k.lower() == "x-amz-decoded-content-length")
    }


def test_requests_carry_no_flexible_checksums(harness: S3Harness) -> None:
    """botocore >= 1.36 adds CRC32 checksums (aws-chunked with a trailer over HTTPS) that
    GCS, B2, R2 and older MinIO refuse; the backend asks for them only where required."""
    import boto3

    # The check can fail: a client with botocore's defaults sends them.
    default = boto3.client(
        "s3", endpoint_url=harness.server.endpoint, region_name=S3_REGION, **S3_CREDENTIALS
    )
    seen = S3Calls(default)
    default.put_object(Bucket=harness.bucket, Key="probe", Body=io.BytesIO(b"x" * 100))
    assert _checksum_headers(seen.headers_of("PutObject")[0])

    backend = harness.make()
    calls = S3Calls(backend._client)
    backend.write("config", b"small")
    pending = backend.begin_write()
    pending.write(os.urandom(1 << 20))
    pending.commit("packs/ab/spooled")
    backend.write("packs/ab/big", os.urandom(6 << 20))  # multipart
    backend.read("config")
    backend.read_range("packs/ab/spooled", 10, 10)
    assert calls.count("PutObject") == 2 and calls.count("UploadPart") == 2
    for op, headers in calls.headers:
        assert _checksum_headers(headers) == {}, op
        assert "x-amz-checksum-mode" not in {k.lower() for k in headers}, op


# ---------------------------------------------------------------------------- retries


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (503, "SlowDown"),
        (503, "ServiceUnavailable"),
        (429, "TooManyRequests"),
        (500, "InternalError"),
        (400, "RequestTimeout"),  # S3 says 400 when a client's body came too slowly
        (409, "ConditionalRequestConflict"),
        (409, "OperationAborted"),
    ],
)
def test_throttling_and_server_errors_are_retried_until_they_clear(
    harness: S3Harness, status: int, code: str
) -> None:
    inner = harness.make()
    calls = S3Calls(inner._client)
    backend, sleeps, _rng = retrying(inner)
    calls.fail("PutObject", status, code, times=3)
    backend.write("refs/heads/main/1-x", b"entry", if_absent=True)
    assert calls.count("PutObject") == 4
    assert len(sleeps) == 3 and backend.retries == 3
    assert harness.raw_read("refs/heads/main/1-x") == b"entry"


@pytest.mark.parametrize(
    ("op", "call"),
    [
        ("GetObject", lambda b: b.read("config")),
        ("GetObject", lambda b: b.read_range("config", 1, 2)),
        ("HeadObject", lambda b: b.stat("config")),  # a HEAD answer has no body: code "503"
        ("ListObjectsV2", lambda b: list(b.list(""))),
        ("DeleteObject", lambda b: b.delete("config")),
    ],
)
def test_every_operation_is_retried_on_a_503(harness: S3Harness, op: str, call: Any) -> None:
    inner = harness.make()
    inner.write("config", b"value")
    calls = S3Calls(inner._client)
    backend, sleeps, _rng = retrying(inner)
    calls.fail(op, 503, "SlowDown", times=2)
    call(backend)
    assert calls.count(op) == 3
    assert len(sleeps) == 2


def test_botocore_itself_never_retries(harness: S3Harness) -> None:
    """One request per call: the retries are RetryingBackend's (its backoff, its count)."""
    backend = harness.make()
    calls = S3Calls(backend._client)
    calls.fail("PutObject", 503, "SlowDown")
    with pytest.raises(BackendUnavailableError):
        backend.write("config", b"c")
    assert calls.ops == ["PutObject"]


def test_retries_give_up_after_the_last_attempt(harness: S3Harness) -> None:
    inner = harness.make()
    calls = S3Calls(inner._client)
    backend, sleeps, _rng = retrying(inner)
    calls.fail("PutObject", 503, "SlowDown", times=6)
    with pytest.raises(BackendUnavailableError, match=r"gave up after 6 attempts") as ei:
        backend.write("config", b"c")
    assert "SlowDown" in str(ei.value)
    assert calls.count("PutObject") == 6
    assert len(sleeps) == 5
    assert harness.raw_read("config") is None


def test_backoff_is_full_jitter_doubling_up_to_a_cap(harness: S3Harness) -> None:
    """Before attempt n + 1 a random time in [0, min(10 s, 0.2 s × 2ⁿ)]."""
    inner = harness.make()
    calls = S3Calls(inner._client)
    backend, sleeps, rng = retrying(inner, attempts=9)
    calls.fail("PutObject", 503, "SlowDown", times=8)
    backend.write("config", b"c")
    assert rng.bounds == [(0, 0.2 * 2**n) for n in range(1, 6)] + [(0, 10.0)] * 3
    assert sleeps == [b for _a, b in rng.bounds]
    assert harness.raw_read("config") == b"c"


@pytest.mark.parametrize(
    ("op", "status", "code", "error"),
    [
        ("PutObject", 403, "AccessDenied", PermissionDeniedError),
        ("PutObject", 403, "InvalidAccessKeyId", PermissionDeniedError),
        ("PutObject", 403, "SignatureDoesNotMatch", PermissionDeniedError),
        ("HeadObject", 403, "403", PermissionDeniedError),  # a HEAD answer has no body
        ("PutObject", 400, "InvalidArgument", BackendError),
        ("PutObject", 400, "EntityTooLarge", BackendError),
        ("PutObject", 409, "BucketNotEmpty", BackendError),  # other 409s: no conflict
    ],
)
def test_permanent_errors_are_not_retried(
    harness: S3Harness, op: str, status: int, code: str, error: type[BackendError]
) -> None:
    inner = harness.make()
    calls = S3Calls(inner._client)
    backend, sleeps, _rng = retrying(inner)
    calls.fail(op, status, code)
    call = (
        (lambda: backend.write("config", b"c", if_absent=True))
        if op == "PutObject"
        else (lambda: backend.stat("config"))
    )
    with pytest.raises(error) as ei:
        call()
    assert type(ei.value) is error
    assert not ei.value.transient
    assert calls.count(op) == 1
    assert sleeps == []
    if error is PermissionDeniedError:
        assert str(ei.value).startswith("permission denied:")
        assert "credentials" in ei.value.hint


def test_a_missing_key_is_not_retried(harness: S3Harness) -> None:
    inner = harness.make()
    calls = S3Calls(inner._client)
    backend, sleeps, _rng = retrying(inner)
    with pytest.raises(ObjectNotFoundError):
        backend.read("nope")  # the server's own 404 NoSuchKey
    with pytest.raises(ObjectNotFoundError):
        backend.stat("nope")  # the server's own 404 to a HEAD
    assert calls.ops == ["GetObject", "HeadObject"]
    assert sleeps == []


# ---------------------------------------------------------------------------- conflicts


def test_a_create_only_write_that_met_a_concurrent_one_ends_as_already_exists(
    harness: S3Harness,
) -> None:
    """409 ConditionalRequestConflict: another conditional write on the key was in
    progress. It is retried; if the other one landed, the retry gets the store's 412."""
    inner = harness.make()
    calls = S3Calls(inner._client)
    backend, sleeps, _rng = retrying(inner)
    harness.raw_write("refs/claims/heads/main/2", b"the other writer")
    calls.fail("PutObject", 409, "ConditionalRequestConflict")
    with pytest.raises(AlreadyExistsError):
        backend.write("refs/claims/heads/main/2", b"mine", if_absent=True)
    assert calls.count("PutObject") == 2
    assert len(sleeps) == 1
    assert harness.raw_read("refs/claims/heads/main/2") == b"the other writer"


def test_a_conflict_at_completion_retries_the_whole_multipart_upload(harness: S3Harness) -> None:
    inner = harness.make()
    calls = S3Calls(inner._client)
    backend, _sleeps, _rng = retrying(inner)
    calls.fail("CompleteMultipartUpload", 409, "OperationAborted")
    data = os.urandom(6 << 20)
    backend.write("packs/ab/big", data, if_absent=True)
    assert calls.count("CreateMultipartUpload") == 2  # a new upload, as S3 asks
    assert calls.count("AbortMultipartUpload") == 1
    assert harness.raw_read("packs/ab/big") == data
    assert harness.open_uploads() == []


def test_a_vanished_multipart_upload_is_transient_not_a_missing_key(harness: S3Harness) -> None:
    backend = harness.make()
    calls = S3Calls(backend._client)
    calls.fail("UploadPart", 404, "NoSuchUpload")
    with pytest.raises(BackendUnavailableError):
        backend.write("packs/ab/big", os.urandom(6 << 20))


# ---------------------------------------------------------------------------- compare-and-swap


def test_compare_and_swap_is_one_put_with_if_match_whatever_the_size(harness: S3Harness) -> None:
    """If-Match is sent on one PutObject (moto, like S3, checks it there; it does not
    check it on CompleteMultipartUpload), even above the multipart threshold."""
    backend = harness.make()
    backend.write("refs/x", b"one")
    version = backend.stat("refs/x").version
    calls = S3Calls(backend._client)
    data = os.urandom(6 << 20)
    write_if_version(backend, "refs/x", data, version)
    assert calls.ops == ["PutObject"]
    assert calls.headers_of("PutObject")[0]["If-Match"] == version
    assert harness.raw_read("refs/x") == data
    with pytest.raises(PreconditionFailedError):  # the server's own 412
        write_if_version(backend, "refs/x", b"again", version)


def test_compare_and_swap_goes_through_the_retries(harness: S3Harness) -> None:
    inner = harness.make()
    inner.write("refs/x", b"one")
    version = inner.stat("refs/x").version
    calls = S3Calls(inner._client)
    backend, sleeps, _rng = retrying(inner)
    assert backend.capabilities.compare_and_swap
    calls.fail("PutObject", 503, "SlowDown")
    write_if_version(backend, "refs/x", b"two", version)
    assert calls.count("PutObject") == 2 and len(sleeps) == 1
    assert harness.raw_read("refs/x") == b"two"
    with pytest.raises(PreconditionFailedError):  # permanent: not retried
        write_if_version(backend, "refs/x", b"three", version)
    assert calls.count("PutObject") == 3 and len(sleeps) == 1


# ---------------------------------------------------------------------------- SDK errors


def _sdk_errors() -> list[Any]:
    import botocore.exceptions as b

    url = "http://127.0.0.1:9"
    return [
        pytest.param(b.EndpointConnectionError(endpoint_url=url), True, id="endpoint"),
        pytest.param(b.ConnectTimeoutError(endpoint_url=url), True, id="connect-timeout"),
        pytest.param(b.ReadTimeoutError(endpoint_url=url), True, id="read-timeout"),
        pytest.param(b.ConnectionClosedError(endpoint_url=url), True, id="closed"),
        pytest.param(
            b.ProxyConnectionError(proxy_url="http://proxy:3128", error="refused"), True, id="proxy"
        ),
        pytest.param(b.ConnectionError(error="connection reset"), True, id="connection"),
        pytest.param(
            b.IncompleteReadError(actual_bytes=1, expected_bytes=9), True, id="incomplete"
        ),
        pytest.param(b.ResponseStreamingError(error="reset"), True, id="streaming"),
        pytest.param(b.HTTPClientError(error=OSError("proxy said no")), True, id="http-client"),
        pytest.param(
            b.SSLError(endpoint_url=url, error=ssl.SSLEOFError(8, "EOF in violation of protocol")),
            True,
            id="tls-cut-off",
        ),
        pytest.param(
            b.SSLError(
                endpoint_url=url,
                error=ssl.SSLCertVerificationError(1, "certificate verify failed"),
            ),
            False,
            id="tls-certificate",
        ),
        pytest.param(
            b.ChecksumError(checksum_type="crc32", expected_checksum="a", actual_checksum="b"),
            False,
            id="other-botocore-error",
        ),
    ]


@pytest.mark.parametrize(("exc", "transient"), _sdk_errors())
def test_every_botocore_error_comes_out_as_a_cas_error(
    harness: S3Harness, exc: Exception, transient: bool
) -> None:
    inner = harness.make()
    calls = S3Calls(inner._client)
    backend, sleeps, _rng = retrying(inner)
    calls.raise_("PutObject", exc)
    if transient:
        backend.write("config", b"c")  # retried once, then the server answers
        assert calls.count("PutObject") == 2 and len(sleeps) == 1
        assert harness.raw_read("config") == b"c"
        calls.raise_("GetObject", exc)
        with pytest.raises(BackendUnavailableError) as ei:
            inner.read("config")
    else:
        with pytest.raises(BackendError) as ei:
            backend.write("config", b"c")
        assert not ei.value.transient
        assert calls.count("PutObject") == 1 and sleeps == []
    assert ei.value.__cause__ is exc


def test_our_own_error_while_a_body_is_sent_comes_out_as_it_was(harness: S3Harness) -> None:
    """botocore wraps whatever fails while it sends a body (here: our own error reading a
    spooled value) in HTTPClientError: the cas error comes out as it was raised."""
    import botocore.exceptions

    backend = harness.make()
    calls = S3Calls(backend._client)
    ours = BackendError("a local spool file for a pack: its local spool file was dropped")
    calls.raise_("PutObject", botocore.exceptions.HTTPClientError(error=ours))
    with pytest.raises(BackendError) as ei:
        backend.write("config", b"c")
    assert ei.value is ours


def test_a_refused_connection_is_unavailable(harness: S3Harness) -> None:
    backend = harness.make(endpoint="http://127.0.0.1:1")  # nothing listens on port 1
    with pytest.raises(BackendUnavailableError, match="did not answer"):
        backend.read("config")


def test_a_dead_proxy_is_unavailable(harness: S3Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    import botocore.exceptions

    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:1")
    backend = harness.make()
    with pytest.raises(BackendUnavailableError) as ei:
        backend.read("config")
    assert isinstance(ei.value.__cause__, botocore.exceptions.ProxyConnectionError)


def test_tls_to_a_plain_http_server_is_a_permanent_error_with_a_hint(harness: S3Harness) -> None:
    """An https:// endpoint that is plain HTTP (or a certificate not trusted) is not
    retried: it will not get better, and the hint says what to check."""
    import botocore.exceptions

    https = harness.server.endpoint.replace("http://", "https://")
    inner = harness.make(endpoint=https)
    backend, sleeps, _rng = retrying(inner)
    with pytest.raises(BackendError) as ei:
        backend.read("config")
    assert not ei.value.transient
    assert isinstance(ei.value.__cause__, botocore.exceptions.SSLError)
    assert str(ei.value).startswith("TLS failed: read config on s3://")
    assert "http://" in ei.value.hint and "AWS_CA_BUNDLE" in ei.value.hint
    assert sleeps == []


# ---------------------------------------------------------------------------- credentials


@pytest.fixture
def aws_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, s3_env: None) -> Path:
    """No credentials anywhere (environment, files, instance metadata) until a test
    writes them into ``aws_home/config``."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    config = tmp_path / "aws-config"
    config.write_text("")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    return config


def _open(server: S3Server, bucket: str, **options: str) -> Any:
    query = "&".join(f"{k}={v}" for k, v in {"endpoint": server.endpoint, **options}.items())
    return open_backend(f"s3://{bucket}/store?{query}")


def test_no_credentials_is_permission_denied_with_a_hint(
    s3_server: S3Server, aws_home: Path
) -> None:
    backend = _open(s3_server, s3_server.new_bucket(), region=S3_REGION)
    with pytest.raises(PermissionDeniedError, match="no usable credentials") as ei:
        backend.read("config")
    assert "AWS_ACCESS_KEY_ID" in ei.value.hint and "~/.aws/config" in ei.value.hint


def test_partial_credentials_are_permission_denied(
    s3_server: S3Server, aws_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    bucket = s3_server.new_bucket()
    with pytest.raises(PermissionDeniedError, match="AWS_SECRET_ACCESS_KEY"):
        _open(s3_server, bucket, region=S3_REGION).read("config")  # (found at open)


def test_failing_credential_process_is_permission_denied(
    s3_server: S3Server, aws_home: Path
) -> None:
    aws_home.write_text("[profile broken]\ncredential_process = false\n")
    bucket = s3_server.new_bucket()
    with pytest.raises(PermissionDeniedError, match="no usable credentials"):
        _open(s3_server, bucket, region=S3_REGION, profile="broken").read("config")


def test_an_unknown_profile_is_permission_denied_naming_the_config(
    s3_server: S3Server, aws_home: Path
) -> None:
    with pytest.raises(PermissionDeniedError, match="nope") as ei:
        _open(s3_server, s3_server.new_bucket(), profile="nope")
    assert "~/.aws/config" in ei.value.hint and "AWS_PROFILE" in ei.value.hint


# ---------------------------------------------------------------------------- the SDK


def test_an_sdk_too_old_is_refused_naming_the_version_needed(
    harness: S3Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    import botocore

    monkeypatch.setattr(botocore, "__version__", "1.35.99")
    needed = r"botocore >= 1\.36\.0 \(installed: 1\.35\.99\)"
    with pytest.raises(RepositoryError, match=needed) as ei:
        harness.make()
    assert "pip install -U 'boto3>=1.36'" in ei.value.hint


def test_a_request_the_sdk_cannot_make_is_a_clear_error(harness: S3Harness) -> None:
    """An SDK without a parameter cas sends (If-None-Match before botocore 1.35.2) fails
    its own parameter check: a cas error naming the version needed, not a traceback."""
    backend = harness.make()

    def unknown_parameter(params: dict[str, Any], **_kw: Any) -> dict[str, Any]:
        return {**params, "IfNoneMatchFromTheFuture": "*"}

    backend._client.meta.events.register("provide-client-params.s3.PutObject", unknown_parameter)
    with pytest.raises(RepositoryError, match="cannot make a request cas needs") as ei:
        backend.write("config", b"c", if_absent=True)
    assert "boto3>=1.36" in ei.value.hint
    assert harness.raw_read("config") is None


# ---------------------------------------------------------------------------- locations


def test_url_parsing_and_open_backend(s3_server: S3Server, s3_env: None) -> None:
    assert parse_s3_url("s3://b/p/q?region=eu-west-1") == ("b", "p/q/", {"region": "eu-west-1"})
    assert parse_s3_url("s3://b") == ("b", "", {})
    with pytest.raises(RepositoryError, match="unknown option"):
        parse_s3_url("s3://b/p?secret=x")
    bucket = s3_server.new_bucket()
    backend = open_backend(s3_server.url(bucket, "x"))
    backend.write("config", b"c")
    assert s3_server.client.get_object(Bucket=bucket, Key="x/config")["Body"].read() == b"c"


@pytest.mark.parametrize("endpoint", ["127.0.0.1:9000", "localhost", "ftp://host", "http://"])
def test_a_bad_endpoint_in_the_url_is_a_clear_error(endpoint: str, s3_env: None) -> None:
    with pytest.raises(RepositoryError, match=f"invalid endpoint={endpoint}") as ei:
        open_backend(f"s3://bucket/store?endpoint={endpoint}")
    assert "endpoint=https://" in ei.value.hint


def test_a_bad_endpoint_in_the_environment_is_a_clear_error(
    s3_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "127.0.0.1:9000")
    with pytest.raises(RepositoryError, match="AWS_ENDPOINT_URL") as ei:
        open_backend("s3://bucket/store")
    assert not isinstance(ei.value, BackendError)
    assert "endpoint=" in ei.value.hint


def test_a_bad_region_is_a_clear_error(s3_env: None) -> None:
    with pytest.raises(RepositoryError, match="invalid region"):
        open_backend("s3://bucket/store?endpoint=http://127.0.0.1:1&region=no/such")


def test_endpoint_and_region_come_from_the_environment(
    s3_server: S3Server, s3_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_server.endpoint)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-3")
    bucket = s3_server.new_bucket()
    backend = open_backend(f"s3://{bucket}/store", retry=False)
    assert isinstance(backend, S3Backend)
    assert backend._client.meta.region_name == "eu-west-3"
    assert backend._client.meta.endpoint_url == s3_server.endpoint
    backend.write("config", b"from the environment")
    assert s3_server.client.get_object(Bucket=bucket, Key="store/config")["Body"].read() == (
        b"from the environment"
    )


def test_the_urls_endpoint_beats_the_environment(
    s3_server: S3Server, s3_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:1")  # would be refused
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-3")
    bucket = s3_server.new_bucket()
    backend = open_backend(s3_server.url(bucket), retry=False)  # region=us-east-1 too
    assert isinstance(backend, S3Backend)
    assert backend._client.meta.region_name == S3_REGION
    backend.write("config", b"c")
    assert s3_server.client.get_object(Bucket=bucket, Key="store/config")["Body"].read() == b"c"


@pytest.mark.parametrize("how", ["AWS_PROFILE", "profile="])
def test_profile_credentials_endpoint_and_region_from_the_aws_config(
    s3_server: S3Server, aws_home: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    aws_home.write_text(
        "[profile cas-test]\n"
        f"region = {S3_REGION}\n"
        f"endpoint_url = {s3_server.endpoint}\n"
        f"aws_access_key_id = {S3_CREDENTIALS['aws_access_key_id']}\n"
        f"aws_secret_access_key = {S3_CREDENTIALS['aws_secret_access_key']}\n"
    )
    bucket = s3_server.new_bucket()
    if how == "AWS_PROFILE":
        monkeypatch.setenv("AWS_PROFILE", "cas-test")
        backend = open_backend(f"s3://{bucket}/store")
    else:
        backend = open_backend(f"s3://{bucket}/store?profile=cas-test")
    assert backend.inner._client.meta.region_name == S3_REGION
    assert backend.inner._client.meta.endpoint_url == s3_server.endpoint
    backend.write("config", b"c")
    assert s3_server.client.get_object(Bucket=bucket, Key="store/config")["Body"].read() == b"c"


def test_errors_are_cas_errors_with_the_store_in_the_message(harness: S3Harness) -> None:
    backend = harness.make()
    calls = S3Calls(backend._client)
    calls.fail("GetObject", 403, "AccessDenied")
    with pytest.raises(CasError, match=rf"read config on s3://{harness.bucket}/some/prefix"):
        backend.read("config")
