"""Canonical msgpack encoding of trees, commits and ref entries, and every way to refuse one.

The exact bytes are pinned in ``tests/golden/test_encodings.py``; hostile input at large
is fuzzed in ``tests/property/test_decoders.py``. Here each validation path is hit once,
on purpose, so a removed check fails a named test.
"""

from __future__ import annotations

from typing import Any

import msgpack
import pytest

from cas.codec import (
    COMMIT_VERSION,
    REF_VERSION,
    TREE_VERSION,
    decode_commit,
    decode_guarded,
    decode_ref_entry,
    decode_tree,
    encode_commit,
    encode_ref_entry,
    encode_tree,
    pack_canonical,
    unpack_untrusted,
)
from cas.errors import CorruptObjectError, UnsafePathError, UnsupportedFormatError
from cas.hashing import hash_bytes
from cas.objects import ChunkRef, Commit, CommitStats, EntryKind, RefEntry, Tree, TreeEntry

A = hash_bytes(b"a")
B = hash_bytes(b"b")
C = hash_bytes(b"c")

F, D, L = EntryKind.FILE, EntryKind.DIR, EntryKind.SYMLINK


def _tree() -> Tree:
    return Tree(
        (
            TreeEntry("big.bin", F, 0o644, 10, 30, A, (ChunkRef(B, 10), ChunkRef(C, 20))),
            TreeEntry("empty", F, 0o600, -5, 0, hash_bytes(b"")),
            TreeEntry("link", L, 0o777, 3, 6, hash_bytes(b"target"), (), "target"),
            TreeEntry("one.txt", F, 0o755, 2**62, 5, A, (ChunkRef(A, 5),)),
            TreeEntry("sub", D, 0o755, 0, 0, B),
        )
    )


# ---------------------------------------------------------------------------- trees


def test_tree_roundtrip() -> None:
    tree = _tree()
    data = encode_tree(tree)
    assert decode_tree(data) == tree
    assert decode_tree(data, at_root=True) == tree
    assert encode_tree(decode_tree(data)) == data


def test_empty_tree_roundtrip() -> None:
    assert decode_tree(encode_tree(Tree(()))) == Tree(())


def test_single_chunk_file_stores_no_chunk_list() -> None:
    """A file that is one chunk has chunk id == file id: the chunk list is implied."""
    rows = msgpack.unpackb(encode_tree(_tree()), raw=False)[2]
    by_name = {r[0]: r for r in rows}
    assert by_name[b"one.txt"][6] is None
    assert by_name[b"empty"][6] is None
    assert by_name[b"sub"][6] is None
    assert by_name[b"link"][6] == b"target"
    assert by_name[b"big.bin"][6] == [B + C, [10, 20]]


def test_one_chunk_with_another_id_keeps_its_chunk_list() -> None:
    entry = TreeEntry("x", F, 0o644, 0, 5, A, (ChunkRef(B, 5),))
    assert decode_tree(encode_tree(Tree((entry,)))).entries == (entry,)


def test_non_utf8_names_survive() -> None:
    name = b"caf\xe9.bin".decode("utf-8", "surrogateescape")
    tree = Tree((TreeEntry(name, D, 0o755, 0, 0, A),))
    data = encode_tree(tree)
    assert msgpack.unpackb(data, raw=False)[2][0][0] == b"caf\xe9.bin"
    assert decode_tree(data) == tree


def _row(
    name: bytes = b"f",
    kind: int = 0,
    mode: int = 0o644,
    mtime: Any = 0,
    size: Any = 0,
    oid: Any = A,
    extra: Any = None,
) -> list[Any]:
    return [name, kind, mode, mtime, size, oid, extra]


def _tree_bytes(rows: Any, tag: Any = "tree", version: Any = TREE_VERSION) -> bytes:
    return msgpack.packb([tag, version, rows], use_bin_type=True)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "not valid msgpack"),
        (b"\xc1", "not valid msgpack"),
        (encode_tree(Tree(())) + b"\x00", "not valid msgpack"),
        (msgpack.packb({"type": "tree"}), "is not a list"),
        (msgpack.packb(["tree", 1]), "type tag"),
        (msgpack.packb(["tree", 1, [], None]), "type tag"),
        (_tree_bytes([], tag="commit"), "type tag"),
        (_tree_bytes([], version="1"), "field v"),
        (_tree_bytes([], version=-1), "field v"),
        (_tree_bytes([], version=0), "format version 0"),
        (_tree_bytes(None), "field entries"),
        (_tree_bytes([b"f"]), "field entry"),
        (_tree_bytes([_row()[:6]]), "7 fields"),
        (_tree_bytes([_row(name="f")]), "field name"),
        (_tree_bytes([_row(b"b"), _row(b"a")]), "not sorted"),
        (_tree_bytes([_row(b"a"), _row(b"a")]), "duplicated"),
        (_tree_bytes([_row(kind=3)]), "field kind"),
        (_tree_bytes([_row(kind=-1)]), "field kind"),
        (_tree_bytes([_row(kind=True)]), "field kind"),
        (_tree_bytes([_row(mode=0o10000)]), "field mode"),
        (_tree_bytes([_row(mode=-1)]), "field mode"),
        (_tree_bytes([_row(mtime=1.5)]), "field mtime_ns"),
        (_tree_bytes([_row(size=-1)]), "field size"),
        (_tree_bytes([_row(oid=bytes(A)[:31])]), "field oid"),
        (_tree_bytes([_row(oid=A.hex())]), "field oid"),
        (_tree_bytes([_row(size=5, extra=b"x")]), "field chunks"),
        (_tree_bytes([_row(size=5, extra=[A])]), "not \\[ids, sizes\\]"),
        (_tree_bytes([_row(size=5, extra=["x", [5]])]), "field chunk ids"),
        (_tree_bytes([_row(size=5, extra=[A, 5])]), "field chunk sizes"),
        (_tree_bytes([_row(size=5, extra=[A + B, [5]])]), "ids and sizes differ"),
        (_tree_bytes([_row(size=5, extra=[A[:-1], [5]])]), "ids and sizes differ"),
        (_tree_bytes([_row(size=0, extra=[A, [0]])]), "field chunk size"),
        (_tree_bytes([_row(size=5, extra=[A, ["5"]])]), "field chunk size"),
        (_tree_bytes([_row(size=6, extra=[A + B, [2, 3]])]), "do not add up"),
        (_tree_bytes([_row(kind=2, extra=None)]), "field target"),
        (_tree_bytes([_row(kind=2, extra="t")]), "field target"),
        (_tree_bytes([_row(kind=2, extra=b"")]), "bad symlink target"),
        (_tree_bytes([_row(kind=2, extra=b"a\x00b")]), "bad symlink target"),
        (_tree_bytes([_row(kind=1, extra=b"x")]), "directory entry with extra data"),
    ],
)
def test_decode_tree_refuses(data: bytes, reason: str) -> None:
    with pytest.raises(CorruptObjectError, match=reason) as ei:
        decode_tree(data, "tree 1234")
    assert ei.value.what == "tree 1234"
    assert str(ei.value).startswith("corrupt tree 1234: ")


def test_decode_tree_refuses_a_newer_version() -> None:
    with pytest.raises(UnsupportedFormatError, match="format version 2"):
        decode_tree(_tree_bytes([], version=TREE_VERSION + 1))


@pytest.mark.parametrize("name", [b"..", b".", b"a/b", b"/etc", b"a\x00b", b"x" * 4097], ids=repr)
def test_decode_tree_refuses_unsafe_names(name: bytes) -> None:
    with pytest.raises(UnsafePathError):
        decode_tree(_tree_bytes([_row(name)]))


def test_decode_tree_refuses_an_empty_name_as_unsafe() -> None:
    with pytest.raises(UnsafePathError, match="empty"):
        decode_tree(_tree_bytes([_row(b"")]))


def test_dot_cas_is_reserved_only_at_the_root() -> None:
    data = _tree_bytes([_row(b".cas", kind=1)])
    assert decode_tree(data).entries[0].name == ".cas"
    with pytest.raises(UnsafePathError, match="reserved"):
        decode_tree(data, at_root=True)


def test_file_without_chunk_list_has_one_implied_chunk() -> None:
    (entry,) = decode_tree(_tree_bytes([_row(size=7, oid=C)])).entries
    assert entry.chunks == (ChunkRef(C, 7),)
    (empty,) = decode_tree(_tree_bytes([_row(size=0)])).entries
    assert empty.chunks == ()


# ---------------------------------------------------------------------------- commits


def _commit(**kw: Any) -> Commit:
    base: dict[str, Any] = {
        "tree": A,
        "parents": (B, C),
        "message": "add weights ✓",
        "author": "Ada <ada@example.org>",
        "time_ns": 1_700_000_000_123_456_789,
        "stats": CommitStats(files=3, dirs=1, bytes=10, new_chunks=2, stored_bytes=9),
    }
    base.update(kw)
    return Commit(**base)


def test_commit_roundtrip() -> None:
    for c in (_commit(), _commit(parents=(), time_ns=-1, message=""), _commit(stats=CommitStats())):
        data = encode_commit(c)
        assert decode_commit(data) == c
        assert encode_commit(decode_commit(data)) == data


def test_commit_encoding_is_canonical() -> None:
    m = msgpack.unpackb(encode_commit(_commit()), raw=False)
    assert list(m) == sorted(m)
    assert list(m["stats"]) == sorted(m["stats"])
    assert m["type"] == "commit"
    assert m["v"] == COMMIT_VERSION


def _commit_map(**kw: Any) -> dict[str, Any]:
    m: dict[str, Any] = msgpack.unpackb(encode_commit(_commit()), raw=False)
    for k, v in kw.items():
        if v is _MISSING:
            del m[k]
        else:
            m[k] = v
    return m


_MISSING = object()


def test_commit_without_stats_has_zero_stats() -> None:
    c = decode_commit(msgpack.packb(_commit_map(stats=_MISSING)))
    assert c.stats == CommitStats()


def test_commit_ignores_unknown_fields() -> None:
    c = decode_commit(msgpack.packb(_commit_map(future="x")))
    assert c == _commit()


@pytest.mark.parametrize(
    ("obj", "reason"),
    [
        ([1, 2], "not a map"),
        (_commit_map(type="tree"), "type tag"),
        (_commit_map(type=_MISSING), "type tag"),
        (_commit_map(v=_MISSING), "field v"),
        (_commit_map(v="1"), "field v"),
        (_commit_map(v=0), "format version 0"),
        (_commit_map(tree=_MISSING), "field tree"),
        (_commit_map(tree=bytes(A)[:5]), "field tree"),
        (_commit_map(parents=_MISSING), "field parents"),
        (_commit_map(parents=[b"x"]), "field parents"),
        (_commit_map(parents=bytes(A)), "field parents"),
        (_commit_map(message=b"bytes"), "field message"),
        (_commit_map(message=_MISSING), "field message"),
        (_commit_map(author=None), "field author"),
        (_commit_map(time_ns=_MISSING), "field time_ns"),
        (_commit_map(time_ns=1.0), "field time_ns"),
        (_commit_map(stats=[1]), "not a map"),
        (_commit_map(stats={"files": -1}), "field stats.files"),
        (_commit_map(stats={"bytes": "10"}), "field stats.bytes"),
    ],
)
def test_decode_commit_refuses(obj: Any, reason: str) -> None:
    with pytest.raises(CorruptObjectError, match=reason) as ei:
        decode_commit(msgpack.packb(obj, use_bin_type=True), "commit abc")
    assert ei.value.what == "commit abc"


def test_decode_commit_refuses_a_newer_version() -> None:
    with pytest.raises(UnsupportedFormatError, match="format version 2") as ei:
        decode_commit(msgpack.packb(_commit_map(v=COMMIT_VERSION + 1)))
    assert "upgrade" in ei.value.hint


# ---------------------------------------------------------------------------- ref entries


REF_SAMPLES = [
    RefEntry("heads/main", A, "", ("refs/heads/main/0000000001-" + "0" * 64,), 5, "ada@box"),
    RefEntry("HEAD", None, "heads/main", (), 0, ""),
    RefEntry("tags/v1", None, "", ("k1", "k2"), -7, "w"),  # a deletion
]


@pytest.mark.parametrize("entry", REF_SAMPLES, ids=["target", "symbolic", "deletion"])
def test_ref_entry_roundtrip(entry: RefEntry) -> None:
    data = encode_ref_entry(entry)
    assert decode_ref_entry(data) == entry
    assert encode_ref_entry(decode_ref_entry(data)) == data


def test_ref_entry_deletion_flag() -> None:
    assert [e.is_deletion for e in REF_SAMPLES] == [False, False, True]


def _ref_map(**kw: Any) -> dict[str, Any]:
    m: dict[str, Any] = msgpack.unpackb(encode_ref_entry(REF_SAMPLES[0]), raw=False)
    for k, v in kw.items():
        if v is _MISSING:
            del m[k]
        else:
            m[k] = v
    return m


def test_ref_entry_optional_fields_default() -> None:
    e = decode_ref_entry(msgpack.packb(_ref_map(symbolic=_MISSING, writer=_MISSING)))
    assert (e.symbolic, e.writer) == ("", "")


@pytest.mark.parametrize(
    ("obj", "reason"),
    [
        ("ref", "not a map"),
        (_ref_map(type="commit"), "type tag"),
        (_ref_map(v=_MISSING), "field v"),
        (_ref_map(v=0), "format version 0"),
        (_ref_map(name=_MISSING), "field name"),
        (_ref_map(name=b"heads/main"), "field name"),
        (_ref_map(target=b"short"), "field target"),
        (_ref_map(target=A.hex()), "field target"),
        (_ref_map(symbolic=None), "field symbolic"),
        (_ref_map(prev=_MISSING), "field prev"),
        (_ref_map(prev="k"), "field prev"),
        (_ref_map(prev=[b"k"]), "field prev"),
        (_ref_map(time_ns=_MISSING), "field time_ns"),
        (_ref_map(time_ns=2**63), "field time_ns"),
        (_ref_map(writer=1), "field writer"),
    ],
)
def test_decode_ref_entry_refuses(obj: Any, reason: str) -> None:
    with pytest.raises(CorruptObjectError, match=reason):
        decode_ref_entry(msgpack.packb(obj, use_bin_type=True))


def test_decode_ref_entry_refuses_a_newer_version() -> None:
    with pytest.raises(UnsupportedFormatError):
        decode_ref_entry(msgpack.packb(_ref_map(v=REF_VERSION + 1)))


# ---------------------------------------------------------------------------- helpers


def test_pack_canonical_sorts_keys_at_every_level() -> None:
    a = pack_canonical({"b": 1, "a": {"z": [{"y": 1, "x": 2}], "c": b"\x00"}})
    b = pack_canonical({"a": {"c": b"\x00", "z": [{"x": 2, "y": 1}]}, "b": 1})
    assert a == b
    assert msgpack.unpackb(a, raw=False) == {"a": {"c": b"\x00", "z": [{"x": 2, "y": 1}]}, "b": 1}


def test_pack_canonical_keeps_bytes_and_text_apart() -> None:
    assert msgpack.unpackb(pack_canonical([b"x", "x"]), raw=False) == [b"x", "x"]


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc1",
        b"\x92\x01",  # array of 2 with one item
        b"\x01\x02",  # extra data
        b"\xa2\xff\xfe",  # str that is not UTF-8
        b"\x81\x01\x02",  # int map key
        b"\x91" * 5000 + b"\xc0",  # nesting too deep
    ],
    ids=["empty", "reserved", "short", "extra", "bad-utf8", "int-key", "deep"],
)
def test_unpack_untrusted_only_raises_corrupt(data: bytes) -> None:
    with pytest.raises(CorruptObjectError, match="not valid msgpack"):
        unpack_untrusted(data, "thing")


def test_decode_guarded_turns_stray_errors_into_corrupt() -> None:
    def boom(data: bytes, what: str) -> None:
        raise KeyError("x")

    with pytest.raises(CorruptObjectError, match="malformed \\(KeyError"):
        decode_guarded(boom, b"", "thing")


@pytest.mark.parametrize("exc", [UnsafePathError("p", "r"), UnsupportedFormatError("new")])
def test_decode_guarded_lets_domain_errors_through(exc: Exception) -> None:
    def boom(data: bytes, what: str) -> None:
        raise exc

    with pytest.raises(type(exc)):
        decode_guarded(boom, b"", "thing")


def test_decode_guarded_does_not_hide_bugs_of_other_kinds() -> None:
    def boom(data: bytes, what: str) -> None:
        raise RuntimeError("bug")

    with pytest.raises(RuntimeError):
        decode_guarded(boom, b"", "thing")
