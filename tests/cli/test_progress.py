"""The CLI's choice of progress reporter, and what its bar shows."""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import pytest
from tqdm import tqdm

from cas.progress import BarProgress, NoProgress
from cas_cli.progress import make_progress

from .conftest import Run


class _Terminal(io.StringIO):
    """A text stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_a_bar_on_a_terminal() -> None:
    assert isinstance(make_progress(quiet=False, json_mode=False, stream=_Terminal()), BarProgress)


@pytest.mark.parametrize(
    ("quiet", "json_mode", "stream"),
    [
        (True, False, _Terminal()),  # -q
        (False, True, _Terminal()),  # --json
        (True, True, _Terminal()),
        (False, False, io.StringIO()),  # stderr redirected to a file or a pipe
    ],
)
def test_no_bar(quiet: bool, json_mode: bool, stream: io.StringIO) -> None:
    assert isinstance(make_progress(quiet=quiet, json_mode=json_mode, stream=stream), NoProgress)


def test_stderr_is_the_default_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stderr", _Terminal())
    assert isinstance(make_progress(quiet=False, json_mode=False), BarProgress)
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert isinstance(make_progress(quiet=False, json_mode=False), NoProgress)


@pytest.mark.parametrize("label", ["commit", "checkout"])
def test_a_long_operation_shows_bytes_rate_and_time_left(label: str) -> None:
    """The bar's configuration, rendered at a fixed moment (no timing involved)."""
    progress = make_progress(quiet=False, json_mode=False, stream=_Terminal())
    assert isinstance(progress, BarProgress)
    progress.start(0, "B", label)  # a commit learns its total as its walk goes
    progress.expect(3 << 30)
    progress.advance(1 << 30)
    bar = progress._bar  # the tqdm bar the library draws
    state = {**bar.format_dict, "elapsed": 10.0}  # 1 GiB in 10 s
    progress.finish()
    line = tqdm.format_meter(**state)
    assert line.startswith(f"{label}:  33%|")
    assert "1.00G/3.00G" in line  # bytes, in binary steps
    assert "[00:10<00:20, " in line  # elapsed < time left
    assert line.endswith("B/s]")  # the rate, in bytes per second


def test_commit_draws_a_bar_on_a_terminal_only(
    worktree: Path, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    (worktree / "more.bin").write_bytes(os.urandom(100_000))
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    r = run("-C", str(worktree), "commit", "-m", "more")
    assert r.code == 0
    assert "commit:" in terminal.getvalue() and "B/s" in terminal.getvalue()
    for quiet in (["-q"], ["--json"]):
        (worktree / "more.bin").write_bytes(os.urandom(100_000))
        terminal = _Terminal()
        monkeypatch.setattr(sys, "stderr", terminal)
        r = run("-C", str(worktree), "commit", "-m", "again", *quiet)
        assert r.code == 0
        assert "commit:" not in terminal.getvalue()
