"""Progress bars for the terminal: drawn only on a TTY and never with --quiet or --json."""

from __future__ import annotations

import sys
from typing import TextIO

from cas.progress import BarProgress, NoProgress, Progress


def make_progress(*, quiet: bool, json_mode: bool, stream: TextIO | None = None) -> Progress:
    """A bar on ``stream`` (default: stderr) when it is a terminal, else nothing.

    The bar (tqdm, see :class:`cas.progress.BarProgress`) counts bytes in KiB/MiB/GiB
    steps and shows the rate and the time left once the total is known.
    """
    out = sys.stderr if stream is None else stream
    if quiet or json_mode or not out.isatty():
        return NoProgress()
    return BarProgress(file=out)
