"""``cas diff [REF [REF2]]``."""

from __future__ import annotations

import stat
from dataclasses import dataclass

import click

from cas.objects import EntryKind, TreeEntry

from ..context import Options, pass_options
from ..output import echo, emit_json, human_bytes


@dataclass(frozen=True)
class _Row:
    path: str
    status: str
    old_size: int
    new_size: int
    old_mode: int | None  # permission bits of a file (None: no file on that side)
    new_mode: int | None


def _mode(e: TreeEntry | None) -> int | None:
    return e.mode if e is not None and e.kind == EntryKind.FILE else None


def _octal(mode: int) -> str:
    return format(mode, "03o")


@click.command()
@click.argument("ref", required=False)
@click.argument("ref2", required=False)
@click.option("--stat", "stat_only", is_flag=True, help="Only the totals.")
@pass_options
def diff(opts: Options, ref: str | None, ref2: str | None, stat_only: bool) -> None:
    """Show what changed: worktree vs its version, worktree vs REF, or REF vs REF2.

    Each line is A (added), M (modified) or D (deleted), a path relative to the
    worktree's root, and its size; a file whose permissions changed also shows them
    (`mode 644 -> 755`).
    """
    with opts.open_repo() as repo:
        changes = repo.diff(ref, ref2)
        # Against the worktree the library gives the version's side only; the files'
        # side is what is on disk now.
        local: dict[str, tuple[int, int | None]] = {}
        if ref2 is None:
            for c in changes:
                if c.status == "deleted":
                    continue
                try:
                    st = (repo.root / c.path).lstat()
                except FileNotFoundError:  # gone since the diff looked
                    continue
                is_file = stat.S_ISREG(st.st_mode)
                local[c.path] = (
                    st.st_size if is_file or stat.S_ISLNK(st.st_mode) else 0,
                    stat.S_IMODE(st.st_mode) if is_file else None,
                )
    rows = [
        _Row(
            c.path,
            c.status,
            c.old.size if c.old is not None else 0,
            c.new.size if c.new is not None else local.get(c.path, (0, None))[0],
            _mode(c.old),
            _mode(c.new) if c.new is not None else local.get(c.path, (0, None))[1],
        )
        for c in changes
    ]
    if opts.json:
        emit_json(
            {
                "changes": [
                    {
                        "path": r.path,
                        "status": r.status,
                        "old_size": r.old_size,
                        "new_size": r.new_size,
                        "old_mode": r.old_mode,
                        "new_mode": r.new_mode,
                    }
                    for r in rows
                ]
            }
        )
        return
    counts = {s: sum(1 for r in rows if r.status == s) for s in ("added", "modified", "deleted")}
    if not stat_only:
        for r in rows:
            if r.status == "added":
                detail = human_bytes(r.new_size)
            elif r.status == "deleted":
                detail = human_bytes(r.old_size)
            else:
                detail = f"{human_bytes(r.old_size)} -> {human_bytes(r.new_size)}"
                if r.old_mode is not None and r.new_mode is not None and r.old_mode != r.new_mode:
                    detail += f", mode {_octal(r.old_mode)} -> {_octal(r.new_mode)}"
            echo(f"{r.status[0].upper()} {r.path}  ({detail})")
    echo(f"{counts['added']} added, {counts['modified']} modified, {counts['deleted']} deleted")
