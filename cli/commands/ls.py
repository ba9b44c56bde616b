"""``cas ls REF [PATH]``."""

from __future__ import annotations

import stat

import click

from cas.objects import EntryKind

from ..context import Options, pass_options
from ..output import echo, emit_json, format_time

_KIND = {EntryKind.FILE: "-", EntryKind.DIR: "d", EntryKind.SYMLINK: "l"}


@click.command()
@click.argument("ref", default="HEAD")
@click.argument("path", default="", metavar="[PATH]")
@click.option("-r", "--recursive", is_flag=True, help="List every entry below PATH.")
@pass_options
def ls(opts: Options, ref: str, path: str, recursive: bool) -> None:
    """List the files of version REF (a folder PATH inside it, or one file).

    PATH is relative to the current folder (or -C DIR), or absolute; `.` is the current
    folder. Without PATH, the whole version. Paths are printed relative to the
    worktree's root, wherever you are.
    """
    with opts.open_repo() as repo:
        where = opts.worktree_paths(repo, [path])[0] if path else ""
        entries = repo.ls(ref, where, recursive=recursive)
    if opts.json:
        emit_json(
            {
                "entries": [
                    {
                        "path": e.path,
                        "kind": e.entry.kind.name.lower(),
                        "mode": e.entry.mode,
                        "size": e.entry.size,
                        "mtime_ns": e.entry.mtime_ns,
                        "id": e.entry.oid,
                        **({"target": e.entry.target} if e.entry.kind == EntryKind.SYMLINK else {}),
                    }
                    for e in entries
                ]
            }
        )
        return
    for e in entries:
        t = e.entry
        mode = _KIND[t.kind] + stat.filemode(t.mode)[1:]
        name = e.path + ("/" if t.kind == EntryKind.DIR else "")
        if t.kind == EntryKind.SYMLINK:
            name += f" -> {t.target}"
        echo(f"{mode} {t.size:>12} {format_time(t.mtime_ns)[:16]} {name}")
