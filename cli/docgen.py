"""Generate docs/cli.md from the commands' own help, so the reference cannot drift.

``python -m cas_cli.docgen > docs/cli.md``; ``tests/cli/test_docs.py`` checks it is current.
"""

from __future__ import annotations

import click

from . import errors
from .commands import COMMANDS
from .main import cli

INTRO = """\
# cas command reference

Generated from `cas --help` by `python -m cas_cli.docgen > docs/cli.md`; a test fails
when it is out of date.

Global options go before the command: `cas [-C DIR] [--json] [-q] [--debug]
[--cache-dir DIR] COMMAND ...`. Commands run inside a worktree, found upward from the
current folder (or from `-C DIR`), like git.

## Output

Results go to stdout, messages and progress bars to stderr. Progress bars are drawn only
when stderr is a terminal, and never with `--quiet` or `--json`. With `--json`, a command
prints one JSON object on stdout; an error is one JSON object on stderr:
`{"message_type": "error", "code": 5, "message": "...", "hint": "..."}`. Ids are
64-character lower-case hex strings, sizes are bytes, times are nanoseconds since the epoch.

## Exit codes

Scripts must treat any code not listed here as a failure.

| code | meaning |
| --- | --- |
"""

_MEANINGS = [
    (errors.SUCCESS, "success"),
    (errors.FAILURE, "failed for a reason not listed below, including internal errors (bugs)"),
    (errors.USAGE, "usage error: unknown option, missing or invalid argument"),
    (errors.WARNINGS, "finished, with warnings"),
    (errors.NOT_A_REPOSITORY, "not a worktree, or no store at the given location"),
    (errors.NOT_FOUND, "not found: unknown ref, path or object"),
    (
        errors.CONFLICT,
        "conflict: uncommitted changes, branch moved or diverged, tag exists, detached HEAD",
    ),
    (errors.LOCKED, "another cas command is running in this worktree"),
    (errors.BACKEND, "the store is unavailable or refused: permission, disk full, I/O error"),
    (errors.INTEGRITY, "integrity: damaged or missing data, or an unsafe path in a version"),
    (errors.UNSUPPORTED, "the store uses a newer format or an unknown feature: upgrade cas"),
    (errors.INTERRUPTED, "interrupted (Ctrl-C); completed work is kept"),
]


def render() -> str:
    """The whole reference as Markdown."""
    parts = [INTRO]
    parts += [f"| {code} | {text} |\n" for code, text in _MEANINGS]
    # make_context applies the group's context_settings (-h), as a real run does.
    ctx = cli.make_context(
        "cas", [], resilient_parsing=True, terminal_width=88, max_content_width=88
    )
    parts.append("\n## cas\n\n```text\n" + cli.get_help(ctx) + "\n```\n")
    for cmd in COMMANDS:
        # With the group's context as parent, options such as -h are inherited exactly
        # as when the command runs.
        sub = click.Context(cmd, info_name=cmd.name, parent=ctx)
        parts.append(f"\n## cas {cmd.name}\n\n```text\n{cmd.get_help(sub)}\n```\n")
    return "".join(parts)


if __name__ == "__main__":
    click.echo(render(), nl=False)
