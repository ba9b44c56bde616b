"""PATH arguments as git reads them, turned into the worktree paths the library takes.

A PATH on the command line is relative to the current folder (or to ``-C DIR``), or
absolute; ``.`` is the current folder. The library takes paths relative to the worktree's
root (``""`` is the root itself), so each command converts its PATHs here first. A PATH
outside the worktree is a usage error (exit 2), never an unsafe path in a version.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

import click


def _inside(candidate: str, root: str) -> str | None:
    """``candidate`` relative to ``root`` (POSIX separators, ``""`` for the root itself),
    or None when it lies outside."""
    rel = os.path.relpath(candidate, root)
    if rel == os.curdir:
        return ""
    if rel == os.pardir or rel.startswith(os.pardir + os.sep):
        return None
    return PurePosixPath(Path(rel)).as_posix()


def to_worktree_path(path: str, *, base: Path, root: Path, param: str = "PATH") -> str:
    """The worktree-relative form of the command-line ``path``.

    Args:
        path: as typed: relative to ``base``, or absolute; ``.`` and ``""`` mean ``base``.
        base: the folder the command runs in (the current folder, or ``-C DIR``).
        root: the worktree's root (resolved).
        param: the argument's name, for the error message.

    Raises:
        click.BadParameter: ``path`` is outside the worktree (exit 2).
    """
    # Lexically first (`..` steps back over what was typed, as in git), so a symlink
    # inside the worktree is named, not followed.
    full = os.path.normpath(os.path.join(os.path.realpath(base), path))
    rel = _inside(full, str(root))
    if rel is None:
        # An absolute path through a symlinked folder (say /tmp -> /private/tmp): resolve
        # its folders, but never its last component (which may be a link in the tree).
        head, tail = os.path.split(full)
        rel = _inside(os.path.join(os.path.realpath(head), tail), str(root))
    if rel is None:
        raise click.BadParameter(
            f"{path!r} is outside the worktree {root} (paths are relative to the current "
            "folder, or to -C DIR)",
            param_hint=param,
        )
    return rel


def to_worktree_paths(
    paths: tuple[str, ...] | list[str], *, base: Path, root: Path, param: str = "PATH"
) -> list[str]:
    """:func:`to_worktree_path` of each path, duplicates dropped, order kept."""
    out: list[str] = []
    for p in paths:
        rel = to_worktree_path(p, base=base, root=root, param=param)
        if rel not in out:
            out.append(rel)
    return out
