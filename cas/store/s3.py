"""An S3 backend: AWS S3 and every S3-compatible store (MinIO, Cloudflare R2, Backblaze B2,
Google Cloud Storage through its S3-interoperable endpoint).

Location form: ``s3://BUCKET[/PREFIX][?endpoint=URL&region=NAME&profile=NAME]``. Anything
not in the URL comes from the standard AWS configuration (environment, ``~/.aws``), read by
boto3 itself. boto3 is an optional extra (``pip install boto3``, or the ``[s3]`` extra of
a checkout: ``pip install '.[s3]'``), imported only here,
and only when an ``s3://`` store is opened.

Guarantees: one ``PutObject`` (or one completed multipart upload, for values above
``multipart_threshold``) is visible whole or not at all; create-only writes send
``If-None-Match: *``, so the store itself rejects a second writer of the same key (412);
listings are strongly consistent on AWS S3 since 2020 and on MinIO. Every read's length
is checked: a short body is a :class:`ShortReadError`, never a short result.

Errors are translated once, at this boundary: an S3 error answer in :func:`_translate`
(404/NoSuchKey → not found; 412 → already exists, or a failed compare-and-swap;
401/403 → permission denied; 416 → short read; 409 ConditionalRequestConflict /
OperationAborted, 429, 5xx, SlowDown and throttling → unavailable, transient: retried by
:class:`~cas.store.retry.RetryingBackend`), and everything botocore raises itself in
:func:`_translate_sdk_error` (connection, proxy, timeout, dropped or short transfer →
unavailable; a TLS failure, missing or unusable credentials or profile, an SDK too old
→ permanent, each with a hint). No botocore exception leaves this module.

The client sends checksums only where S3 requires them
(``request_checksum_calculation="when_required"``): since botocore 1.36 it otherwise adds
CRC32 checksums, in aws-chunked bodies with trailers over HTTPS, which several
S3-compatible stores reject. cas hashes every byte it reads with BLAKE3 anyway.
"""

from __future__ import annotations

import contextlib
import ssl
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
    PreconditionFailedError,
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


# The oldest botocore cas works with: 1.35.2 added If-None-Match to PutObject and
# CompleteMultipartUpload, 1.36.0 the checksum options of the client's Config (and
# If-Match on PutObject). boto3 1.36 requires botocore 1.36.
MIN_BOTOCORE = (1, 36, 0)
_SDK_HINT = "upgrade the S3 client: pip install -U 'boto3>=1.36'"


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
            hint="install the S3 client: pip install 'boto3>=1.36' (the [s3] extra of cas)",
        ) from exc
    if _version_tuple(botocore.__version__) < MIN_BOTOCORE:
        raise RepositoryError(
            f"s3:// stores need botocore >= {'.'.join(map(str, MIN_BOTOCORE))}"
            f" (installed: {botocore.__version__})",
            hint=_SDK_HINT,
        )
    return boto3, botocore


def _version_tuple(version: str) -> tuple[int, ...]:
    """``"1.36.0"`` → ``(1, 36, 0)``; a non-numeric part ends it (``"1.36.0rc1"``)."""
    out = []
    for part in version.split("."):
        digits = ""
        for ch in part:
            if not ch.isdigit():
                break
            digits += ch
        if not digits:
            break
        out.append(int(digits))
    return tuple(out)


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
    endpoint = options.get("endpoint")
    if endpoint is not None:
        ep = urlsplit(endpoint)
        if ep.scheme not in ("http", "https") or not ep.netloc:
            raise RepositoryError(
                f"invalid endpoint={endpoint} in {location!r}: not an http:// or https:// URL",
                hint=_ENDPOINT_HINT,
            )
    return parts.netloc, f"{prefix}/" if prefix else "", options


_ENDPOINT_HINT = (
    "give the endpoint option as a whole URL, e.g. endpoint=https://HOST or"
    " endpoint=http://127.0.0.1:9000 (for a local server)"
)
_ENDPOINT_CONFIG = "AWS_ENDPOINT_URL[_S3] or endpoint_url in ~/.aws/config"
_CREDENTIALS_HINT = (
    "configure AWS credentials the standard way (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY,"
    " AWS_PROFILE, ~/.aws/credentials and ~/.aws/config, see `aws configure`), or add"
    " ?profile=NAME to the store URL"
)


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
        part_size: int = PART_SIZE,
        location: str | None = None,
    ) -> None:
        boto3, botocore = _import_boto3()
        self._botocore = botocore
        self.bucket = bucket
        self.prefix = prefix
        # S3's smallest part (but the last) is 5 MiB.
        self.multipart_threshold = max(multipart_threshold, 5 << 20)
        self.part_size = max(part_size, 5 << 20)
        self._max = max_connections
        self._location = location or f"s3://{bucket}/{prefix}".rstrip("/")
        config = botocore.config.Config(
            max_pool_connections=max_connections,
            # One attempt in all (botocore's "max_attempts" counts retries only, so 1 was
            # one retry): RetryingBackend retries transient errors, with backoff.
            retries={"total_max_attempts": 1, "mode": "standard"},
            connect_timeout=10,
            read_timeout=60,
            # No CRC32 checksums (aws-chunked bodies with trailers over HTTPS) unless an
            # operation requires one: GCS, B2, R2 and older MinIO refuse them, and every
            # byte read is checked with BLAKE3 anyway.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        with self._client_errors(endpoint_url, region):
            session = _new_session(boto3, botocore, profile, credentials or {})
            self._client = session.client(
                "s3", endpoint_url=endpoint_url, region_name=region, config=config
            )

    @contextlib.contextmanager
    def _client_errors(self, endpoint: str | None, region: str | None) -> Iterator[None]:
        """Translate what creating the session and client raises (a bad endpoint, region
        or profile, or unusable credentials, from the URL or the AWS configuration)."""
        exceptions = self._botocore.exceptions
        try:
            yield
        except exceptions.InvalidRegionError as exc:  # also a ValueError
            raise RepositoryError(
                f"invalid region {region!r} for {self.location}: {exc}",
                hint="give the region option as a name, e.g. region=us-east-1 (R2: auto)",
            ) from exc
        except ValueError as exc:
            if "endpoint" in str(exc).lower():  # botocore: "Invalid endpoint: …" (no scheme)
                where = f"endpoint={endpoint}" if endpoint else _ENDPOINT_CONFIG
                raise RepositoryError(
                    f"invalid S3 endpoint for {self.location} ({where}): {exc}",
                    hint=_ENDPOINT_HINT,
                ) from exc
            raise RepositoryError(
                f"cannot open {self.location}: {exc}",
                hint="check the store URL's options and the AWS configuration"
                " (~/.aws/config, AWS_* variables)",
            ) from exc
        except exceptions.BotoCoreError as exc:
            raise _translate_sdk_error(self._botocore, exc, "", "open", self.location) from exc

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
            compare_and_swap=True,  # If-Match on PutObject
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
    def _errors(self, key: str, action: str, *, if_version: bool = False) -> Iterator[None]:
        """Translate every botocore exception, once; ``if_version``: a 412 means the
        compare-and-swap failed (else that a create-only write met the key)."""
        exceptions = self._botocore.exceptions
        try:
            yield
        except exceptions.ClientError as exc:
            raise _translate(exc, key, action, self.location, if_version=if_version) from exc
        except exceptions.BotoCoreError as exc:
            raise _translate_sdk_error(self._botocore, exc, key, action, self.location) from exc

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

    def write(
        self,
        key: str,
        data: bytes | bytearray,
        *,
        if_absent: bool = False,
        if_version: str | None = None,
    ) -> None:
        """Store ``data`` (see :meth:`Backend.write`); ``if_version``: only if the key's
        current version (its ETag, from :meth:`stat`) is that one, else
        :class:`PreconditionFailedError` (``If-Match``, one PUT whatever the size)."""
        if if_version is not None:
            self._write_if_version(key, data, if_version)
            return
        view = memoryview(data)
        self._send(
            key,
            len(data),
            lambda: contextlib.nullcontext(data),
            lambda start: bytes(view[start : start + self.part_size]),
            if_absent,
        )

    def _write_if_version(self, key: str, data: bytes | bytearray, version: str) -> None:
        # Always one PutObject (S3 takes up to 5 GiB in one): If-Match on a completed
        # multipart upload is not something the test server checks.
        if not version:
            raise ValueError("if_version needs a version token from stat()")
        try:
            with self._errors(key, "write", if_version=True):
                self._client.put_object(
                    Bucket=self.bucket,
                    Key=self._key(key),
                    Body=bytes(data),
                    ContentLength=len(data),
                    IfMatch=version,
                )
        except ObjectNotFoundError as exc:  # no object: no version can match
            raise PreconditionFailedError(
                f"{key} changed: it no longer exists (expected version {version})"
            ) from exc

    def _write_spool(
        self,
        key: str,
        spool: Spool,
        if_absent: bool,
        before_publish: Callable[[], None] | None = None,
    ) -> None:
        """Send a value gathered in a local spool file, streamed from the file: a pack
        on its way holds no more memory than the SDK's send buffer. (Sending is
        publishing here: ``before_publish`` runs first.)"""
        if before_publish is not None:
            before_publish()
        self._send(
            key,
            spool.size,
            spool.reader,
            lambda start: spool.read_at(start, self.part_size),
            if_absent,
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
        """One multipart upload of ``size`` bytes, ``part_at(offset)`` giving each part;
        aborted (its parts deleted) if anything fails before it is completed."""
        upload = self._client.create_multipart_upload(Bucket=self.bucket, Key=full)
        upload_id = upload["UploadId"]
        try:
            parts = []
            for number, start in enumerate(range(0, size, self.part_size), start=1):
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
            # Best effort (the store may be what failed): a bucket lifecycle rule
            # (AbortIncompleteMultipartUpload) removes what is left, see docs/backends.md.
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


def _translate(
    exc: Any, key: str, action: str, location: str, *, if_version: bool = False
) -> CasError:
    """An S3 error answer (botocore's ``ClientError``) → the cas error it means."""
    err = exc.response.get("Error", {})
    code = str(err.get("Code", ""))
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    where = f"{action} {key} on {location}"
    if code == "NoSuchBucket":
        return RepositoryError(
            f"no bucket for {location}", hint="create the bucket first, or check the store URL"
        )
    if code == "NoSuchUpload":
        # A multipart upload that vanished midway (aborted by a lifecycle rule, or by
        # another client): a new attempt starts a new one.
        return BackendUnavailableError(f"the multipart upload went away: {where}")
    if code in ("NoSuchKey", "404", "NotFound") or status == 404:
        return ObjectNotFoundError(key)
    if code == "PreconditionFailed" or status == 412:
        # If-None-Match: * met an existing key (PutObject, or CompleteMultipartUpload),
        # or If-Match met another version.
        if if_version:
            return PreconditionFailedError(f"{key} changed: its version is not the one expected")
        return AlreadyExistsError(key)
    if code in ("ConditionalRequestConflict", "OperationAborted"):
        # 409: another conditional write or multipart completion on this key was in
        # progress; S3 says to retry. A retry then sees its outcome (e.g. a 412).
        return BackendUnavailableError(
            f"another operation on the same key was in progress: {where} ({code})"
        )
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
            f"permission denied: {where} ({code or status})",
            hint="check the credentials; a read-only credential can still clone and check out",
        )
    if code in _TRANSIENT_CODES or status == 429 or status >= 500:
        return BackendUnavailableError(f"the store was busy or failing: {where} ({code or status})")
    return BackendError(f"failed to {where}: {code or status} {err.get('Message', '')}".strip())


def _translate_sdk_error(
    botocore: Any, exc: Exception, key: str, action: str, location: str
) -> CasError:
    """Anything botocore raises itself, other than an S3 error answer → a cas error.

    ``botocore`` is the module (imported lazily).
    """
    exceptions = botocore.exceptions
    where = f"{action} {key} on {location}" if key else f"{action} {location}"
    cause = getattr(exc, "kwargs", {}).get("error")
    if isinstance(cause, CasError):
        # botocore wraps whatever fails while it sends a body: our own error reading a
        # spooled value comes out as it was raised.
        return cause
    if isinstance(exc, exceptions.SSLError):
        if _is_dropped_tls(exc):
            return BackendUnavailableError(f"the TLS connection dropped: {where}: {exc}")
        return BackendError(
            f"TLS failed: {where}: {exc}",
            hint="check the endpoint's scheme (http:// for a plain-HTTP server such as a"
            " local MinIO, https:// otherwise) and, for a private CA, point AWS_CA_BUNDLE"
            " (or ca_bundle in ~/.aws/config) at its certificate bundle",
        )
    if isinstance(
        exc,
        (
            exceptions.ConnectionError,  # endpoint, proxy, connect timeout
            exceptions.HTTPClientError,  # read timeout, connection closed, stream error
            exceptions.IncompleteReadError,
        ),
    ):
        return BackendUnavailableError(f"the store did not answer: {where}: {exc}")
    if isinstance(exc, exceptions.ProfileNotFound):
        return PermissionDeniedError(
            f"cannot {where}: {exc}",
            hint="name a profile defined in ~/.aws/config or ~/.aws/credentials"
            " (AWS_CONFIG_FILE / AWS_SHARED_CREDENTIALS_FILE): fix ?profile= in the store URL"
            " or AWS_PROFILE",
        )
    if isinstance(
        exc,
        (
            exceptions.NoCredentialsError,
            exceptions.PartialCredentialsError,
            exceptions.CredentialRetrievalError,
            exceptions.TokenRetrievalError,
            exceptions.SSOError,
            exceptions.UnauthorizedSSOTokenError,
            exceptions.UnknownCredentialError,
            exceptions.ConfigParseError,
            exceptions.ConfigNotFound,
        ),
    ):
        return PermissionDeniedError(
            f"no usable credentials to {where}: {exc}", hint=_CREDENTIALS_HINT
        )
    if isinstance(exc, exceptions.ParamValidationError):
        return RepositoryError(
            f"the installed botocore {botocore.__version__} cannot make a request cas needs"
            f" ({where}): {exc}",
            hint=_SDK_HINT,
        )
    return BackendError(f"failed to {where}: {type(exc).__name__}: {exc}")


def _is_dropped_tls(exc: BaseException) -> bool:
    """True when a TLS error is a connection cut off (EOF, reset), not a refusal to
    trust the server (certificate, protocol, plain HTTP on the other end)."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        e = todo.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, (ssl.SSLEOFError, ssl.SSLZeroReturnError, ConnectionResetError)):
            return True
        kwargs = getattr(e, "kwargs", None)
        links = [e.__cause__, e.__context__, getattr(e, "reason", None), *e.args]
        if isinstance(kwargs, dict):
            links.append(kwargs.get("error"))
        todo += [x for x in links if isinstance(x, BaseException)]
    return False
