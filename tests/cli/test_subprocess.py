"""The installed entry point, run as a real process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from .conftest import make_assets

DRIVER = Path(__file__).parents[1] / "crash" / "driver.py"


def _cas(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("cas")
    assert exe is not None, "the cas console script is not installed"
    return subprocess.run(
        [exe, *args], cwd=cwd, capture_output=True, text=True, timeout=120, env=os.environ.copy()
    )


def test_console_script_version_and_user_error(tmp_path: Path) -> None:
    r = _cas("--version", cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.startswith("cas, version ")
    r = _cas("status", cwd=tmp_path)
    assert r.returncode == 4
    assert r.stderr.startswith("error: not inside a cas worktree")
    assert "Traceback" not in r.stderr


def test_end_to_end_with_the_console_script(tmp_path: Path) -> None:
    wt = tmp_path / "a"
    wt.mkdir()
    make_assets(wt)
    assert _cas("init", str(tmp_path / "store"), "a", cwd=tmp_path).returncode == 0
    r = _cas("commit", "-m", "one", "--tag", "v1", cwd=wt)
    assert r.returncode == 0, r.stderr
    r = _cas("clone", str(tmp_path / "store"), "b", "--ref", "v1", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "b" / "weights.bin").read_bytes() == (wt / "weights.bin").read_bytes()


def test_ctrl_c_exits_130_and_keeps_the_store_usable(tmp_path: Path) -> None:
    wt = tmp_path / "a"
    wt.mkdir()
    make_assets(wt)
    assert _cas("init", str(tmp_path / "store"), "a", cwd=tmp_path).returncode == 0
    r = subprocess.run(
        [sys.executable, str(DRIVER), "before-ref-update", "sigint", "--", "commit", "-m", "x"],
        cwd=wt,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 130, r.stderr
    assert "interrupted" in r.stderr
    assert "Traceback" not in r.stderr
    r = _cas("commit", "-m", "again", cwd=wt)
    assert r.returncode == 0, r.stderr
    r = _cas("log", "--oneline", cwd=wt)
    assert len(r.stdout.splitlines()) == 1


def test_warnings_of_the_real_process(tmp_path: Path) -> None:
    """With --json stderr is JSON lines (no stray log line from Python's logging)."""
    wt = tmp_path / "a"
    wt.mkdir()
    (wt / "f.txt").write_text("f\n")
    os.mkfifo(wt / "pipe")
    assert _cas("init", str(tmp_path / "store"), "a", cwd=tmp_path).returncode == 0
    r = _cas("commit", "-m", "one", "--json", cwd=wt)
    assert r.returncode == 3, r.stderr
    assert json.loads(r.stdout)["skipped"] == ["pipe"]
    assert [json.loads(line) for line in r.stderr.splitlines()] == [
        {"message_type": "warning", "message": "skipping pipe: not a file, directory or symlink"}
    ]
    r = _cas("commit", "-m", "two", cwd=wt)
    assert r.returncode == 3
    assert r.stderr.splitlines()[0] == "warning: skipping pipe: not a file, directory or symlink"
