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
[--cache-dir DIR] COMMAND ...`; `--json` and `-q` work after the command too
(`cas status --json` is `cas --json status`). Commands run inside a worktree, found
upward from the current folder (or from `-C DIR`), like git.

## Paths

A PATH argument (`cas checkout REF PATH...`, `cas ls REF PATH`) is read as git reads it:
relative to the current folder (or to `-C DIR`), or absolute; `.` is the current folder.
A path outside the worktree is a usage error (exit 2). Paths in the output are always
relative to the worktree's root, wherever the command runs, so a script gets the same
paths from any folder. With `-C DIR`, relative STORE and DIR arguments of `cas init` and
`cas clone` start from DIR too; `--cache-dir` starts from the current folder.

## Output

Results go to stdout, messages and progress bars to stderr. Progress bars are drawn only
when stderr is a terminal, and never with `--quiet` or `--json`. With `--json`, a command
prints one JSON object on stdout; an error is one JSON object on stderr:
`{"message_type": "error", "code": 5, "message": "...", "hint": "..."}`. Ids are
64-character lower-case hex strings, sizes are bytes, times are nanoseconds since the epoch.

Warnings (something cas left undone, say a FIFO it cannot store, or a retried write) are
`warning: ...` lines on stderr, shown with `--quiet` too; with `--json` each is one JSON
object, `{"message_type": "warning", "message": "..."}`, so stderr is JSON lines, an error
(if any) last. `--debug` adds the library's debug log the same way (`debug: ...`, or
`"message_type": "debug"`) and a traceback (plain text) for every error. A command that finished but
left something out exits with 3: `cas commit` makes the commit without the sockets, FIFOs
and devices in the folder, names them in a warning, and lists them in its JSON output
(`"skipped"`).

## Exit codes

Scripts must treat any code not listed here as a failure.

| code | meaning |
| --- | --- |
"""

_MEANINGS = [
    (errors.SUCCESS, "success"),
    (errors.FAILURE, "failed for a reason not listed below, including internal errors (bugs)"),
    (errors.USAGE, "usage error: unknown option, missing or invalid argument"),
    (errors.WARNINGS, "finished, with warnings: the work is done, something was left out"),
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
