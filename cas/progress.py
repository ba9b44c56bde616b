"""Progress reporting: the library talks to a :class:`Progress`, the caller draws it.

Operations call ``start(total, unit, label)``, then ``advance(n)`` as bytes (or files)
are done (and ``expect(n)`` when a walk finds more work), and ``finish()``.
:class:`NoProgress` is the silent default; :class:`BarProgress` draws a tqdm bar that
works in a terminal and in a notebook (``tqdm.auto``), with bytes, rate and ETA.
"""

from __future__ import annotations

import threading
from typing import Any, Protocol


class Progress(Protocol):
    """Receives progress from a long operation; called from several threads."""

    def start(self, total: int, unit: str, label: str) -> None:
        """A phase begins; ``total`` units are expected (0 if unknown)."""
        ...

    def advance(self, n: int) -> None:
        """``n`` more units are done."""
        ...

    def expect(self, n: int) -> None:
        """``n`` more units are expected (the total grows as a walk finds work)."""
        ...

    def finish(self) -> None:
        """The current phase is over."""
        ...


class NoProgress:
    """Reports nothing."""

    def start(self, total: int, unit: str, label: str) -> None:
        """Ignore."""

    def advance(self, n: int) -> None:
        """Ignore."""

    def expect(self, n: int) -> None:
        """Ignore."""

    def finish(self) -> None:
        """Ignore."""


class BarProgress:
    """A tqdm progress bar (terminal or notebook widget, chosen by ``tqdm.auto``)."""

    def __init__(self, **tqdm_kwargs: Any) -> None:
        self._bar: Any = None
        self._lock = threading.Lock()
        self._kwargs = tqdm_kwargs

    def start(self, total: int, unit: str, label: str) -> None:
        """Open a bar."""
        self.finish()
        with self._lock:
            from tqdm.auto import tqdm  # lazy: ~0.1 s of imports, needed only to draw

            self._bar = tqdm(
                total=total or None,
                unit=unit,
                unit_scale=unit == "B",
                unit_divisor=1024,
                desc=label,
                leave=False,
                dynamic_ncols=True,
                **self._kwargs,
            )

    def advance(self, n: int) -> None:
        """Move the bar."""
        with self._lock:
            if self._bar is not None:
                self._bar.update(n)

    def expect(self, n: int) -> None:
        """Raise the bar's total."""
        with self._lock:
            if self._bar is not None and n:
                self._bar.total = (self._bar.total or 0) + n
                self._bar.refresh()

    def finish(self) -> None:
        """Close the bar."""
        with self._lock:
            if self._bar is not None:
                self._bar.close()
                self._bar = None
