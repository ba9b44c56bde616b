"""The worktree: the user's asset folder plus the ``.cas`` folder at its root.

``.cas/`` holds only accelerators and pointers, never data (invariant 11)::

    .cas/worktree.json   {"format": 1, "store": <location>}
    .cas/HEAD.json       {"branch": "main" | null, "commit": <hex> | null}
    .cas/statcache       msgpack, per directory: the tree id of its last commit keyed on a
                         digest of its listing, and its files' stat fingerprints and
                         contents (:class:`StatCache`), so unchanged files and folders are
                         neither read nor rebuilt again
    .cas/lock            flock'ed while a command changes the worktree

Scanning walks the folder without following symlinks, skips ``.cas``, anything matched by
``.casignore`` (gitignore syntax) and cas's own temp files. :meth:`Worktree.walk` lists
it one directory at a time, sub-directories first, as raw :data:`Stat` tuples (what a
commit needs); :meth:`Worktree.scan` yields one :class:`LocalEntry` per file, directory
and symlink.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import stat
import time
from collections.abc import Callable, Container, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import msgpack
import pathspec

from cas.chunking import WHOLE_READ_LIMIT, Chunker
from cas.errors import (
    AlreadyExistsError,
    CasError,
    CorruptObjectError,
    LockedError,
    WorktreeNotFoundError,
)
from cas.hashing import StreamHasher, hash_bytes
from cas.ids import ID_SIZE, ObjectId
from cas.objects import ChunkRef, EntryKind

log = logging.getLogger(__name__)

WT_DIR = ".cas"
IGNORE_FILE = ".casignore"
TEMP_MARK = ".cas-tmp-"

_LOCAL_DAMAGE = (
    "this folder's own .cas metadata is damaged, not the store; attach a fresh folder"
    " with `cas clone STORE DIR` (your files here are untouched)"
)
WORKTREE_FORMAT = 1
# "Racy clean": a file whose ctime or mtime is within one timestamp tick of the moment
# its stat was taken may have changed again in that same tick, invisibly. Such entries are
# not saved in the stat cache. Ticks are taken as 1 s where the filesystem shows coarse
# (whole-millisecond or coarser) times, else 50 ms (above the kernel's coarse clock).
RACY_FINE_NS = 50_000_000
RACY_COARSE_NS = 1_000_000_000


def is_racy(mtime_ns: int, ctime_ns: int, seen_ns: int) -> bool:
    """True when a stat taken at ``seen_ns`` cannot vouch for the file's content."""
    coarse = mtime_ns % 1_000_000 == 0 and ctime_ns % 1_000_000 == 0
    window = RACY_COARSE_NS if coarse else RACY_FINE_NS
    return max(mtime_ns, ctime_ns) >= seen_ns - window


@dataclass(frozen=True, slots=True)
class LocalEntry:
    """What ``lstat`` says about one path in the worktree."""

    path: str
    kind: EntryKind
    mode: int
    size: int
    mtime_ns: int
    ino: int
    ctime_ns: int
    target: str = ""
    seen_ns: int = 0  # a time no later than the lstat that produced this entry


@dataclass(frozen=True, slots=True)
class FileContent:
    """A file's id (whole-file BLAKE3) and its chunks."""

    oid: ObjectId
    chunks: tuple[ChunkRef, ...]


@dataclass(frozen=True, slots=True)
class WorktreeHead:
    """Which branch (or detached commit) the worktree is on, and its base commit."""

    branch: str | None
    commit: ObjectId | None


def entry_from_stat(
    path: str, st: os.stat_result, target: str = "", seen_ns: int = 0
) -> LocalEntry | None:
    """A :class:`LocalEntry` for a regular file, directory or symlink; None otherwise."""
    if stat.S_ISREG(st.st_mode):
        kind = EntryKind.FILE
    elif stat.S_ISDIR(st.st_mode):
        kind = EntryKind.DIR
    elif stat.S_ISLNK(st.st_mode):
        kind = EntryKind.SYMLINK
    else:
        return None
    size = (
        len(os.fsencode(target))
        if kind == EntryKind.SYMLINK
        else (st.st_size if kind == EntryKind.FILE else 0)
    )
    return LocalEntry(
        path,
        kind,
        stat.S_IMODE(st.st_mode),
        size,
        st.st_mtime_ns,
        st.st_ino,
        st.st_ctime_ns,
        target,
        seen_ns,
    )


def read_path_content(
    path: bytes | str | Path,
    chunker: Chunker,
    on_chunk: Callable[[ObjectId, memoryview], None] | None = None,
    *,
    size_hint: int = -1,
) -> FileContent:
    """Chunk and hash the file at ``path``; call ``on_chunk(id, bytes)`` for every chunk.

    A file that ``lstat`` saw (``size_hint``) at most ``WHOLE_READ_LIMIT`` bytes long is
    read whole with bare system calls, open, read to the end, close: no Python file
    object, whose creation costs four more system calls (fstat, ioctl, two seeks), each
    a point where a thread gives up the GIL and may wait to get it back. On a folder of
    100k small images that was most of a commit's time. A larger file, or one that grew
    past the size seen, is streamed (:func:`read_file_content`).
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        if 0 <= size_hint <= WHOLE_READ_LIMIT:
            data = _read_up_to(fd, size_hint + 1)
            if len(data) <= size_hint:
                if 0 < len(data) <= chunker.params.min:
                    return _one_chunk(data, on_chunk)
                return _content_of(chunker.iter_buffer(data), on_chunk)
            os.lseek(fd, 0, os.SEEK_SET)  # it grew since it was seen
            size_hint = -1
        with open(fd, "rb", closefd=False) as f:
            return read_file_content(f, chunker, on_chunk, size_hint=size_hint)
    finally:
        os.close(fd)


def _read_up_to(fd: int, n: int) -> bytes:
    """Read until ``n`` bytes or the end of the file (a short read is not taken for the
    end: a FUSE mount may return one; the end is a read that returns nothing)."""
    data = os.read(fd, n)
    if not data or len(data) == n:
        return data
    parts = [data]
    got = len(data)
    while got < n:
        more = os.read(fd, n - got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return data if len(parts) == 1 else b"".join(parts)


def read_file_content(
    f: BinaryIO,
    chunker: Chunker,
    on_chunk: Callable[[ObjectId, memoryview], None] | None = None,
    *,
    size_hint: int = -1,
) -> FileContent:
    """Chunk and hash an open file; call ``on_chunk(id, bytes)`` for every chunk.

    Memory stays bounded whatever the file's size: a small file is read whole, a large
    one through the chunker's buffer (:meth:`Chunker.iter_file`; ``size_hint`` is the
    size ``lstat`` saw, if known).
    """
    return _content_of(chunker.iter_file(f, size_hint), on_chunk)


def _one_chunk(data: bytes, on_chunk: Callable[[ObjectId, memoryview], None] | None) -> FileContent:
    """The content of a file no longer than the chunker's minimum: FastCDC never cuts
    before it, so the file is one chunk, whose id is the file's."""
    oid = hash_bytes(data)
    if on_chunk is not None:
        on_chunk(oid, memoryview(data))
    return FileContent(oid, (ChunkRef(oid, len(data)),))


def _content_of(
    views: Iterable[memoryview], on_chunk: Callable[[ObjectId, memoryview], None] | None
) -> FileContent:
    whole = StreamHasher()
    chunks: list[ChunkRef] = []
    for view in views:
        whole.update(view)
        # The first chunk's id is the hash of everything so far: one pass over its bytes.
        chunk_id = hash_bytes(view) if chunks else whole.digest()
        chunks.append(ChunkRef(chunk_id, len(view)))
        if on_chunk is not None:
            on_chunk(chunk_id, view)
    # A file of one chunk has that chunk's id (the same object, kept once in memory).
    oid = chunks[0].chunk_id if len(chunks) == 1 else whole.digest()
    return FileContent(oid, tuple(chunks))


# A directory entry as a scan sees it (``lstat``, links not followed), in raw form:
# (name, st_mode, size, mtime_ns, ino, ctime_ns, link target). ``size`` is 0 for a
# directory and the target's length for a symlink; ``target`` is b"" unless a symlink.
Stat = tuple[bytes, int, int, int, int, int, bytes]

STAT_CACHE_VERSION = 4

# One file row of the stat cache: (size, mtime_ns, ino, ctime_ns, seen_ns, file id,
# chunk ids concatenated, chunk sizes).
_Row = tuple[int, int, int, int, int, bytes, bytes, tuple[int, ...]]


def listing_digest(entries: list[Stat], subtrees: list[bytes]) -> bytes:
    """What a directory's recorded tree id is keyed on.

    ``entries`` is the directory's sorted listing; ``subtrees`` the tree ids of its
    sub-directories, in the same order. Everything a tree row holds is in it, except the
    contents of files, which the stat cache vouches for by their fingerprints.
    """
    return bytes(hash_bytes(msgpack.packb([entries, subtrees], use_bin_type=True)))


def _holds(ids: bytes, chunk_ids: Container[bytes]) -> bool:
    """True when one of the concatenated ids ``ids`` is in ``chunk_ids``."""
    return any(ids[i : i + ID_SIZE] in chunk_ids for i in range(0, len(ids), ID_SIZE))


def _split(path: str) -> tuple[bytes, bytes]:
    parent, _, name = os.fsencode(path).rpartition(b"/")
    return parent, name


def _adds_up(row: _Row) -> bool:
    """True when a row's chunk sizes make its file size, one id each."""
    return sum(row[7]) == row[0] and len(row[6]) == ID_SIZE * len(row[7])


def _content(row: _Row) -> FileContent | None:
    """The content a row records, or None if the row does not add up."""
    if not _adds_up(row):
        return None
    ids, sizes = row[6], row[7]
    return FileContent(
        ObjectId(row[5]),
        tuple(
            ChunkRef(ObjectId(ids[i * ID_SIZE : (i + 1) * ID_SIZE]), s) for i, s in enumerate(sizes)
        ),
    )


def _row(size: int, mtime: int, ino: int, ctime: int, seen: int, c: FileContent) -> _Row:
    return (
        size,
        mtime,
        ino,
        ctime,
        seen,
        bytes(c.oid),
        b"".join(r.chunk_id for r in c.chunks),
        tuple(r.size for r in c.chunks),
    )


def _is_int_list(v: object) -> bool:
    return isinstance(v, list) and all(type(x) is int for x in v)


def _encode_rows(
    rows: Iterable[tuple[bytes, _Row]], *, keep_racy: bool = False
) -> tuple[bytes, bytes, int]:
    """(columns, chunk ids, row count) of a directory's rows, without racily clean ones
    unless ``keep_racy`` (an encoding kept in memory, not saved)."""
    names: list[bytes] = []
    ints: tuple[list[int], ...] = ([], [], [], [], [])  # sizes, mtimes, inos, ctimes, seens
    oids: list[bytes] = []
    counts: list[int] = []
    chunk_sizes: list[int] = []
    ids: list[bytes] = []
    for name, (size, mtime, ino, ctime, seen, oid, cids, csizes) in rows:
        if not keep_racy and is_racy(mtime, ctime, seen):
            continue
        names.append(name)
        for col, v in zip(ints, (size, mtime, ino, ctime, seen), strict=True):
            col.append(v)
        oids.append(oid)
        counts.append(len(csizes))
        chunk_sizes.extend(csizes)
        ids.append(cids)
    packed = msgpack.packb([names, *ints, b"".join(oids), counts, chunk_sizes], use_bin_type=True)
    return packed, b"".join(ids), len(names)


# The columns of a folder without file rows.
_NO_ROWS: bytes = msgpack.packb([[], [], [], [], [], [], b"", [], []], use_bin_type=True)


def _decode_rows(packed: bytes, ids: bytes) -> dict[bytes, _Row]:
    """The rows of :func:`_encode_rows`; ``ValueError`` (or a msgpack error) if damaged."""
    cols = msgpack.unpackb(packed, raw=False)
    if not isinstance(cols, list) or len(cols) != 9:
        raise ValueError("not 9 columns")
    names, sizes, mtimes, inos, ctimes, seens, oids, counts, chunk_sizes = cols
    n = len(names)
    if not (
        isinstance(names, list)
        and all(type(x) is bytes for x in names)
        and all(_is_int_list(c) and len(c) == n for c in (sizes, mtimes, inos, ctimes, seens))
        and _is_int_list(counts)
        and len(counts) == n
        and _is_int_list(chunk_sizes)
        and len(chunk_sizes) == sum(counts)
        and isinstance(oids, bytes)
        and len(oids) == ID_SIZE * n
        and len(ids) == ID_SIZE * len(chunk_sizes)
    ):
        raise ValueError("columns do not add up")
    rows: dict[bytes, _Row] = {}
    at = 0
    for i, name in enumerate(names):
        k = counts[i]
        rows[name] = (
            sizes[i],
            mtimes[i],
            inos[i],
            ctimes[i],
            seens[i],
            oids[i * ID_SIZE : (i + 1) * ID_SIZE],
            ids[at * ID_SIZE : (at + k) * ID_SIZE],
            tuple(chunk_sizes[at : at + k]),
        )
        at += k
    return rows


class _DirRecord:
    """What the stat cache knows of one directory.

    ``digest`` and ``tree``: the directory's tree id and the :func:`listing_digest` it
    was built from, set only when every file row of the directory was safe to save (not
    racily clean). The rows stay encoded (``packed`` and ``ids``, b"" when there are
    none); rows recorded or forgotten since (``None`` for a forgotten one) wait in
    ``changes`` until :meth:`StatCache.encode`, or until there are ``_FOLD_CHANGES`` of
    them. ``saveable``: ``packed`` holds no racily clean row (false once changes were
    folded in, which keeps them all).
    """

    __slots__ = ("changes", "digest", "ids", "packed", "saveable", "tree")

    def __init__(
        self,
        digest: bytes | None = None,
        tree: bytes | None = None,
        ids: bytes = b"",
        packed: bytes = b"",
    ) -> None:
        self.digest = digest
        self.tree = tree
        self.ids = ids
        self.packed = packed
        self.saveable = True
        self.changes: dict[bytes, _Row | None] = {}

    def modified(self) -> None:
        """Rows changed in memory: stop vouching for the tree."""
        self.digest = self.tree = None


# Changes of one folder kept as rows before they are folded into its encoded rows.
_FOLD_CHANGES = 256


class StatCache:
    """Per directory: the tree id of an unchanged listing, and per file its content.

    A file's content is recorded with its stat fingerprint (size, mtime_ns, inode,
    ctime_ns): :meth:`lookup` and :meth:`find` return it only while that fingerprint is
    unchanged. A directory's tree id is recorded with the :func:`listing_digest` of its
    listing: :meth:`reuse_tree` returns it only while that digest is unchanged. Both are
    trusted only for rows that are not racily clean (:func:`is_racy`).

    Encoded (``.cas/statcache``, version 4) as a msgpack map ``{"v": 4, "dirs": {dir:
    [digest, tree, chunk ids, rows]}}``. ``dir`` is the directory's path as bytes (b""
    for the root); ``digest`` and ``tree`` are 32-byte bin or nil; ``chunk ids`` is one
    bin, every chunk id of every file row in row order; ``rows`` is a bin holding the
    msgpack array ``[names, sizes, mtimes, inodes, ctimes, seen times, file ids
    (concatenated), chunk counts, chunk sizes (flat)]`` of the directory's files.

    In memory the rows stay in that encoded form. Only one folder's rows are decoded at
    a time (the last one looked at), so memory follows the size of the file, not the
    number of Python objects a decoded row costs; rows recorded since loading wait as
    a few changes per folder (:class:`_DirRecord`).
    """

    def __init__(self) -> None:
        self._dirs: dict[bytes, _DirRecord] = {}
        self._view: tuple[_DirRecord | None, dict[bytes, _Row]] = (None, {})
        self.changed = False  # something to save
        # The index segments every folder's tree and chunks were checked against (or
        # written to): while the store's index still holds all of them, its blobs are
        # all still there, and reuse_tree need not look each chunk up again.
        self._index_mark: frozenset[bytes] = frozenset()

    def index_vouched(self, segments: Container[bytes]) -> bool:
        """True when ``segments`` (the index's now) holds every segment of the mark."""
        return bool(self._index_mark) and all(s in segments for s in self._index_mark)

    def set_index_mark(self, segments: Iterable[bytes]) -> None:
        """Record the index segments after a commit: every folder recorded since has its
        tree and chunks in them, as the folders kept from before have in a subset."""
        mark = frozenset(bytes(s) for s in segments)
        if mark != self._index_mark:
            self._index_mark = mark
            self.changed = True

    def _rows(self, parent: bytes, d: _DirRecord) -> dict[bytes, _Row]:
        """The encoded rows of folder ``parent`` decoded (damaged: none), without its
        changes. The result is shared until another folder is decoded: do not modify."""
        view, rows = self._view
        if view is d:
            return rows
        if not d.packed:
            rows = {}
        else:
            try:
                rows = _decode_rows(d.packed, d.ids)
            except (ValueError, TypeError, msgpack.UnpackException):
                log.warning(
                    "stat cache damaged for folder %r; its files will be read again",
                    os.fsdecode(parent) or ".",
                )
                rows = {}
                d.packed = d.ids = b""
                d.modified()
                self.changed = True
        self._view = (d, rows)
        return rows

    def _get(self, parent: bytes, d: _DirRecord, name: bytes) -> _Row | None:
        if name in d.changes:
            return d.changes[name]
        return self._rows(parent, d).get(name)

    def _merged(self, parent: bytes, d: _DirRecord) -> dict[bytes, _Row]:
        """Every row of folder ``parent``, changes applied (a new dict)."""
        rows = dict(self._rows(parent, d))
        for name, row in d.changes.items():
            if row is None:
                rows.pop(name, None)
            else:
                rows[name] = row
        return rows

    def _change(self, parent: bytes, d: _DirRecord, name: bytes, row: _Row | None) -> None:
        d.changes[name] = row
        d.modified()
        self.changed = True
        if len(d.changes) >= _FOLD_CHANGES:
            d.packed, d.ids, _ = _encode_rows(self._merged(parent, d).items(), keep_racy=True)
            d.changes = {}
            d.saveable = False
            self._view = (None, {})

    # -- files, by worktree path (status, checkout, repair)

    def lookup(self, e: LocalEntry) -> FileContent | None:
        """The content recorded for ``e`` if its fingerprint is unchanged."""
        parent, name = _split(e.path)
        hit = self.find(parent, name, e.size, e.mtime_ns, e.ino, e.ctime_ns)
        return None if hit is None else hit[0]

    def known_id(self, e: LocalEntry) -> bytes | None:
        """The file id recorded for ``e`` if its fingerprint is unchanged: what
        :meth:`lookup` finds, without building the chunk list."""
        parent, name = _split(e.path)
        row = self._unchanged_row(parent, name, e.size, e.mtime_ns, e.ino, e.ctime_ns)
        return None if row is None or not _adds_up(row) else row[5]

    def record(self, e: LocalEntry, content: FileContent) -> None:
        """Remember ``content`` for the fingerprint of ``e``."""
        parent, name = _split(e.path)
        d = self._dirs.get(parent)
        if d is None:
            d = self._dirs[parent] = _DirRecord()
        self._change(
            parent, d, name, _row(e.size, e.mtime_ns, e.ino, e.ctime_ns, e.seen_ns, content)
        )

    def forget(self, path: str) -> None:
        """Drop what is recorded for ``path`` (a deleted file)."""
        parent, name = _split(path)
        d = self._dirs.get(parent)
        if d is not None and self._get(parent, d, name) is not None:
            self._change(parent, d, name, None)

    @property
    def rows(self) -> _PathRows:
        """``rows.pop(path, None)``: the same as :meth:`forget` (older callers)."""
        return _PathRows(self)

    # -- files and folders, by directory (commit)

    def find(
        self, parent: bytes, name: bytes, size: int, mtime_ns: int, ino: int, ctime_ns: int
    ) -> tuple[FileContent, int] | None:
        """(content, seen_ns) recorded for file ``name`` of ``parent`` if unchanged."""
        row = self._unchanged_row(parent, name, size, mtime_ns, ino, ctime_ns)
        content = None if row is None else _content(row)
        return None if content is None or row is None else (content, row[4])

    def _unchanged_row(
        self, parent: bytes, name: bytes, size: int, mtime_ns: int, ino: int, ctime_ns: int
    ) -> _Row | None:
        """The row of file ``name`` of ``parent`` if its fingerprint is this one."""
        d = self._dirs.get(parent)
        row = None if d is None else self._get(parent, d, name)
        if row is None or row[:4] != (size, mtime_ns, ino, ctime_ns):
            return None
        return row

    def reuse_tree(
        self, parent: bytes, digest: bytes, index: Container[bytes], *, vouched: bool = False
    ) -> ObjectId | None:
        """The tree id recorded for directory ``parent`` if its listing has ``digest``.

        Only if ``index`` holds that tree and every chunk of the directory's files, so
        a commit never names something the store lacks. With ``vouched``
        (:meth:`index_vouched`: the index lost none of the segments they were checked
        against) the chunks are not looked up one by one.
        """
        d = self._dirs.get(parent)
        if d is None or d.digest != digest or d.tree is None or d.tree not in index:
            return None
        ids = d.ids  # a record with a tree id has no pending changes
        if not vouched and not all(
            ids[i : i + ID_SIZE] in index for i in range(0, len(ids), ID_SIZE)
        ):
            return None
        return ObjectId(d.tree)

    def set_dir(
        self,
        parent: bytes,
        files: list[tuple[bytes, int, int, int, int, int, FileContent]],
        tree: bytes,
        digest: bytes,
    ) -> None:
        """Record directory ``parent``: its tree, and exactly these file rows.

        ``files`` holds (name, size, mtime_ns, ino, ctime_ns, seen_ns, content) for every
        file of the listing ``digest`` was computed from. The tree is vouched for only if
        no row is racily clean.
        """
        packed, ids, count = _encode_rows(
            (name, _row(size, mtime, ino, ctime, seen, content))
            for name, size, mtime, ino, ctime, seen, content in files
        )
        # Encoded at once (racy rows left out): a commit of many files keeps little.
        if count == len(files):
            self._dirs[parent] = _DirRecord(digest, tree, ids, packed)
        else:
            self._dirs[parent] = _DirRecord(None, None, ids, packed)
        self.changed = True

    def holding(self, chunk_ids: Container[bytes]) -> Iterator[tuple[str, FileContent]]:
        """Every recorded file (path, content) with a chunk in ``chunk_ids``.

        Fingerprints are not compared: a caller reading such a file must check what it
        reads. A folder none of whose files holds one of them is not decoded.
        """
        for parent, d in list(self._dirs.items()):
            if not _holds(d.ids, chunk_ids) and not any(
                row is not None and _holds(row[6], chunk_ids) for row in d.changes.values()
            ):
                continue
            prefix = parent + b"/" if parent else b""
            for name, row in self._merged(parent, d).items():
                content = _content(row)
                if content is not None and any(c.chunk_id in chunk_ids for c in content.chunks):
                    yield os.fsdecode(prefix + name), content

    def keep_dirs(self, dirs: Container[bytes]) -> None:
        """Forget every directory not in ``dirs`` (gone from the worktree)."""
        gone = [p for p in self._dirs if p not in dirs]
        for p in gone:
            del self._dirs[p]
        self.changed = self.changed or bool(gone)

    # -- bytes

    def encode(self) -> bytes:
        """Bytes for ``.cas/statcache``, without racily clean rows."""
        return b"".join(self.encode_parts())

    def encode_parts(self) -> Iterator[bytes]:
        """:meth:`encode`'s bytes, one piece per folder, made as they are written: the
        file is never whole in memory beside the rows it encodes (13 MB for 100k
        files)."""
        out: list[tuple[bytes, list[bytes | None]]] = []
        for parent, d in self._dirs.items():
            if d.saveable and not d.changes:
                packed, ids = d.packed, d.ids
                count = 1 if packed else 0
            else:
                packed, ids, count = _encode_rows(self._merged(parent, d).items())
            if not count and d.digest is None:
                continue  # nothing worth keeping
            out.append((parent, [d.digest, d.tree, ids, packed or _NO_ROWS]))
        # The layout msgpack.packb gives {"v": ..., "dirs": {...}}, written piecewise.
        packer = msgpack.Packer(use_bin_type=True)
        yield (
            packer.pack_map_header(3)
            + packer.pack("v")
            + packer.pack(STAT_CACHE_VERSION)
            + packer.pack("index")
            + packer.pack(b"".join(sorted(self._index_mark)))
            + packer.pack("dirs")
            + packer.pack_map_header(len(out))
        )
        out.reverse()
        while out:
            parent, row = out.pop()
            yield packer.pack(parent) + packer.pack(row)

    @classmethod
    def decode(cls, data: bytes) -> StatCache:
        """Parse ``.cas/statcache``; an old or damaged file is an empty cache, never an error."""
        cache = cls()
        try:
            m = msgpack.unpackb(data, raw=False, strict_map_key=False)
            if not isinstance(m, dict):
                raise ValueError("not a map")
            if m.get("v") != STAT_CACHE_VERSION:
                log.debug("stat cache of another version; files will be read again")
                return cache
            dirs = m["dirs"]
            if not isinstance(dirs, dict):
                raise ValueError("dirs is not a map")
            for parent, rec in dirs.items():
                digest, tree, ids, packed = rec
                if not (
                    isinstance(parent, bytes)
                    and (digest is None or (isinstance(digest, bytes) and len(digest) == ID_SIZE))
                    and (tree is None or (isinstance(tree, bytes) and len(tree) == ID_SIZE))
                    and (digest is None) == (tree is None)
                    and isinstance(ids, bytes)
                    and len(ids) % ID_SIZE == 0
                    and isinstance(packed, bytes)
                ):
                    raise ValueError("malformed folder record")
                cache._dirs[parent] = _DirRecord(digest, tree, ids, packed)
            mark = m.get("index", b"")  # absent in files written before it existed
            if not isinstance(mark, bytes) or len(mark) % ID_SIZE:
                raise ValueError("malformed index mark")
            cache._index_mark = frozenset(
                mark[i : i + ID_SIZE] for i in range(0, len(mark), ID_SIZE)
            )
        except (ValueError, TypeError, KeyError, AttributeError, msgpack.UnpackException):
            log.warning("stat cache unreadable; files will be read again")
            return cls()
        return cache


class _PathRows:
    """The ``rows`` of :class:`StatCache` before version 4, reduced to ``pop``."""

    def __init__(self, cache: StatCache) -> None:
        self._cache = cache

    def pop(self, path: str, default: None = None) -> None:
        """Forget ``path``."""
        self._cache.forget(path)
        return default


class Worktree:
    """A folder attached to a store."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.meta = root / WT_DIR
        self._excluded: set[str] = set()
        # Entries the last walk left out because cas cannot store them (sockets, FIFOs,
        # devices): worktree-relative paths, reported by a commit as warnings.
        self.skipped: list[str] = []

    def exclude(self, *paths: Path) -> None:
        """Never scan these folders (the store or the cache, when they sit inside)."""
        for p in paths:
            try:
                rel = p.resolve().relative_to(self.root.resolve())
            except ValueError:
                continue
            if rel.parts:
                self._excluded.add(rel.as_posix())

    # ------------------------------------------------------------------ attach / find

    @classmethod
    def find(cls, start: Path) -> Worktree:
        """The worktree containing ``start`` (searching upward, like git).

        Raises:
            WorktreeNotFoundError: no ``.cas`` folder in ``start`` or a parent.
        """
        start = start.resolve()
        for d in (start, *start.parents):
            if (d / WT_DIR / "worktree.json").is_file():
                return cls(d)
        raise WorktreeNotFoundError(str(start))

    @classmethod
    def create(cls, root: Path, store: str) -> Worktree:
        """Attach ``root`` (created if missing) to ``store``.

        Raises:
            AlreadyExistsError: ``root`` already is a worktree.
        """
        root = root.resolve()
        if (root / WT_DIR / "worktree.json").exists():
            raise AlreadyExistsError(
                f"worktree {root}", hint="it is already attached; use `cas status` there"
            )
        (root / WT_DIR).mkdir(parents=True, exist_ok=True)
        wt = cls(root)
        wt._write_json("worktree.json", {"format": WORKTREE_FORMAT, "store": store})
        wt.write_head(WorktreeHead("main", None))
        return wt

    @property
    def store_location(self) -> str:
        """Where the store is (as given at init/clone)."""
        return str(self._read_json("worktree.json")["store"])

    def _read_json(self, name: str) -> dict[str, object]:
        try:
            with open(self.meta / name, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, ValueError) as exc:
            raise CorruptObjectError(
                f"worktree file {self.meta / name}", str(exc), hint=_LOCAL_DAMAGE
            ) from exc
        if not isinstance(data, dict):
            raise CorruptObjectError(
                f"worktree file {self.meta / name}", "not a JSON object", hint=_LOCAL_DAMAGE
            )
        return data

    def _write_json(self, name: str, data: dict[str, object]) -> None:
        self._write_file(name, [json.dumps(data, indent=1, sort_keys=True).encode()])

    def _write_file(self, name: str, pieces: Iterable[bytes]) -> None:
        """Write ``pieces`` one after the other to ``.cas/<name>``, atomically."""
        tmp = self.meta / f"{name}{TEMP_MARK}"
        with open(tmp, "wb") as f:
            f.writelines(pieces)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.meta / name)

    # ------------------------------------------------------------------ HEAD, stat cache

    def read_head(self) -> WorktreeHead:
        """The worktree's branch and base commit."""
        d = self._read_json("HEAD.json")
        branch = d.get("branch")
        commit = d.get("commit")
        try:
            oid = ObjectId.parse(commit) if isinstance(commit, str) else None
        except ValueError as exc:
            raise CorruptObjectError(f"worktree file {self.meta / 'HEAD.json'}", str(exc)) from exc
        return WorktreeHead(branch if isinstance(branch, str) else None, oid)

    def write_head(self, head: WorktreeHead) -> None:
        """Record the worktree's branch and base commit."""
        self._write_json(
            "HEAD.json",
            {"branch": head.branch, "commit": None if head.commit is None else head.commit.hex()},
        )

    def write_pending_commit(self, branch: str, commit: ObjectId) -> None:
        """Record that ``commit`` is about to become the head of ``branch``.

        If the process dies between the ref entry and the update of ``HEAD.json``, the
        next command finds this record and, if the branch does point at ``commit``,
        moves the worktree onto it (:meth:`read_pending_commit`).
        """
        self._write_json("pending-commit.json", {"branch": branch, "commit": commit.hex()})

    def read_pending_commit(self) -> tuple[str, ObjectId] | None:
        """The pending commit record, if a commit was interrupted at its last step."""
        if not (self.meta / "pending-commit.json").exists():
            return None
        try:
            d = self._read_json("pending-commit.json")
            return str(d["branch"]), ObjectId.parse(str(d["commit"]))
        except (CasError, KeyError, ValueError):
            self.clear_pending_commit()
            return None

    def clear_pending_commit(self) -> None:
        """Forget the pending commit record."""
        with contextlib.suppress(FileNotFoundError):
            (self.meta / "pending-commit.json").unlink()

    def load_stat_cache(self) -> StatCache:
        """The stat cache (empty if missing, of another version or damaged)."""
        try:
            data = (self.meta / "statcache").read_bytes()
        except OSError:
            return StatCache()
        return StatCache.decode(data)

    def save_stat_cache(self, cache: StatCache) -> None:
        """Persist the stat cache if it changed (best effort)."""
        if not cache.changed:
            return
        try:
            self._write_file("statcache", cache.encode_parts())
        except OSError as exc:
            log.warning("could not save the stat cache: %s", exc)
            return
        cache.changed = False

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the worktree lock (one changing command at a time).

        Raises:
            LockedError: another cas process holds it.
        """
        fd = os.open(self.meta / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise LockedError(
                    f"worktree {self.root} is busy: another cas command is running in it",
                    hint="wait for it to finish, then rerun",
                ) from None
            yield
        finally:
            os.close(fd)

    # ------------------------------------------------------------------ scanning

    def ignore_spec(self) -> pathspec.GitIgnoreSpec:
        """The rules of ``.casignore`` (gitignore syntax)."""
        try:
            lines = (self.root / IGNORE_FILE).read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            lines = []
        except (OSError, UnicodeDecodeError) as exc:
            raise CasError(f"cannot read {self.root / IGNORE_FILE}: {exc}") from exc
        return pathspec.GitIgnoreSpec.from_lines(lines)

    def _lister(self) -> Callable[[bytes], list[Stat]]:
        """A function listing one directory (a path relative to the root, as bytes)."""
        spec = self.ignore_spec()
        match = spec.match_file if spec.patterns else None
        root = os.fsencode(self.root)
        excluded = {os.fsencode(p) for p in self._excluded}
        filtered = bool(excluded) or match is not None
        temp_mark = os.fsencode(TEMP_MARK)
        wt_dir = os.fsencode(WT_DIR)
        is_reg, is_dir, is_lnk = stat.S_ISREG, stat.S_ISDIR, stat.S_ISLNK
        skipped = self.skipped = []

        def other(rel: bytes, de: os.DirEntry[bytes], st: os.stat_result) -> Stat | None:
            """The entry, unless excluded or ignored (anything but an unfiltered file)."""
            path = rel + b"/" + de.name if rel else de.name
            if path in excluded:
                return None
            mode = st.st_mode
            if match is not None and match(
                os.fsdecode(path) + "/" if is_dir(mode) else os.fsdecode(path)
            ):
                return None
            target = b""
            if is_reg(mode):
                size = st.st_size
            elif is_dir(mode):
                size = 0
            elif is_lnk(mode):
                target = os.readlink(de.path)
                size = len(target)
            else:
                log.warning("skipping %s: not a file, directory or symlink", os.fsdecode(path))
                skipped.append(os.fsdecode(path))
                return None
            return (de.name, mode, size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns, target)

        def list_dir(rel: bytes) -> list[Stat]:
            out: list[Stat] = []
            append = out.append
            top = not rel
            with os.scandir(root + b"/" + rel if rel else root) as it:
                for de in it:
                    name = de.name
                    if temp_mark in name or (top and name == wt_dir):
                        continue
                    try:
                        st = de.stat(follow_symlinks=False)
                        if filtered or not is_reg(st.st_mode):
                            e = other(rel, de, st)
                            if e is not None:
                                append(e)
                            continue
                    except FileNotFoundError:
                        continue  # gone since it was listed
                    # A regular file, nothing to filter: the common case, kept short.
                    append(
                        (
                            name,
                            st.st_mode,
                            st.st_size,
                            st.st_mtime_ns,
                            st.st_ino,
                            st.st_ctime_ns,
                            b"",
                        )
                    )
            out.sort()  # by name bytes (names are unique), the order of tree rows
            return out

        return list_dir

    def walk(self) -> Iterator[tuple[bytes, list[Stat]]]:
        """Every directory (path as bytes, b"" for the root) with its sorted listing.

        A directory comes after all of its sub-directories. Symlinks are listed, never
        followed. Take the time before starting: every ``lstat`` comes after it.
        """
        list_dir = self._lister()
        is_dir = stat.S_ISDIR

        def subdirs(rel: bytes, listing: list[Stat]) -> Iterator[bytes]:
            prefix = rel + b"/" if rel else b""
            return (prefix + e[0] for e in listing if is_dir(e[1]))

        top = list_dir(b"")
        stack = [(b"", top, subdirs(b"", top))]
        while stack:
            rel, listing, subs = stack[-1]
            sub = next(subs, None)
            if sub is None:
                stack.pop()
                yield rel, listing
            else:
                child = list_dir(sub)
                stack.append((sub, child, subdirs(sub, child)))

    def lister(self) -> Callable[[str], dict[str, LocalEntry]]:
        """A function listing one folder of the worktree ("" for the root): name → entry,
        by the rules of :meth:`scan` (what ``.casignore`` matches is left out)."""
        list_dir = self._lister()

        def entries(rel: str) -> dict[str, LocalEntry]:
            seen_ns = time.time_ns()
            raw = os.fsencode(rel)
            prefix = raw + b"/" if raw else b""
            out: dict[str, LocalEntry] = {}
            for name, mode, size, mtime, ino, ctime, target in list_dir(raw):
                if stat.S_ISDIR(mode):
                    kind = EntryKind.DIR
                else:
                    kind = EntryKind.SYMLINK if stat.S_ISLNK(mode) else EntryKind.FILE
                out[os.fsdecode(name)] = LocalEntry(
                    os.fsdecode(prefix + name),
                    kind,
                    stat.S_IMODE(mode),
                    size,
                    mtime,
                    ino,
                    ctime,
                    os.fsdecode(target),
                    seen_ns,
                )
            return out

        return entries

    def scan(self, *, under: str = "") -> dict[str, LocalEntry]:
        """Every file, directory and symlink of the worktree (or below ``under``).

        Symlinks are reported as links, never followed. Sockets, FIFOs and devices are
        skipped with a warning.
        """
        listing = self.lister()
        out: dict[str, LocalEntry] = {}
        stack = [under]
        while stack:
            for e in listing(stack.pop()).values():
                out[e.path] = e
                if e.kind == EntryKind.DIR:
                    stack.append(e.path)
        return out

    def abspath(self, path: str) -> Path:
        """The absolute path of a worktree-relative path."""
        return self.root / path if path else self.root
