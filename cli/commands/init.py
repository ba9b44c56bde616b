"""``cas init STORE [DIR]``."""

from __future__ import annotations

from pathlib import Path

import click

import cas

from ..context import Options, pass_options
from ..output import echo, emit_json


@click.command()
@click.argument("store")
@click.argument("directory", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option("-b", "--branch", default="main", show_default=True, help="Name of the first branch.")
@pass_options
def init(opts: Options, store: str, directory: Path | None, branch: str) -> None:
    """Create a store at STORE and make DIR (default: -C or the current folder) its worktree.

    STORE is a folder path (in Colab, a folder on the mounted Drive, e.g.
    /content/drive/MyDrive/cas-store). Nothing is committed yet: run `cas commit`.
    To attach a folder to an existing store, use `cas clone` instead. With -C DIR,
    relative STORE and DIR paths start from DIR, as in git.
    """
    target = opts.local_path(directory) if directory is not None else opts.directory
    try:
        repo = cas.init(
            opts.store_location(store),
            target,
            cache_dir=opts.cache_dir,
            progress=opts.progress(),
            branch=branch,
        )
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    with repo:
        if opts.json:
            emit_json({"store": repo.store, "worktree": str(repo.root), "branch": branch})
        else:
            echo(f"Initialized cas store at {repo.store}")
            echo(f"Worktree {repo.root} is on branch {branch}; run `cas commit -m MESSAGE`.")
