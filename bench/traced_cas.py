"""Run the cas CLI with every call into the folder backend timed (for bench/timeline.py).

    CAS_TIMELINE=/path/to/log.jsonl python -m bench.traced_cas ARGS...

Each call of ``LocalDirBackend`` that reaches the store — read, read_range, stat, list,
list_keys, write, delete and the whole-value write of a spooled pack — appends one JSON
line: wall-clock start, duration, operation, key and thread name. Nothing else changes.
"""

from __future__ import annotations

import atexit
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import cas.store.local as local

_LOG: list[tuple[float, float, str, str, str]] = []
_LOCK = threading.Lock()


def _record(start: float, op: str, key: object) -> None:
    with _LOCK:
        _LOG.append((start, time.time() - start, op, str(key), threading.current_thread().name))


def _timed(op: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def call(self: Any, key: object, *args: Any, **kwargs: Any) -> Any:
        start = time.time()
        try:
            return fn(self, key, *args, **kwargs)
        finally:
            _record(start, op, key)

    return call


def _timed_listing(op: str, fn: Callable[..., Iterator[Any]]) -> Callable[..., Iterator[Any]]:
    def call(self: Any, prefix: str) -> Iterator[Any]:
        start = time.time()
        try:
            items = list(fn(self, prefix))
        finally:
            _record(start, op, prefix)
        return iter(items)

    return call


def _install() -> None:
    cls = local.LocalDirBackend
    for op in ("read", "read_range", "stat", "write", "delete", "_write_spool"):
        setattr(cls, op, _timed(op.lstrip("_"), getattr(cls, op)))
    for op in ("list", "list_keys"):
        setattr(cls, op, _timed_listing(op, getattr(cls, op)))


def _dump(path: str, started: float) -> None:
    with open(path, "w") as f:
        f.write(json.dumps({"process_start": started, "end": time.time()}) + "\n")
        for start, dur, op, key, thread in sorted(_LOG):
            f.write(json.dumps([start, dur, op, key, thread]) + "\n")


def main() -> None:
    started = time.time()
    path = os.environ["CAS_TIMELINE"]
    _install()
    atexit.register(_dump, path, started)
    from cas_cli.main import main as cas_main

    sys.argv = ["cas", *sys.argv[1:]]
    cas_main()


if __name__ == "__main__":
    main()
