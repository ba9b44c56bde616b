"""``cas checkout REF [--force] [PATH ...]``."""

from __future__ import annotations

import click

from ..context import Options, pass_options
from ..output import echo, emit_json, human_bytes, note, plural


@click.command()
@click.argument("ref")
@click.argument("paths", nargs=-1, metavar="[PATH]...")
@click.option(
    "-f",
    "--force",
    is_flag=True,
    help="Discard uncommitted changes to files the checkout must replace or delete.",
)
@pass_options
def checkout(opts: Options, ref: str, paths: tuple[str, ...], force: bool) -> None:
    """Make the worktree (or only PATHs) exactly version REF.

    REF is a tag, a branch, a commit id or a unique prefix of one. Files that are
    already right are not touched; missing chunks come from files in the worktree first,
    then the local cache, then the store. Files REF lacks are removed, so the folder is
    exactly REF; files matched by .casignore are never touched. Checkout refuses to
    overwrite or delete anything that is in no commit (edits, new files), unless --force,
    which cannot be undone. With PATHs, only those files or folders change and the
    worktree stays on its branch (or version). A PATH is relative to the current folder
    (or -C DIR), or absolute; `.` is the current folder.
    """
    with opts.open_repo() as repo:
        scopes = opts.worktree_paths(repo, paths) if paths else None
        res = repo.checkout(ref, paths=scopes, force=force)
        head = repo.head
    s = res.stats
    if opts.json:
        emit_json(
            {
                "commit": res.commit_id,
                "ref": ref,
                "branch": res.branch,
                "files_written": s.files_written,
                "files_deleted": s.files_deleted,
                "files_unchanged": s.files_unchanged,
                "bytes_written": s.bytes_written,
                "bytes_from_worktree": s.bytes_from_worktree,
                "bytes_from_cache": s.bytes_from_cache,
                "bytes_fetched": s.bytes_fetched,
                "pending": list(res.pending),
                # With PATHs: the worktree paths restored; the worktree's own branch is
                # then unchanged (head_branch; None when detached).
                "paths": scopes,
                "head_branch": head.branch,
            }
        )
        return
    if res.pending:
        note(
            f"note: {ref} has newer versions whose data is not all on the store yet "
            f"({', '.join(c.short for c in res.pending)}): an upload is still in progress "
            "elsewhere (on Colab: drive.flush_and_unmount() there); checked out the newest "
            "complete one"
        )
    if scopes is not None:
        at = head.commit.short if head.commit else "no commit"
        still = f"on branch {head.branch}" if head.branch else f"at {at} (detached)"
        echo(
            f"Restored {plural(len(scopes), 'path')} from {ref} ({res.commit_id.short}); "
            f"still {still}"
        )
    else:
        where = f"branch {res.branch}" if res.branch else f"{ref} (detached)"
        echo(f"Checked out {where} at {res.commit_id.short}")
    if not opts.quiet:
        note(
            f"{s.files_written} written, {s.files_deleted} deleted, {s.files_unchanged} unchanged;"
            f" fetched {human_bytes(s.bytes_fetched)}, reused {human_bytes(s.bytes_from_worktree)}"
            f" from the worktree and {human_bytes(s.bytes_from_cache)} from the cache"
        )
