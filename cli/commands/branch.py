"""``cas branch [NAME [REF]]``, ``cas branch -d NAME``."""

from __future__ import annotations

import click

from ..context import Options, pass_options
from ..output import echo, emit_json


@click.command()
@click.argument("name", required=False)
@click.argument("ref", required=False)
@click.option("-d", "--delete", is_flag=True, help="Delete branch NAME (its commits are kept).")
@click.option(
    "-f", "--force", is_flag=True, help="Move an existing branch; also resolves a diverged branch."
)
@pass_options
def branch(opts: Options, name: str | None, ref: str | None, delete: bool, force: bool) -> None:
    """List branches, or create branch NAME at REF (default: the worktree's version).

    To commit on the new branch, check it out: `cas checkout NAME`.
    """
    if delete and name is None:
        raise click.UsageError("cas branch -d needs a NAME")
    if delete and ref is not None:
        raise click.UsageError(f"cas branch -d takes one NAME, not also {ref!r}")
    with opts.open_repo() as repo:
        if name is None:
            rows = sorted(repo.branches(), key=lambda b: b.name)
            if opts.json:
                emit_json(
                    {
                        "branches": [
                            {
                                "name": b.name,
                                "commit": b.commit_id,
                                "current": b.current,
                                "default": b.default,
                                "diverged_heads": list(b.diverged_heads),
                            }
                            for b in rows
                        ]
                    }
                )
            else:
                for b in rows:
                    mark = "*" if b.current else " "
                    extra = (
                        " (diverged: " + ", ".join(h.short for h in b.diverged_heads) + ")"
                        if b.diverged_heads
                        else ""
                    )
                    echo(f"{mark} {b.name}\t{b.commit_id.short}{extra}")
            return
        try:
            info = (
                repo.delete_branch(name)
                if delete
                else repo.branch(name, ref or "HEAD", force=force)
            )
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="NAME") from exc
    if opts.json:
        emit_json({"branch": info.name, "commit": info.commit_id, "deleted": delete})
    elif delete:
        echo(f"Deleted branch {info.name} (was {info.commit_id.short})")
    else:
        echo(f"Branch {info.name} at {info.commit_id.short}")
