"""Progress bars: bytes, rate and ETA, a total that can grow while a walk finds work."""

from __future__ import annotations

import io
import re

from cas.progress import BarProgress, NoProgress


def _bar() -> tuple[BarProgress, io.StringIO]:
    out = io.StringIO()
    return BarProgress(file=out, mininterval=0, miniters=1, ascii=True), out


def _last(out: io.StringIO) -> str:
    return re.split(r"[\r\n]", out.getvalue().rstrip("\r\n"))[-1]


def test_a_bar_shows_bytes_rate_and_eta() -> None:
    bar, out = _bar()
    bar.start(4 << 20, "B", "commit")
    bar.advance(1 << 20)
    line = _last(out)
    assert line.startswith("commit:") and "25%" in line
    assert "1.00M/4.00M" in line  # bytes done / total, binary units
    assert re.search(r"\[\d\d:\d\d<\d\d:\d\d, ", line), line  # elapsed < ETA
    assert "B/s" in line
    bar.finish()


def test_a_total_that_grows_as_the_walk_finds_files() -> None:
    bar, out = _bar()
    bar.start(0, "B", "commit")
    bar.expect(1000)
    bar.expect(3000)
    bar.advance(1000)
    assert "25%" in _last(out)
    bar.expect(0)  # nothing new: no change
    bar.finish()
    bar.expect(5)  # after finish: ignored
    bar.advance(5)


def test_no_progress_accepts_everything_silently() -> None:
    p = NoProgress()
    p.start(10, "B", "x")
    p.expect(5)
    p.advance(3)
    p.finish()
