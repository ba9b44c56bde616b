"""Watching and failing the requests of a real S3 client, and a read-only door to moto.

:class:`S3Calls` hooks into botocore's own event system (``before-send``), so every
request of the client under test still goes to the real loopback server unless a fault
was asked for: then botocore gets, instead of the server's answer, an S3 error answer
(status and XML body, parsed by botocore as any other) or an exception from its transport
layer. Only what a real server cannot produce on demand is faked.

:class:`ReadOnlyS3Proxy` stands in front of the moto server as a read-only credential
would: reads (GET, HEAD) go through, every write (PUT, POST, DELETE) gets S3's own
``403 AccessDenied`` answer and is recorded.
"""

from __future__ import annotations

import http.client
import http.server
import threading
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

ERROR_XML = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    "<Error><Code>{code}</Code><Message>{message}</Message>"
    "<RequestId>CASTEST</RequestId></Error>"
)


class _Raw:
    """The raw body of a made-up answer, read the way botocore reads urllib3's."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, *_args: Any, **_kwargs: Any) -> Iterator[bytes]:
        yield self._body


def error_answer(status: int, code: str, message: str = "injected by the test") -> Any:
    """An S3 error answer as it comes off the wire (botocore parses it)."""
    from botocore.awsrequest import AWSResponse

    body = ERROR_XML.format(code=code, message=message).encode()
    headers = {"Content-Type": "application/xml", "Content-Length": str(len(body))}
    return AWSResponse("http://127.0.0.1/", status, headers, _Raw(body))


class S3Calls:
    """The operations one boto3 client sends (in order), their request headers, and
    faults to inject into the next ones."""

    def __init__(self, client: Any) -> None:
        self.ops: list[str] = []
        self.headers: list[tuple[str, dict[str, str]]] = []
        self._faults: dict[str, list[Callable[[], Any] | None]] = {}
        self._lock = threading.Lock()
        client.meta.events.register("before-send.s3", self._before_send)

    def _before_send(self, request: Any, event_name: str, **_kwargs: Any) -> Any:
        op = event_name.rsplit(".", 1)[-1]
        headers = {
            k: (v.decode() if isinstance(v, bytes) else str(v)) for k, v in request.headers.items()
        }
        with self._lock:
            self.ops.append(op)
            self.headers.append((op, headers))
            pending = self._faults.get(op)
            fault = pending.pop(0) if pending else None
        return fault() if fault is not None else None  # None: the real server answers

    def fail(self, op: str, status: int, code: str, *, times: int = 1, after: int = 0) -> None:
        """Answer ``times`` requests of ``op`` with an S3 error, after letting the next
        ``after`` through to the server."""
        self._add(op, lambda: error_answer(status, code), times, after)

    def raise_(self, op: str, exc: BaseException, *, times: int = 1, after: int = 0) -> None:
        """Have the transport raise ``exc`` for ``times`` requests of ``op`` (after
        ``after`` that go through)."""

        def fault() -> Any:
            raise exc

        self._add(op, fault, times, after)

    def _add(self, op: str, fault: Callable[[], Any], times: int, after: int) -> None:
        with self._lock:
            self._faults.setdefault(op, []).extend([None] * after + [fault] * times)

    def count(self, op: str) -> int:
        return self.ops.count(op)

    def headers_of(self, op: str) -> list[dict[str, str]]:
        return [h for o, h in self.headers if o == op]


class ReadOnlyS3Proxy:
    """An HTTP server on 127.0.0.1 that forwards reads to ``upstream`` (the moto server)
    and refuses every write with ``403 AccessDenied``, as S3 does for a credential that
    may only read (s3:GetObject, s3:ListBucket)."""

    def __init__(self, upstream: str) -> None:
        up = urlsplit(upstream)
        assert up.hostname is not None and up.port is not None
        self.upstream = (up.hostname, up.port)
        self.reads: list[str] = []
        self.writes: list[str] = []
        self._lock = threading.Lock()
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> ReadOnlyS3Proxy:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _body(self) -> bytes:
                if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                    self.close_connection = True
                    return b""
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _forward(self) -> None:
                with proxy._lock:
                    proxy.reads.append(f"{self.command} {self.path}")
                conn = http.client.HTTPConnection(*proxy.upstream, timeout=60)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
                    body = self._body() or None
                    conn.request(self.command, self.path, body=body, headers=headers)
                    resp = conn.getresponse()
                    answer = resp.read()
                finally:
                    conn.close()
                self.send_response(resp.status)
                skip = {"transfer-encoding", "connection", "keep-alive"}
                if self.command != "HEAD":
                    skip.add("content-length")  # set below from the body as relayed
                for k, v in resp.getheaders():
                    if k.lower() not in skip:
                        self.send_header(k, v)
                if self.command != "HEAD":
                    self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(answer)

            def _deny(self) -> None:
                with proxy._lock:
                    proxy.writes.append(f"{self.command} {self.path}")
                self._body()
                body = ERROR_XML.format(code="AccessDenied", message="Access Denied").encode()
                self.send_response(403)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_HEAD = _forward
            do_PUT = do_POST = do_DELETE = _deny

        return Handler
