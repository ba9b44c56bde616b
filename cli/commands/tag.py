"""``cas tag [NAME [REF]]``, ``cas tag -d NAME``."""

from __future__ import annotations

import click

from ..context import Options, pass_options
from ..output import echo, emit_json


@click.command()
@click.argument("name", required=False)
@click.argument("ref", required=False)
@click.option("-d", "--delete", is_flag=True, help="Delete tag NAME (its commits are kept).")
@click.option(
    "-f", "--force", is_flag=True, help="Move an existing tag (tags are immutable otherwise)."
)
@pass_options
def tag(opts: Options, name: str | None, ref: str | None, delete: bool, force: bool) -> None:
    """List tags, or tag version REF (default: the worktree's version) as NAME.

    Tags are immutable: tagging an existing name fails unless --force. Every change of
    a tag is kept in the store's history; nothing is overwritten.
    """
    if delete and name is None:
        raise click.UsageError("cas tag -d needs a NAME")
    if delete and ref is not None:
        raise click.UsageError(f"cas tag -d takes one NAME, not also {ref!r}")
    with opts.open_repo() as repo:
        if name is None:
            tags = sorted(repo.tags(), key=lambda t: t.name)
            if opts.json:
                emit_json({"tags": [{"name": t.name, "commit": t.commit_id} for t in tags]})
            else:
                for t in tags:
                    echo(f"{t.name}\t{t.commit_id.short}")
            return
        try:
            info = repo.delete_tag(name) if delete else repo.tag(name, ref or "HEAD", force=force)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="NAME") from exc
    if opts.json:
        emit_json({"tag": info.name, "commit": info.commit_id, "deleted": delete})
    elif delete:
        echo(f"Deleted tag {info.name} (was {info.commit_id.short})")
    else:
        echo(f"Tagged {info.commit_id.short} as {info.name}")
