"""--json and -q before or after the command; library warnings on stderr; exit code 3."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

import cas.api

from .conftest import Run


def _json_lines(text: str) -> list[dict[str, object]]:
    """Every line of ``text`` as a JSON object (fails on any other line)."""
    return [json.loads(line) for line in text.splitlines()]


@pytest.mark.parametrize(
    ("command", "key"),
    [
        (["status"], "clean"),
        (["log"], "commits"),
        (["tag"], "tags"),
        (["branch"], "branches"),
        (["ls", "v1"], "entries"),
        (["diff"], "changes"),
        (["show", "v1"], "commit"),
        (["du"], "versions"),
        (["verify"], "ok"),
    ],
)
def test_json_before_or_after_the_command(
    worktree: Path, run: Run, command: list[str], key: str
) -> None:
    before = run("-C", str(worktree), "--json", *command)
    after = run("-C", str(worktree), *command, "--json")
    assert before.code == after.code == 0, (before.err, after.err)
    assert key in json.loads(after.out)
    assert json.loads(after.out) == json.loads(before.out)


def test_commit_json_after_the_options(worktree: Path, run: Run) -> None:
    (worktree / "x").write_text("x")
    r = run("-C", str(worktree), "commit", "-m", "x", "--json")
    assert r.code == 0, r.err
    data = json.loads(r.out)
    assert len(data["commit"]) == 64 and data["skipped"] == []
    (worktree / "y").write_text("y")
    r = run("commit", "--json", "-m", "y", "--tag", "v2", cwd=worktree)
    assert json.loads(r.out)["tag"] == "v2"


def test_errors_are_json_with_json_after_the_command(worktree: Path, run: Run) -> None:
    r = run("-C", str(worktree), "checkout", "nope", "--json")
    assert r.code == 5 and r.out == ""
    assert json.loads(r.err)["message"].startswith("unknown ref 'nope'")
    # A usage error found before --json was read is JSON too.
    r = run("-C", str(worktree), "status", "--bogus", "--json")
    assert r.code == 2
    message = json.loads(r.err)["message"]
    assert "No such option" in message and "--bogus" in message


def test_a_message_that_reads_json_is_a_message(worktree: Path, run: Run) -> None:
    (worktree / "x").write_text("x")
    r = run("-C", str(worktree), "commit", "-m", "--json")
    assert r.code == 0, r.err
    assert len(r.out.strip()) == 64  # human output: the option's value is not the switch
    assert json.loads(run("-C", str(worktree), "log", "--json").out)["commits"][0]["message"] == (
        "--json"
    )


def test_quiet_before_or_after_the_command(worktree: Path, run: Run) -> None:
    (worktree / "x").write_text("x")
    r = run("-C", str(worktree), "commit", "-m", "x", "-q")
    assert r.code == 0 and len(r.out.strip()) == 64
    assert r.err == ""
    (worktree / "y").write_text("y")
    r = run("-C", str(worktree), "commit", "-m", "y")
    assert "uploaded" in r.err  # the summary note, without -q
    r = run("-C", str(worktree), "checkout", "v1", "--quiet")
    assert r.code == 0 and r.err == "" and "Checked out" in r.out
    r = run("-C", str(worktree), "-q", "checkout", "main")
    assert r.code == 0 and r.err == ""


def test_commit_skipping_a_fifo_exits_3(worktree: Path, run: Run) -> None:
    os.mkfifo(worktree / "pipe")
    (worktree / "x").write_text("x")
    r = run("-C", str(worktree), "commit", "-m", "with a pipe")
    assert r.code == 3
    commit = r.out.strip()
    assert len(commit) == 64  # the commit is made and printed
    lines = r.err.splitlines()
    assert "warning: skipping pipe: not a file, directory or symlink" in lines
    assert lines[-1] == (
        "warning: 1 path left out of the commit (not a file, folder or symlink: "
        "a socket, FIFO or device): pipe"
    )
    log = json.loads(run("-C", str(worktree), "--json", "log").out)["commits"]
    assert log[0]["commit"] == commit and log[0]["files"] == 24  # x is in it
    r = run("-C", str(worktree), "ls", "HEAD", "pipe")
    assert r.code == 5


def test_warnings_are_json_lines_with_json(worktree: Path, run: Run) -> None:
    os.mkfifo(worktree / "pipe")
    r = run("-C", str(worktree), "commit", "-m", "with a pipe", "--json")
    assert r.code == 3
    assert json.loads(r.out)["skipped"] == ["pipe"]
    assert _json_lines(r.err) == [
        {
            "message_type": "warning",
            "message": "skipping pipe: not a file, directory or symlink",
        }
    ]
    # A warning (a damaged stat cache), then an error: JSON lines, the error last.
    for cache in (worktree / ".cas").glob("stat*"):
        cache.write_bytes(b"garbage")
    (worktree / "config.json").write_text("my edit")
    r = run("-C", str(worktree), "checkout", "v1", "--json")
    assert r.code == 6
    lines = _json_lines(r.err)
    assert lines[0] == {
        "message_type": "warning",
        "message": "stat cache unreadable; files will be read again",
    }
    assert lines[-1]["message_type"] == "error" and lines[-1]["code"] == 6


def test_warnings_are_shown_with_quiet(worktree: Path, run: Run) -> None:
    os.mkfifo(worktree / "pipe")
    r = run("-C", str(worktree), "-q", "commit", "-m", "with a pipe")
    assert r.code == 3
    assert r.err.splitlines() == [
        "warning: skipping pipe: not a file, directory or symlink",
        "warning: 1 path left out of the commit (not a file, folder or symlink: "
        "a socket, FIFO or device): pipe",
    ]


def test_stat_cache_warning_is_a_warning_line(worktree: Path, run: Run) -> None:
    caches = list((worktree / ".cas").glob("stat*"))
    assert caches
    for cache in caches:
        cache.write_bytes(b"garbage")
    r = run("-C", str(worktree), "status")
    assert r.code == 0, r.err
    assert "warning: stat cache unreadable; files will be read again" in r.err.splitlines()


def test_debug_shows_the_library_log(
    worktree: Path, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    status = cas.api.Repo.status

    def logging_status(self: cas.api.Repo) -> cas.api.Status:
        logging.getLogger("cas.api").debug("looking at %s", "the worktree")
        return status(self)

    monkeypatch.setattr(cas.api.Repo, "status", logging_status)
    r = run("-C", str(worktree), "--debug", "status")
    assert r.code == 0
    assert r.err == "debug: cas.api: looking at the worktree\n"
    r = run("-C", str(worktree), "--debug", "status", "--json")
    assert _json_lines(r.err) == [
        {"message_type": "debug", "message": "cas.api: looking at the worktree"}
    ]
    r = run("-C", str(worktree), "status")
    assert r.err == ""


def test_the_log_handler_is_removed_after_main(worktree: Path, run: Run) -> None:
    logger = logging.getLogger("cas")
    handlers, level = list(logger.handlers), logger.level
    run("-C", str(worktree), "--debug", "status")
    run("-C", str(worktree), "checkout", "nope")
    assert logger.handlers == handlers and logger.level == level
