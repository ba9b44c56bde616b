"""Rendering: results to stdout (human or JSON), everything else to stderr."""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from typing import Any

import click

from cas.ids import ObjectId


def human_bytes(n: int) -> str:
    """1536 → '1.5 KiB'."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def format_time(ns: int) -> str:
    """Nanoseconds since the epoch → local ISO time."""
    return (
        datetime.fromtimestamp(ns / 1e9, tz=timezone.utc)
        .astimezone()
        .strftime("%Y-%m-%d %H:%M:%S %z")
    )


def _default(obj: Any) -> Any:
    if isinstance(obj, ObjectId):
        return obj.hex()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def emit_json(data: Any) -> None:
    """One JSON document on stdout."""
    click.echo(json.dumps(data, default=_default, sort_keys=True))


def printable(text: str) -> str:
    """``text`` with undecodable bytes of file names (surrogate escapes) shown as U+FFFD."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def echo(text: str = "") -> None:
    """A result line on stdout."""
    click.echo(printable(text))


def note(text: str) -> None:
    """A message on stderr."""
    click.echo(printable(text), err=True)


def error_json(code: int, message: str, hint: str) -> None:
    """An error as one JSON object on stderr."""
    sys.stderr.write(
        json.dumps({"message_type": "error", "code": code, "message": message, "hint": hint}) + "\n"
    )
