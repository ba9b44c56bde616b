"""Progress bars for the terminal: drawn only on a TTY and never with --quiet or --json."""

from __future__ import annotations

import sys

from cas.progress import BarProgress, NoProgress, Progress


def make_progress(*, quiet: bool, json_mode: bool) -> Progress:
    """A bar on stderr when it is a terminal, else nothing."""
    if quiet or json_mode or not sys.stderr.isatty():
        return NoProgress()
    return BarProgress(file=sys.stderr)
