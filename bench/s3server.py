"""The S3 remote's server: moto's S3 app behind werkzeug on 127.0.0.1, in its own process
(so its CPU is its own, read from /proc/PID/stat like the FUSE daemon's), with counters.

    python -m bench.s3server [--port 0] [--trace]

Prints ``PORT`` on stdout once it listens. Every request is counted by kind (GET of an
object, PUT, HEAD, POST, DELETE, LIST of a bucket) with the bytes of its body and of its
response; ``GET /__bench_stats__`` returns the counters as JSON (and is not counted).
``--trace`` writes one line per request on stderr (the runner sends it to
logs/PRESET-s3-server.log, between its own step markers): kind, method, status, path and
query, bytes in and out, start (seconds since the server started) and milliseconds.
Started and stopped by :class:`bench.s3.S3Server`.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import WSGIRequestHandler, make_server

STATS_PATH = "/__bench_stats__"
T0 = time.perf_counter()
KINDS = ("get", "put", "list", "head", "post", "delete", "other")


class QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass  # a log line per request would cost the server CPU for nothing


class Counting:
    """WSGI middleware: requests and bytes by kind, in a thread-safe dict."""

    def __init__(self, app: Callable[..., Iterable[bytes]], trace: bool = False) -> None:
        self.app = app
        self.trace = trace
        self.lock = threading.Lock()
        self.stats: dict[str, float] = {"requests": 0, "bytes_in": 0, "bytes_out": 0}
        for k in KINDS:
            self.stats[k] = 0

    def _add(self, **delta: float) -> None:
        with self.lock:
            for k, v in delta.items():
                self.stats[k] = self.stats.get(k, 0) + v

    @staticmethod
    def kind(method: str, path: str, query: str) -> str:
        has_key = "/" in path.strip("/")
        if method == "GET":
            return "get" if has_key else "list"
        if method == "POST" and not has_key and "delete" in query:
            return "delete"  # DeleteObjects: one request for up to 1000 keys
        m = method.lower()
        return m if m in KINDS else "other"

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        path = environ.get("PATH_INFO", "")
        if path == STATS_PATH:
            with self.lock:
                body = json.dumps(self.stats).encode()
            start_response(
                "200 OK",
                [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
            )
            return [body]
        kind = self.kind(environ["REQUEST_METHOD"], path, environ.get("QUERY_STRING", ""))
        try:
            size_in = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            size_in = 0
        self._add(requests=1, bytes_in=size_in, **{kind: 1})
        t0 = time.perf_counter()
        status = ["?"]

        def start(st: str, headers: Any, *exc: Any) -> Any:
            status[0] = st.split(" ", 1)[0]
            return start_response(st, headers, *exc)

        body = self.app(environ, start)
        what = f"{kind} {environ['REQUEST_METHOD']}"
        target = path + ("?" + environ["QUERY_STRING"] if environ.get("QUERY_STRING") else "")
        return self._count_out(body, what, status, target, size_in, t0)

    def _count_out(
        self,
        body: Iterable[bytes],
        what: str,
        status: list[str],
        target: str,
        size_in: int,
        t0: float,
    ) -> Iterator[bytes]:
        total = 0
        try:
            for chunk in body:
                total += len(chunk)
                yield chunk
        finally:
            close = getattr(body, "close", None)
            if close is not None:
                close()
            self._add(bytes_out=total)
            if self.trace:
                ms = (time.perf_counter() - t0) * 1000
                at = t0 - T0
                line = (
                    f"{what} {status[0]} {target} in={size_in} out={total} t={at:.3f} {ms:.1f}ms\n"
                )
                sys.stderr.write(line)
                sys.stderr.flush()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.s3server")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0: a free port")
    ap.add_argument("--trace", action="store_true", help="a line per request on stderr")
    args = ap.parse_args(argv)
    app = Counting(DomainDispatcherApplication(create_backend_app), trace=args.trace)
    server = make_server(args.host, args.port, app, threaded=True, request_handler=QuietHandler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(server.server_address[1], flush=True)
    try:
        server.serve_forever()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
