"""``cas clone STORE DIR [--ref REF]``."""

from __future__ import annotations

from pathlib import Path

import click

import cas

from ..context import Options, pass_options
from ..output import echo, emit_json, human_bytes, plural


@click.command()
@click.argument("store")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--ref", default=None, help="Version to check out (default: the store's main branch)."
)
@click.option("--force", is_flag=True, help="Overwrite files already in DIR that differ.")
@pass_options
def clone(opts: Options, store: str, directory: Path, ref: str | None, force: bool) -> None:
    """Attach the folder DIR to the existing store STORE and check out REF.

    DIR may already hold files (for example an earlier copy): files that match are
    reused, chunks inside them are used before anything is fetched, and files that
    differ are never overwritten without --force. With -C DIR, relative STORE and DIR
    paths start from DIR, as in git.
    """
    repo = cas.clone(
        opts.store_location(store),
        opts.local_path(directory),
        ref=ref,
        cache_dir=opts.cache_dir,
        progress=opts.progress(),
        force=force,
    )
    with repo:
        head = repo.head
        if opts.json:
            emit_json(
                {
                    "store": repo.store,
                    "worktree": str(repo.root),
                    "branch": head.branch,
                    "commit": head.commit,
                }
            )
            return
        if head.commit is None:
            echo(f"Cloned an empty store into {repo.root} (branch {head.branch}).")
            return
        echo(
            f"Cloned {store} into {repo.root} at {head.commit.short}"
            + (f" (branch {head.branch})" if head.branch else " (detached)")
        )
        entry = repo.show("HEAD", labels=False)
        echo(f"{plural(entry.commit.stats.files, 'file')}, {human_bytes(entry.commit.stats.bytes)}")
