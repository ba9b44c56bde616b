"""``cas show REF``."""

from __future__ import annotations

import click

from ..context import Options, pass_options
from ..output import echo, emit_json, format_time, human_bytes, plural


@click.command()
@click.argument("ref", default="HEAD")
@pass_options
def show(opts: Options, ref: str) -> None:
    """Show one version: id, parents, author, date, message, sizes, and its changes."""
    with opts.open_repo() as repo:
        e = repo.show(ref)
        parent = e.commit.parents[0].hex() if e.commit.parents else None
        changes = repo.diff(parent, e.commit_id.hex()) if parent else None
    c = e.commit
    s = c.stats
    if opts.json:
        emit_json(
            {
                "commit": e.commit_id,
                "tree": c.tree,
                "parents": list(c.parents),
                "message": c.message,
                "author": c.author,
                "time_ns": c.time_ns,
                "refs": list(e.refs),
                "stats": {
                    "files": s.files,
                    "dirs": s.dirs,
                    "symlinks": s.symlinks,
                    "bytes": s.bytes,
                    "bytes_scanned": s.scanned_bytes,
                    "bytes_new": s.new_bytes,
                    "bytes_stored": s.stored_bytes,
                },
                "changes": None
                if changes is None
                else [{"path": ch.path, "status": ch.status} for ch in changes],
            }
        )
        return
    labels = f" ({', '.join(e.refs)})" if e.refs else ""
    echo(f"commit {e.commit_id.hex()}{labels}")
    for p in c.parents:
        echo(f"Parent: {p.hex()}")
    echo(f"Author: {c.author}")
    echo(f"Date:   {format_time(c.time_ns)}")
    echo(
        f"Files:  {plural(s.files, 'file')}, {plural(s.dirs, 'folder')}, "
        f"{plural(s.symlinks, 'symlink')}, {human_bytes(s.bytes)}"
    )
    echo(f"Stored: {human_bytes(s.new_bytes)} new, {human_bytes(s.stored_bytes)} uploaded")
    echo()
    for line in c.message.splitlines() or [""]:
        echo(f"    {line}")
    if changes is not None:
        echo()
        for ch in changes:
            echo(f"{ch.status[0].upper()} {ch.path}")
