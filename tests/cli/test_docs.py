"""docs/cli.md is generated from the commands' help and must be current."""

from __future__ import annotations

from pathlib import Path

from cas_cli.docgen import render

DOC = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


def test_cli_reference_is_current() -> None:
    assert DOC.read_text() == render(), (
        "docs/cli.md is out of date: run `python -m cas_cli.docgen > docs/cli.md`"
    )
