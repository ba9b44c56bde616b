"""An S3 backend: AWS S3 and every S3-compatible store (MinIO, Cloudflare R2, Backblaze B2,
Google Cloud Storage through its S3-interoperable endpoint).

Location form: ``s3://BUCKET[/PREFIX][?endpoint=URL&region=NAME&profile=NAME]``. Anything
not in the URL comes from the standard AWS configuration (environment, ``~/.aws``), read by
boto3 itself. boto3 is an optional extra (``pip install 'cas[s3]'``), imported only here,
and only when an ``s3://`` store is opened.

Guarantees: one ``PutObject`` (or one completed multipart upload, for values above
``multipart_threshold``) is visible whole or not at all; create-only writes send
``If-None-Match: *``, so the store itself rejects a second writer of the same key (412);
listings are strongly consistent on AWS S3 since 2020 and on MinIO. Every read's length
is checked: a short body is a :class:`ShortReadError`, never a short result.

Errors are translated once, in :func:`_translate`: 404/NoSuchKey → not found;
412 → already exists; 401/403 → permission denied; 416 → short read; 429, 5xx, SlowDown,
throttling and connection errors → unavailable (transient: retried by
:class:`~cas.store.retry.RetryingBackend`).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cas.errors import (
    AlreadyExistsError,
    BackendError,
    BackendUnavailableError,
    CasError,
    ObjectNotFoundError,
    PermissionDeniedError,
    RepositoryError,
    ShortReadError,
)
from cas.store.base import (
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

MULTIPART_THRESHOLD = 64 << 20
PART_SIZE = 16 << 20
# Packs on their way at once. Each waits in a spool file on the local disk and is sent
# from there, so this bounds connections, not memory.
S3_UPLOADS = 4
_TRANSIENT_CODES = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestTimeout",
    "RequestTimeTooSkewed",
    "InternalError",
    "ServiceUnavailable",
    "503",
    "500",
    "502",
    "504",
    "429",
    "TooManyRequests",
    "RequestLimitExceeded",
}


def _import_boto3() -> Any:
    # Lazy: boto3 is an optional extra, needed only for s3:// stores.
    try:
        import boto3
        import botocore.config
        import botocore.exceptions
        import botocore.loaders
        import botocore.session
    except ImportError as exc:
        raise RepositoryError(
            "s3:// stores need boto3, which is not installed",
            hint="install the extra: pip install 'cas[s3]'",
        ) from exc
    return boto3, botocore


_LOADER_LOCK = threading.Lock()
_loader: Any = None


def _new_session(
    boto3: Any, botocore: Any, profile: str | None, credentials: dict[str, str]
) -> Any:
    """A boto3 session whose service models come from one loader shared by the process.

    Loading botocore's JSON models is most of the cost of a new session (~0.2 s); every
    store a process opens (a notebook opens one per call) reuses the parsed models.
    """
    global _loader
    with _LOADER_LOCK:
        if _loader is None:
            _loader = botocore.loaders.create_loader()
        core = botocore.session.get_session()
        core.register_component("data_loader", _loader)
    return boto3.session.Session(botocore_session=core, profile_name=profile, **credentials)


def parse_s3_url(location: str) -> tuple[str, str, dict[str, str]]:
    """``s3://bucket/prefix?endpoint=…`` → (bucket, prefix ending in '/' or '', options)."""
    parts = urlsplit(location)
    if parts.scheme != "s3" or not parts.netloc:
        raise RepositoryError(
            f"not an S3 location: {location!r}",
            hint="use s3://BUCKET[/PREFIX][?endpoint=URL&region=NAME]",
        )
    prefix = parts.path.strip("/")
    options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    unknown = set(options) - {"endpoint", "region", "profile"}
    if unknown:
        raise RepositoryError(
            f"unknown option(s) in {location!r}: {', '.join(sorted(unknown))}",
            hint="known options: endpoint, region, profile",
        )
    return parts.netloc, f"{prefix}/" if prefix else "", options


class S3Backend:
    """Keys as objects under ``prefix`` in ``bucket``."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        profile: str | None = None,
        credentials: dict[str, str] | None = None,
        max_connections: int = 16,
        multipart_threshold: int = MULTIPART_THRESHOLD,
        location: str | None = None,
    ) -> None:
        boto3, botocore = _import_boto3()
        self._botocore = botocore
        self.bucket = bucket
        self.prefix = prefix
        self.multipart_threshold = max(multipart_threshold, 5 << 20)
        self._max = max_connections
        session = _new_session(boto3, botocore, profile, credentials or {})
        config = botocore.config.Config(
            max_pool_connections=max_connections,
            # One attempt here: RetryingBackend retries transient errors with backoff.
            retries={"max_attempts": 1, "mode": "standard"},
            connect_timeout=10,
            read_timeout=60,
        )
        self._client = session.client(
            "s3", endpoint_url=endpoint_url, region_name=region, config=config
        )
        self._location = location or f"s3://{bucket}/{prefix}".rstrip("/")

    @classmethod
    def from_url(cls, location: str) -> S3Backend:
        """Open ``s3://BUCKET[/PREFIX][?endpoint=URL&region=NAME&profile=NAME]``."""
        bucket, prefix, options = parse_s3_url(location)
        return cls(
            bucket,
            prefix,
            endpoint_url=options.get("endpoint"),
            region=options.get("region"),
            profile=options.get("profile"),
            location=location,
        )

    @property
    def location(self) -> str:
        return self._location

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            atomic_replace=True,
            conditional_write=True,
            consistent_listing=True,
            # Strong read-after-write consistency (AWS since 2020, MinIO, R2, GCS).
            ordered_visibility=True,
            max_connections=self._max,
            max_uploads=min(S3_UPLOADS, self._max),
            values_in_memory=False,
        )

    def _key(self, key: str) -> str:
        return self.prefix + validate_key(key)

    @contextlib.contextmanager
    def _errors(self, key: str, action: str) -> Iterator[None]:
        try:
            yield
        except self._botocore.exceptions.ClientError as exc:
            raise _translate(exc, key, action, self.location) from exc
        except (
            self._botocore.exceptions.EndpointConnectionError,
            self._botocore.exceptions.ConnectionClosedError,
            self._botocore.exceptions.ReadTimeoutError,
            self._botocore.exceptions.ConnectTimeoutError,
            self._botocore.exceptions.ResponseStreamingError,
        ) as exc:
            raise BackendUnavailableError(
                f"the store {self.location} did not answer while trying to {action} {key}: {exc}"
            ) from exc
        except self._botocore.exceptions.NoCredentialsError as exc:
            raise PermissionDeniedError(
                f"no credentials to {action} {key} on {self.location}",
                hint="configure AWS credentials (aws configure, or AWS_ACCESS_KEY_ID/"
                "AWS_SECRET_ACCESS_KEY), or add ?profile=NAME to the store URL",
            ) from exc
        except self._botocore.exceptions.HTTPClientError as exc:
            # Anything that failed while the request was being sent, wrapped by botocore
            # (an SSL or proxy error, or our own error reading a spooled body).
            cause = exc.kwargs.get("error")
            if isinstance(cause, CasError):
                raise cause from exc
            raise BackendUnavailableError(
                f"the request to {action} {key} on {self.location} failed: {exc}"
            ) from exc

    def read(self, key: str) -> bytes:
        with self._errors(key, "read"):
            resp = self._client.get_object(Bucket=self.bucket, Key=self._key(key))
            data: bytes = resp["Body"].read()
        expected = resp.get("ContentLength")
        if expected is not None and len(data) != expected:
            raise ShortReadError(key, expected, len(data))
        return data

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        if length < 0:
            raise ValueError("length must not be negative")
        if length == 0:
            resolve_range(key, self.stat(key).size, offset, 0)
            return b""
        header = f"bytes=-{-offset}" if offset < 0 else f"bytes={offset}-{offset + length - 1}"
        try:
            with self._errors(key, "read"):
                resp = self._client.get_object(Bucket=self.bucket, Key=self._key(key), Range=header)
                data: bytes = resp["Body"].read()
        except ShortReadError:
            # 416: the range starts past the end; say exactly how much there was.
            resolve_range(key, self.stat(key).size, offset, length)
            raise
        if offset < 0:
            total = int(str(resp.get("ContentRange", "/0")).rsplit("/", 1)[-1] or 0)
            resolve_range(key, total, offset, length)  # raises if the range is not inside
            data = data[:length]
        if len(data) != length:
            raise ShortReadError(key, length, len(data))
        return data

    def write(self, key: str, data: bytes | bytearray, *, if_absent: bool = False) -> None:
        view = memoryview(data)
        self._send(
            key,
            len(data),
            lambda: contextlib.nullcontext(data),
            lambda start: bytes(view[start : start + PART_SIZE]),
            if_absent,
        )

    def _write_spool(self, key: str, spool: Spool, if_absent: bool) -> None:
        """Send a value gathered in a local spool file, streamed from the file: a pack
        on its way holds no more memory than the SDK's send buffer."""
        self._send(
            key, spool.size, spool.reader, lambda start: spool.read_at(start, PART_SIZE), if_absent
        )

    def _send(
        self,
        key: str,
        size: int,
        body: Callable[[], contextlib.AbstractContextManager[Any]],
        part_at: Callable[[int], bytes],
        if_absent: bool,
    ) -> None:
        """Store ``size`` bytes under ``key``: one PUT of ``body()`` (a context giving the
        bytes or a file), or above ``multipart_threshold`` a multipart upload whose parts
        ``part_at(offset)`` gives."""
        full = self._key(key)
        extra = {"IfNoneMatch": "*"} if if_absent else {}
        with self._errors(key, "write"):
            if size < self.multipart_threshold:
                with body() as payload:
                    self._client.put_object(
                        Bucket=self.bucket, Key=full, Body=payload, ContentLength=size, **extra
                    )
                return
            self._multipart(full, size, part_at, extra)

    def _multipart(
        self,
        full: str,
        size: int,
        part_at: Callable[[int], bytes],
        extra: dict[str, str],
    ) -> None:
        """One multipart upload of ``size`` bytes, ``part_at(offset)`` giving each part."""
        upload = self._client.create_multipart_upload(Bucket=self.bucket, Key=full)
        upload_id = upload["UploadId"]
        try:
            parts = []
            for number, start in enumerate(range(0, size, PART_SIZE), start=1):
                resp = self._client.upload_part(
                    Bucket=self.bucket,
                    Key=full,
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=part_at(start),
                )
                parts.append({"ETag": resp["ETag"], "PartNumber": number})
            # The object appears only now, whole; If-None-Match applies to this step.
            self._client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=full,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
                **extra,
            )
        except BaseException:
            with contextlib.suppress(Exception):
                self._client.abort_multipart_upload(
                    Bucket=self.bucket, Key=full, UploadId=upload_id
                )
            raise

    def begin_write(self) -> PendingWrite:
        # Gathered on the local disk, then sent whole (one PUT, or a multipart upload for
        # a large value) at commit: retried from the spool after a dropped connection,
        # and several packs on their way at once hold none of their bytes in memory.
        return SpooledWrite(self._write_spool, f"a value on its way to {self.location}")

    def list_keys(self, prefix: str) -> Iterator[str]:
        for info in self.list(prefix):  # a listing carries the sizes anyway
            yield info.key

    def list(self, prefix: str) -> Iterator[KeyInfo]:
        validate_prefix(prefix)
        paginator = self._client.get_paginator("list_objects_v2")
        with self._errors(prefix or "/", "list"):
            pages = list(paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix))
        for page in pages:
            for obj in page.get("Contents", []):
                key = obj["Key"][len(self.prefix) :]
                if is_valid_key(key):
                    yield KeyInfo(key, int(obj["Size"]), str(obj.get("ETag", "")))

    def stat(self, key: str) -> KeyInfo:
        with self._errors(key, "stat"):
            resp = self._client.head_object(Bucket=self.bucket, Key=self._key(key))
        return KeyInfo(key, int(resp["ContentLength"]), str(resp.get("ETag", "")))

    def delete(self, key: str) -> None:
        with self._errors(key, "delete"):
            self._client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._client.close()


def _translate(exc: Any, key: str, action: str, location: str) -> Exception:
    err = exc.response.get("Error", {})
    code = str(err.get("Code", ""))
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    where = f"{action} {key} on {location}"
    if code in ("NoSuchKey", "404", "NotFound") or status == 404:
        if code == "NoSuchBucket":
            return RepositoryError(
                f"no bucket for {location}", hint="create the bucket first, or check the store URL"
            )
        return ObjectNotFoundError(key)
    if code in ("PreconditionFailed", "ConditionalRequestConflict") or status in (409, 412):
        return AlreadyExistsError(key)
    if code == "InvalidRange" or status == 416:
        return ShortReadError(key, 1, 0)
    if code in (
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "AllAccessDisabled",
        "ExpiredToken",
    ) or status in (401, 403):
        return PermissionDeniedError(
            f"permission denied: {where} ({code})",
            hint="check the credentials; a read-only credential can still clone and check out",
        )
    if code in _TRANSIENT_CODES or status == 429 or status >= 500:
        return BackendUnavailableError(f"the store was busy or failing: {where} ({code or status})")
    return BackendError(f"failed to {where}: {code or status} {err.get('Message', '')}".strip())
