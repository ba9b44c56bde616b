"""``cas diff [REF [REF2]]``."""

from __future__ import annotations

import click

from cas.objects import TreeEntry

from ..context import Options, pass_options
from ..output import echo, emit_json, human_bytes


def _size(e: TreeEntry | None) -> int:
    return e.size if e is not None else 0


@click.command()
@click.argument("ref", required=False)
@click.argument("ref2", required=False)
@click.option("--stat", "stat_only", is_flag=True, help="Only the totals.")
@pass_options
def diff(opts: Options, ref: str | None, ref2: str | None, stat_only: bool) -> None:
    """Show what changed: worktree vs its version, worktree vs REF, or REF vs REF2."""
    with opts.open_repo() as repo:
        changes = repo.diff(ref, ref2)
        local = {}
        if ref2 is None:
            for c in changes:
                p = repo.root / c.path
                local[c.path] = p.lstat().st_size if c.status != "deleted" and p.is_file() else 0
    rows = [
        (
            c.path,
            c.status,
            _size(c.old),
            _size(c.new) if c.new is not None else local.get(c.path, 0),
        )
        for c in changes
    ]
    if opts.json:
        emit_json(
            {
                "changes": [
                    {"path": p, "status": s, "old_size": old, "new_size": new}
                    for p, s, old, new in rows
                ]
            }
        )
        return
    counts = {s: sum(1 for r in rows if r[1] == s) for s in ("added", "modified", "deleted")}
    if not stat_only:
        for path, status, old, new in rows:
            if status == "added":
                detail = human_bytes(new)
            elif status == "deleted":
                detail = human_bytes(old)
            else:
                detail = f"{human_bytes(old)} -> {human_bytes(new)}"
            echo(f"{status[0].upper()} {path}  ({detail})")
    echo(f"{counts['added']} added, {counts['modified']} modified, {counts['deleted']} deleted")
