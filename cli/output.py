"""Rendering: results to stdout (human or JSON), everything else to stderr."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
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


def plural(n: int, word: str, words: str | None = None) -> str:
    """``1 change``, ``2 changes`` (``words`` for an irregular plural)."""
    return f"{n} {word if n == 1 else (words or word + 's')}"


def error_json(code: int, message: str, hint: str) -> None:
    """An error as one JSON object on stderr."""
    sys.stderr.write(
        json.dumps({"message_type": "error", "code": code, "message": message, "hint": hint}) + "\n"
    )


def message_json(message_type: str, message: str) -> None:
    """A warning (or, with --debug, a log line) as one JSON object on stderr."""
    sys.stderr.write(
        json.dumps({"message_type": message_type, "message": printable(message)}) + "\n"
    )


def warning(text: str, *, json_mode: bool) -> None:
    """A warning on stderr: ``warning: text``, or one JSON object with --json.

    Shown with --quiet too: a warning is not progress.
    """
    if json_mode:
        message_json("warning", text)
    else:
        _note_between_bars(f"warning: {text}")


def _note_between_bars(text: str) -> None:
    """:func:`note`, clearing and redrawing any progress bar drawn on the terminal."""
    if not sys.stderr.isatty():
        note(text)
        return
    from tqdm import tqdm  # lazy: ~0.1 s of imports, only for a warning on a terminal

    with tqdm.external_write_mode(file=sys.stderr):
        note(text)


class LogHandler(logging.Handler):
    """Prints the library's log records on stderr for the CLI.

    Warnings (and worse) always, lower levels only when ``debug()`` says so; as
    ``warning: ...`` lines, or with --json as one JSON object per line
    (``{"message_type": "warning", "message": ...}``), so stderr stays JSON lines.
    ``json_mode`` and ``debug`` are asked at each record: the options may still change
    after the handler is installed (``cas status --json``).
    """

    def __init__(self, json_mode: Callable[[], bool], debug: Callable[[], bool]) -> None:
        super().__init__(logging.DEBUG)
        self._json_mode = json_mode
        self._debug = debug

    def emit(self, record: logging.LogRecord) -> None:
        """Print one record."""
        if record.levelno < logging.WARNING and not self._debug():
            return
        try:
            text = record.getMessage()
            kind = "warning" if record.levelno >= logging.WARNING else "debug"
            if kind == "warning":
                warning(text, json_mode=self._json_mode())
            elif self._json_mode():
                message_json(kind, f"{record.name}: {text}")
            else:
                _note_between_bars(f"debug: {record.name}: {text}")
        except Exception:  # noqa: BLE001 (logging's own convention: report, never raise)
            self.handleError(record)
