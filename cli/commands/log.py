"""``cas log [REF]``."""

from __future__ import annotations

import click

from ..context import Options, pass_options
from ..output import echo, emit_json, format_time, human_bytes


@click.command()
@click.argument("ref", required=False)
@click.option(
    "-n",
    "--max-count",
    type=click.IntRange(min=0),
    default=None,
    metavar="N",
    help="Show at most N commits (0: none).",
)
@click.option("--all", "all_refs", is_flag=True, help="Commits of every branch and tag.")
@click.option("--oneline", is_flag=True, help="One line per commit.")
@pass_options
def log(
    opts: Options, ref: str | None, max_count: int | None, all_refs: bool, oneline: bool
) -> None:
    """Show the history of REF (default: the worktree's branch), newest first.

    A diverged branch shows the commits of every head.
    """
    with opts.open_repo() as repo:
        # -n 0 shows nothing, as in git (the ref is still checked).
        limit = None if max_count is None else max(max_count, 1)
        entries = repo.log(ref, limit=limit, all=all_refs)[:max_count]
    if opts.json:
        emit_json(
            {
                "commits": [
                    {
                        "commit": e.commit_id,
                        "parents": list(e.commit.parents),
                        "message": e.commit.message,
                        "author": e.commit.author,
                        "time_ns": e.commit.time_ns,
                        "refs": list(e.refs),
                        "files": e.commit.stats.files,
                        "bytes": e.commit.stats.bytes,
                        "bytes_new": e.commit.stats.new_bytes,
                    }
                    for e in entries
                ]
            }
        )
        return
    for e in entries:
        labels = f" ({', '.join(e.refs)})" if e.refs else ""
        if oneline:
            first = e.commit.message.splitlines()[0] if e.commit.message else ""
            echo(f"{e.commit_id.short}{labels} {first}")
            continue
        c = e.commit
        echo(f"commit {e.commit_id.hex()}{labels}")
        echo(f"Author: {c.author}")
        echo(f"Date:   {format_time(c.time_ns)}")
        echo(
            f"Files:  {c.stats.files}, {human_bytes(c.stats.bytes)} "
            f"(new {human_bytes(c.stats.new_bytes)})"
        )
        echo()
        for line in c.message.splitlines() or [""]:
            echo(f"    {line}")
        echo()
