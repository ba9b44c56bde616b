"""Value objects stored in a cas repository.

Frozen, slotted dataclasses without I/O; their byte encoding lives in :mod:`cas.codec`.

* a **chunk** is a piece of a file cut by FastCDC, named by the BLAKE3 of its bytes;
* a **tree** lists one directory: per name its kind, mode, mtime, size, id and, for a
  file, its chunks; a sub-directory is referenced by the id of its own tree, so an
  unchanged folder is shared between versions, not rewritten;
* a **commit** names a root tree, its parents, a message, an author, a time and stats;
* a **ref entry** is one immutable step in the history of a branch, tag or HEAD.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from cas.ids import ObjectId


class EntryKind(enum.IntEnum):
    """What a tree entry is; the numbers are part of the format."""

    FILE = 0
    DIR = 1
    SYMLINK = 2


@dataclass(frozen=True, slots=True)
class ChunkRef:
    """One chunk of a file: its id and its uncompressed length."""

    chunk_id: ObjectId
    size: int


@dataclass(frozen=True, slots=True)
class TreeEntry:
    """One name inside a directory.

    ``oid`` is the whole-file BLAKE3 for a file, the tree id for a directory and the
    BLAKE3 of the link target for a symlink. ``chunks`` is set for files only (an empty
    file has none); ``target`` for symlinks only. ``mode`` holds the permission bits.
    """

    name: str
    kind: EntryKind
    mode: int
    mtime_ns: int
    size: int
    oid: ObjectId
    chunks: tuple[ChunkRef, ...] = ()
    target: str = ""


@dataclass(frozen=True, slots=True)
class Tree:
    """A directory listing, entries sorted by the bytes of their names."""

    entries: tuple[TreeEntry, ...]


@dataclass(frozen=True, slots=True)
class CommitStats:
    """Summary numbers recorded in a commit (all in bytes or counts)."""

    files: int = 0
    dirs: int = 0
    symlinks: int = 0
    bytes: int = 0
    scanned_bytes: int = 0
    new_chunks: int = 0
    new_bytes: int = 0
    stored_bytes: int = 0


@dataclass(frozen=True, slots=True)
class Commit:
    """A snapshot of a worktree."""

    tree: ObjectId
    parents: tuple[ObjectId, ...]
    message: str
    author: str
    time_ns: int
    stats: CommitStats = field(default_factory=CommitStats)


@dataclass(frozen=True, slots=True)
class RefEntry:
    """One immutable step in a ref's history.

    ``name`` is ``heads/<branch>``, ``tags/<tag>`` or ``HEAD``. A ref entry points at a
    commit (``target``), or, for HEAD, at a branch (``symbolic``); with neither it is a
    deletion. ``prev`` lists the entry keys this one supersedes.
    """

    name: str
    target: ObjectId | None
    symbolic: str
    prev: tuple[str, ...]
    time_ns: int
    writer: str

    @property
    def is_deletion(self) -> bool:
        """True for an entry that deletes the ref."""
        return self.target is None and not self.symbolic
