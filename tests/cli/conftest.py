"""Helpers for CLI tests: run ``main()`` in-process and capture its streams."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from cas_cli.main import main


@dataclass
class Result:
    """Exit code and the two streams of one CLI run."""

    code: int
    out: str
    err: str


Run = Callable[..., Result]


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Run:
    """``run("commit", "-m", "x", cwd=path)`` → :class:`Result`."""

    def _run(*args: str, cwd: Path | None = None) -> Result:
        capsys.readouterr()
        if cwd is not None:
            monkeypatch.chdir(cwd)
        code = main(list(args))
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return _run


def make_assets(root: Path, n: int = 20) -> None:
    """A tiny asset folder: class folders, a bigger file, an empty dir, a symlink."""
    for cls in ("cat", "dog"):
        (root / "images" / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n // 2):
            (root / "images" / cls / f"{i}.jpg").write_bytes(os.urandom(1000 + i))
    (root / "weights.bin").write_bytes(os.urandom(300_000))
    (root / "empty").mkdir(exist_ok=True)
    (root / "config.json").write_text('{"lr": 0.001}\n')
    os.symlink("config.json", root / "current.json")
    script = root / "train.sh"
    script.write_text("#!/bin/sh\necho train\n")
    script.chmod(0o755)


@pytest.fixture
def worktree(tmp_path: Path, run: Run) -> Path:
    """A worktree with one commit tagged v1 (small chunks via the API)."""
    import cas
    from tests.conftest import SMALL_CHUNKER, SMALL_PACK

    wt = tmp_path / "wt"
    wt.mkdir()
    make_assets(wt)
    repo = cas.init(
        tmp_path / "store", wt, progress=False, chunker=SMALL_CHUNKER, pack_size=SMALL_PACK
    )
    repo.commit("first", tag="v1")
    repo.close()
    return wt
