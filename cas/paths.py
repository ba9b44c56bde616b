"""Validation of names and paths that come from manifests or from the user.

Paths inside a version are relative, ``/``-separated and made of names; a name is never
empty, ``.`` or ``..``, and holds neither ``/`` nor NUL. Trees are decoded name by name,
so a path that passes here cannot escape the worktree; writers check again on disk
(no parent may be a symlink). ``.cas`` is reserved at the root of a worktree.
"""

from __future__ import annotations

from cas.errors import UnsafePathError

RESERVED_ROOT_NAMES = frozenset({".cas"})
MAX_NAME_BYTES = 4096


def check_name(name: str, *, at_root: bool = False) -> str:
    """Return ``name`` if it is a safe single path component, else raise.

    Raises:
        UnsafePathError: empty, ``.``, ``..``, contains ``/`` or NUL, absolute, too long,
            or a reserved name at the root.
    """
    if not name or name in (".", ".."):
        raise UnsafePathError(name, "empty, '.' or '..' is not a file name")
    if "/" in name:
        raise UnsafePathError(name, "a file name cannot contain '/'")
    if "\x00" in name:
        raise UnsafePathError(name, "a file name cannot contain NUL")
    if len(name.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
        raise UnsafePathError(name[:40] + "…", "name too long")
    if at_root and name in RESERVED_ROOT_NAMES:
        raise UnsafePathError(name, "reserved for cas's own metadata")
    return name


def split_path(path: str) -> tuple[str, ...]:
    """Split a user-given relative path into checked components (``""`` → root).

    Redundant ``./`` and trailing slashes are accepted; absolute paths and ``..`` are not.
    """
    if path.startswith("/"):
        raise UnsafePathError(path, "absolute paths are not allowed inside a version")
    parts = tuple(p for p in path.split("/") if p not in ("", "."))
    for i, part in enumerate(parts):
        check_name(part, at_root=i == 0)
    return parts


def join_path(parent: str, name: str) -> str:
    """Join a relative directory path and a name (``""`` is the root)."""
    return f"{parent}/{name}" if parent else name
