"""Canonical msgpack encoding of every small stored object.

Each object starts with a type tag and a format version. Encoding is canonical — maps
with sorted string keys, integers for times (nanoseconds), names as raw bytes — so the
same object always has the same bytes and therefore the same id. ``docs/design.md``
gives the byte layout; ``tests/golden`` pins it.

Decoding treats its input as hostile: msgpack's own size limits are bounded by the input
length, every field's type is checked, and any failure raises
:class:`~cas.errors.CorruptObjectError` (or :class:`~cas.errors.UnsafePathError` for a
name that would escape the worktree) and nothing else.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

import msgpack

from cas.errors import UPGRADE_HINT, CorruptObjectError, UnsafePathError, UnsupportedFormatError
from cas.ids import ID_SIZE, ObjectId
from cas.objects import ChunkRef, Commit, CommitStats, EntryKind, RefEntry, Tree, TreeEntry
from cas.paths import MAX_NAME_BYTES, RESERVED_ROOT_NAMES, check_name

TREE_VERSION = 1
COMMIT_VERSION = 1
REF_VERSION = 1

T = TypeVar("T")

# ---------------------------------------------------------------------------- helpers


def pack_canonical(obj: Any) -> bytes:
    """Encode with msgpack: bin for bytes, str for text, sorted map keys."""
    return msgpack.packb(_sorted(obj), use_bin_type=True)  # type: ignore[no-any-return]


def _sorted(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _sorted(obj[k]) for k in sorted(obj)}
    if isinstance(obj, (list, tuple)):
        return [_sorted(v) for v in obj]
    return obj


def unpack_untrusted(data: bytes, what: str) -> Any:
    """Decode msgpack from untrusted bytes; only :class:`CorruptObjectError` escapes."""
    try:
        return msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            use_list=True,
        )
    except (
        ValueError,
        TypeError,
        msgpack.ExtraData,
        msgpack.FormatError,
        msgpack.StackError,
        RecursionError,
        OverflowError,
    ) as exc:
        raise CorruptObjectError(what, f"not valid msgpack ({type(exc).__name__})") from exc


def _expect(cond: bool, what: str, reason: str) -> None:
    if not cond:
        raise CorruptObjectError(what, reason)


def _int(v: Any, what: str, field: str, lo: int = 0, hi: int = 2**63 - 1) -> int:
    _expect(type(v) is int and lo <= v <= hi, what, f"field {field} is not an integer in range")
    return int(v)


def _str(v: Any, what: str, field: str) -> str:
    _expect(isinstance(v, str), what, f"field {field} is not a string")
    return str(v)


def _bytes(v: Any, what: str, field: str) -> bytes:
    _expect(isinstance(v, bytes), what, f"field {field} is not bytes")
    return bytes(v)


def _oid(v: Any, what: str, field: str) -> ObjectId:
    _expect(isinstance(v, bytes) and len(v) == ID_SIZE, what, f"field {field} is not an id")
    return ObjectId(v)


def _list(v: Any, what: str, field: str) -> list[Any]:
    _expect(isinstance(v, list), what, f"field {field} is not a list")
    return list(v)


def _map(v: Any, what: str) -> dict[str, Any]:
    _expect(isinstance(v, dict), what, "not a map")
    return dict(v)


def _header(m: dict[str, Any], what: str, type_tag: str, known: int) -> None:
    _expect(m.get("type") == type_tag, what, f"type tag is not {type_tag!r}")
    version = _int(m.get("v"), what, "v")
    if version > known:
        raise UnsupportedFormatError(
            f"{what} has format version {version}; this cas reads up to {known}",
            hint=UPGRADE_HINT,
        )
    _expect(version >= 1, what, "format version 0")


def decode_guarded(fn: Callable[[bytes, str], T], data: bytes, what: str) -> T:
    """Run a decoder, turning any stray lookup/type error into CorruptObjectError."""
    try:
        return fn(data, what)
    except (CorruptObjectError, UnsafePathError, UnsupportedFormatError):
        raise
    except (KeyError, IndexError, TypeError, ValueError, AttributeError, OverflowError) as exc:
        raise CorruptObjectError(what, f"malformed ({type(exc).__name__}: {exc})") from exc


# ---------------------------------------------------------------------------- trees
#
# ["tree", 1, [entry, ...]]  with entry = [name: bin, kind: int, mode: int, mtime_ns: int,
#   size: int, oid: bin32, extra] and extra =
#   file:    nil when the file is one chunk whose id is the file id (or empty),
#            else [chunk ids concatenated: bin, [size, ...]]
#   dir:     nil
#   symlink: target: bin


def encode_tree(tree: Tree) -> bytes:
    """Encode a tree (entries must already be sorted by name bytes)."""
    rows = []
    for e in tree.entries:
        extra: Any = None
        if e.kind == EntryKind.FILE:
            implied = len(e.chunks) == 1 and e.chunks[0].chunk_id == e.oid
            if e.chunks and not implied:
                extra = [b"".join(c.chunk_id for c in e.chunks), [c.size for c in e.chunks]]
        elif e.kind == EntryKind.SYMLINK:
            extra = os.fsencode(e.target)
        rows.append(
            [os.fsencode(e.name), int(e.kind), e.mode, e.mtime_ns, e.size, bytes(e.oid), extra]
        )
    return msgpack.packb(["tree", TREE_VERSION, rows], use_bin_type=True)  # type: ignore[no-any-return]


def decode_tree(data: bytes, what: str = "tree", *, at_root: bool = False) -> Tree:
    """Decode and validate a tree; names are checked for safety.

    Raises:
        CorruptObjectError: malformed bytes, unsorted or duplicate names.
        UnsafePathError: a name that is not a plain single path component.
    """
    return decode_guarded(lambda d, w: _decode_tree(d, w, at_root), data, what)


_MIN_I64, _MAX_I64 = -(2**63), 2**63 - 1
_KINDS = tuple(EntryKind(i) for i in range(3))


def _checked_row(r: Any, what: str, last: bytes | None) -> tuple[bytes, int, int, int, int, bytes]:
    """The first six fields of a tree row, each checked (raises on the first bad one)."""
    r = _list(r, what, "entry")
    _expect(len(r) == 7, what, "entry does not have 7 fields")
    raw_name = _bytes(r[0], what, "name")
    _expect(last is None or raw_name > last, what, "names not sorted or duplicated")
    return (
        raw_name,
        _int(r[1], what, "kind", 0, 2),
        _int(r[2], what, "mode", 0, 0o7777),
        _int(r[3], what, "mtime_ns", _MIN_I64, _MAX_I64),
        _int(r[4], what, "size"),
        _oid(r[5], what, "oid"),
    )


def _decode_tree(data: bytes, what: str, at_root: bool) -> Tree:
    top = _list(unpack_untrusted(data, what), what, "tree")
    _expect(len(top) == 3 and top[0] == "tree", what, "type tag is not 'tree'")
    version = _int(top[1], what, "v")
    if version > TREE_VERSION:
        raise UnsupportedFormatError(f"{what} has format version {version}", hint=UPGRADE_HINT)
    _expect(version >= 1, what, "format version 0")
    entries: list[TreeEntry] = []
    last: bytes | None = None
    for row in _list(top[2], what, "entries"):
        if (  # the common, valid row, checked in one expression (trees can be large)
            type(row) is list
            and len(row) == 7
            and type(row[0]) is bytes
            and (last is None or row[0] > last)
            and type(row[1]) is int
            and 0 <= row[1] <= 2
            and type(row[2]) is int
            and 0 <= row[2] <= 0o7777
            and type(row[3]) is int
            and _MIN_I64 <= row[3] <= _MAX_I64
            and type(row[4]) is int
            and 0 <= row[4] <= _MAX_I64
            and type(row[5]) is bytes
            and len(row[5]) == ID_SIZE
        ):
            raw_name, kind_n, mode, mtime, size, raw_oid, extra = row
        else:
            raw_name, kind_n, mode, mtime, size, raw_oid = _checked_row(row, what, last)
            extra = row[6]
        last = raw_name
        name = os.fsdecode(raw_name)
        if (
            not name
            or name in (".", "..")
            or "/" in name
            or "\x00" in name
            or len(raw_name) > MAX_NAME_BYTES
            or (at_root and name in RESERVED_ROOT_NAMES)
        ):
            check_name(name, at_root=at_root)  # raises, naming what is wrong
        kind = _KINDS[kind_n]
        oid = ObjectId(raw_oid)
        chunks: tuple[ChunkRef, ...] = ()
        target = ""
        if kind is EntryKind.FILE:
            if extra is None:
                chunks = (ChunkRef(oid, size),) if size else ()
            else:
                pair = _list(extra, what, "chunks")
                _expect(len(pair) == 2, what, "chunk list is not [ids, sizes]")
                ids = _bytes(pair[0], what, "chunk ids")
                sizes = _list(pair[1], what, "chunk sizes")
                _expect(len(ids) == ID_SIZE * len(sizes), what, "chunk ids and sizes differ")
                chunks = tuple(
                    ChunkRef(
                        ObjectId(ids[i * ID_SIZE : (i + 1) * ID_SIZE]),
                        _int(s, what, "chunk size", 1),
                    )
                    for i, s in enumerate(sizes)
                )
                _expect(sum(c.size for c in chunks) == size, what, "chunk sizes do not add up")
        elif kind is EntryKind.SYMLINK:
            target = os.fsdecode(_bytes(extra, what, "target"))
            _expect(bool(target) and "\x00" not in target, what, "bad symlink target")
        else:
            _expect(extra is None, what, "directory entry with extra data")
        entries.append(TreeEntry(name, kind, mode, mtime, size, oid, chunks, target))
    return Tree(tuple(entries))


# ---------------------------------------------------------------------------- commits


def encode_commit(c: Commit) -> bytes:
    """Encode a commit canonically."""
    s = c.stats
    return pack_canonical(
        {
            "type": "commit",
            "v": COMMIT_VERSION,
            "tree": bytes(c.tree),
            "parents": [bytes(p) for p in c.parents],
            "message": c.message,
            "author": c.author,
            "time_ns": c.time_ns,
            "stats": {
                "files": s.files,
                "dirs": s.dirs,
                "symlinks": s.symlinks,
                "bytes": s.bytes,
                "scanned_bytes": s.scanned_bytes,
                "new_chunks": s.new_chunks,
                "new_bytes": s.new_bytes,
                "stored_bytes": s.stored_bytes,
            },
        }
    )


def decode_commit(data: bytes, what: str = "commit") -> Commit:
    """Decode and validate a commit."""
    return decode_guarded(_decode_commit, data, what)


def _decode_commit(data: bytes, what: str) -> Commit:
    m = _map(unpack_untrusted(data, what), what)
    _header(m, what, "commit", COMMIT_VERSION)
    st = _map(m.get("stats", {}), what)
    stats = CommitStats(
        **{k: _int(st.get(k, 0), what, f"stats.{k}") for k in CommitStats.__dataclass_fields__}
    )
    return Commit(
        tree=_oid(m.get("tree"), what, "tree"),
        parents=tuple(_oid(p, what, "parents") for p in _list(m.get("parents"), what, "parents")),
        message=_str(m.get("message"), what, "message"),
        author=_str(m.get("author"), what, "author"),
        time_ns=_int(m.get("time_ns"), what, "time_ns", -(2**63)),
        stats=stats,
    )


# ---------------------------------------------------------------------------- ref entries


def encode_ref_entry(e: RefEntry) -> bytes:
    """Encode a ref entry canonically."""
    return pack_canonical(
        {
            "type": "ref",
            "v": REF_VERSION,
            "name": e.name,
            "target": None if e.target is None else bytes(e.target),
            "symbolic": e.symbolic,
            "prev": list(e.prev),
            "time_ns": e.time_ns,
            "writer": e.writer,
        }
    )


def decode_ref_entry(data: bytes, what: str = "ref entry") -> RefEntry:
    """Decode and validate a ref entry."""
    return decode_guarded(_decode_ref_entry, data, what)


def _decode_ref_entry(data: bytes, what: str) -> RefEntry:
    m = _map(unpack_untrusted(data, what), what)
    _header(m, what, "ref", REF_VERSION)
    target = m.get("target")
    return RefEntry(
        name=_str(m.get("name"), what, "name"),
        target=None if target is None else _oid(target, what, "target"),
        symbolic=_str(m.get("symbolic", ""), what, "symbolic"),
        prev=tuple(_str(p, what, "prev") for p in _list(m.get("prev"), what, "prev")),
        time_ns=_int(m.get("time_ns"), what, "time_ns", -(2**63)),
        writer=_str(m.get("writer", ""), what, "writer"),
    )
