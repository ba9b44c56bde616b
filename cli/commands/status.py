"""``cas status``."""

from __future__ import annotations

import click

from ..context import Options, pass_options
from ..output import echo, emit_json, human_bytes, plural


@click.command()
@pass_options
def status(opts: Options) -> None:
    """Show what changed in the worktree since its version, and where its branch is.

    Added, modified and deleted files are listed with their sizes. A branch that moved
    on (another machine committed) or diverged (two commits from the same version) is
    reported with the way to resolve it.
    """
    with opts.open_repo() as repo:
        st = repo.status()
    if opts.json:
        emit_json(
            {
                "branch": st.branch,
                "commit": st.commit_id,
                "branch_head": st.branch_head,
                "diverged_heads": list(st.diverged_heads),
                "pending_refs": list(st.pending_refs),
                "added": [{"path": p, "size": s} for p, s in st.added],
                "modified": [{"path": p, "size": s} for p, s in st.modified],
                "deleted": [{"path": p, "size": s} for p, s in st.deleted],
                "clean": st.clean,
            }
        )
        return
    where = f"On branch {st.branch}" if st.branch else "Not on a branch (detached)"
    echo(f"{where}, at {st.commit_id.short if st.commit_id else 'no commit yet'}")
    if st.diverged_heads:
        heads = ", ".join(h.short for h in st.diverged_heads)
        echo(f"Branch {st.branch} has diverged: heads {heads}.")
        echo(f"  Resolve with `cas branch --force {st.branch} COMMIT` after choosing one.")
    elif st.behind and st.branch_head is not None:
        echo(f"Branch {st.branch} has moved on to {st.branch_head.short} (committed elsewhere).")
        echo(f"  Commit to a new branch (`cas branch NAME`), or `cas checkout {st.branch}`.")
    if st.pending_refs:
        n = len(st.pending_refs)
        echo(
            f"{plural(n, 'ref entry', 'ref entries')} {'is' if n == 1 else 'are'} not readable"
            " yet (upload in progress?)."
        )
    if st.clean:
        echo("Nothing changed.")
        return
    for label, rows in (("added", st.added), ("modified", st.modified), ("deleted", st.deleted)):
        for path, size in rows:
            echo(f"  {label:9} {path}  ({human_bytes(size)})")
    total = len(st.added) + len(st.modified) + len(st.deleted)
    them = "it" if total == 1 else "them"
    echo(f"{plural(total, 'change')}; commit {them} with `cas commit -m MESSAGE`.")
