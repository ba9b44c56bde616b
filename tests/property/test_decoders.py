"""Decoder robustness: hostile bytes raise the domain error and nothing else.

Every decoder reads bytes that came from a remote we do not trust (a damaged Drive
upload, a truncated pack, a malicious store). Whatever the bytes, a decoder either
returns a value or raises :class:`CorruptObjectError` — plus :class:`UnsafePathError`
for tree names and :class:`UnsupportedFormatError` for versioned objects. Any other
exception (``struct.error``, ``KeyError``, ``OverflowError``…) would escape as an
internal error instead of "this object is damaged, run verify".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgpack
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from cas import compression
from cas.codec import (
    decode_commit,
    decode_ref_entry,
    decode_tree,
    encode_commit,
    encode_ref_entry,
    encode_tree,
)
from cas.config import StoreConfig, decode_config, encode_config
from cas.errors import CorruptObjectError, UnsafePathError, UnsupportedFormatError
from cas.hashing import hash_bytes
from cas.index import decode_segment, encode_segment, parse_segment
from cas.objects import ChunkRef, Commit, EntryKind, RefEntry, Tree, TreeEntry
from cas.packs import PackWriter, read_pack_entries, scan_pack
from tests.property.strategies import commits, ref_entries, trees


def _read_pack_entries(data: bytes) -> Any:
    return read_pack_entries(lambda n: data[len(data) - n :], len(data), "pack")


def _scan_pack(data: bytes) -> Any:
    return list(scan_pack(data, "pack"))


# decoder → the exceptions it may raise besides returning a value
DECODERS: dict[str, tuple[Callable[[bytes], Any], tuple[type[Exception], ...]]] = {
    "tree": (decode_tree, (CorruptObjectError, UnsafePathError, UnsupportedFormatError)),
    "root tree": (
        lambda d: decode_tree(d, at_root=True),
        (CorruptObjectError, UnsafePathError, UnsupportedFormatError),
    ),
    "commit": (decode_commit, (CorruptObjectError, UnsupportedFormatError)),
    "ref entry": (decode_ref_entry, (CorruptObjectError, UnsupportedFormatError)),
    "config": (decode_config, (CorruptObjectError, UnsupportedFormatError)),
    "segment": (lambda d: decode_segment(d, "segment"), (CorruptObjectError,)),
    "segment rows": (lambda d: parse_segment(d, "segment"), (CorruptObjectError,)),
    "pack footer": (_read_pack_entries, (CorruptObjectError,)),
    "pack scan": (_scan_pack, (CorruptObjectError,)),
}


def _valid_pack() -> bytes:
    w = PackWriter()
    for raw in (b"", b"hello", b"abc" * 100):
        codec, stored = compression.compress(raw, 3)
        w.add(hash_bytes(raw), 0, codec, len(raw), stored)
    return w.seal()[1]


def _valid_segment() -> bytes:
    pack_id, data, entries = PackWriter().seal()
    w = PackWriter()
    w.add(hash_bytes(b"x"), 0, 0, 1, b"x")
    pack2, data2, entries2 = w.seal()
    return encode_segment({pack_id: (len(data), entries), pack2: (len(data2), entries2)})


def _valid_tree() -> bytes:
    """A tree with a row of each kind (a two-chunk file, a folder, a symlink, an empty
    file): truncations and mutations then reach every field of a row, not only the
    header of an empty tree."""
    two_chunks = (ChunkRef(hash_bytes(b"a"), 70_000), ChunkRef(hash_bytes(b"b"), 1))
    rows = (
        TreeEntry("a.bin", EntryKind.FILE, 0o644, 1, 70_001, hash_bytes(b"ab"), two_chunks),
        TreeEntry("dir", EntryKind.DIR, 0o755, 2, 0, hash_bytes(b"t")),
        TreeEntry("empty", EntryKind.FILE, 0o600, 3, 0, hash_bytes(b"")),
        TreeEntry("link", EntryKind.SYMLINK, 0o777, 4, 5, hash_bytes(b"a.bin"), target="a.bin"),
    )
    return encode_tree(Tree(rows))


SAMPLES: dict[str, bytes] = {
    "tree": _valid_tree(),
    "commit": encode_commit(Commit(hash_bytes(b"t"), (hash_bytes(b"p"),), "m", "a", 1)),
    "ref entry": encode_ref_entry(RefEntry("heads/main", hash_bytes(b"c"), "", ("k",), 1, "w")),
    "config": encode_config(StoreConfig(store_id="s", created_ns=1)),
    "segment": _valid_segment(),
    "segment rows": _valid_segment(),
    "pack footer": _valid_pack(),
    "pack scan": _valid_pack(),
}
SAMPLES["root tree"] = SAMPLES["tree"]


def _check(name: str, data: bytes) -> None:
    decode, allowed = DECODERS[name]
    try:
        decode(data)
    except allowed:
        pass


@pytest.mark.parametrize("name", sorted(DECODERS))
@given(data=st.binary(max_size=512))
@example(data=b"")
@example(data=b"\x00")
@example(data=b"\xc1")  # never used by msgpack
@example(data=b"\x91" * 3000 + b"\xc0")  # nesting deeper than the unpacker allows
@example(data=b"CASPACK1")
@example(data=b"CASIDX01")
@example(data=b"CASPACK1" + b"\x00" * 16 + b"CASPEND1")
@example(data=b"\xdd\xff\xff\xff\xff")  # an array claiming 4 billion items
def test_arbitrary_bytes(name: str, data: bytes) -> None:
    _check(name, data)


@pytest.mark.parametrize("name", sorted(DECODERS))
@given(data=st.data())
def test_truncated_valid_encoding(name: str, data: st.DataObject) -> None:
    valid = SAMPLES[name]
    cut = data.draw(st.integers(min_value=0, max_value=len(valid)))
    _check(name, valid[:cut])
    _check(name, valid[len(valid) - cut :])


@pytest.mark.parametrize("name", sorted(DECODERS))
@given(data=st.data())
def test_mutated_valid_encoding(name: str, data: st.DataObject) -> None:
    buf = bytearray(SAMPLES[name])
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        op = data.draw(st.sampled_from(["flip", "set", "insert", "delete", "extend"]))
        pos = data.draw(st.integers(min_value=0, max_value=max(0, len(buf) - 1)))
        if op == "flip" and buf:
            buf[pos] ^= 1 << data.draw(st.integers(min_value=0, max_value=7))
        elif op == "set" and buf:
            buf[pos] = data.draw(st.integers(min_value=0, max_value=255))
        elif op == "insert":
            buf[pos:pos] = data.draw(st.binary(min_size=1, max_size=8))
        elif op == "delete" and buf:
            del buf[pos : pos + data.draw(st.integers(min_value=1, max_value=8))]
        else:
            buf += data.draw(st.binary(min_size=1, max_size=8))
    _check(name, bytes(buf))


# Structurally plausible msgpack with wrong types in every field: the unpacker succeeds,
# so this reaches the field checks that random bytes seldom get to.
# A few values of every msgpack type, edge cases first; sampled rather than generated
# recursively, which keeps these tests fast.
INTERESTING: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    1,
    2**31,
    2**63,
    2**64 - 1,
    -(2**63),
    0.5,
    float("inf"),
    float("-inf"),
    float("nan"),
    "",
    "x",
    "zstd",
    "fastcdc2020",
    b"",
    b"\x00" * 32,
    b"\x00" * 31,
    [],
    [1],
    [b"\x00" * 32],
    ["a", "b"],
    {},
    {"a": 1},
]
msgpack_values = (
    st.sampled_from(INTERESTING)
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.text(max_size=4)
    | st.binary(max_size=40)
)


def _replace_fields(obj: Any, draw: Callable[[Any], Any]) -> Any:
    """Replace some values of a decoded map or list with arbitrary msgpack values."""
    if isinstance(obj, dict):
        return {k: draw(msgpack_values) if draw(st.booleans()) else v for k, v in obj.items()}
    if isinstance(obj, list):
        return [draw(msgpack_values) if draw(st.booleans()) else v for v in obj]
    return obj


@pytest.mark.parametrize("name", ["tree", "commit", "ref entry", "config"])
@given(data=st.data())
def test_wrong_field_types(name: str, data: st.DataObject) -> None:
    obj = msgpack.unpackb(SAMPLES[name], raw=False)
    if name == "config":
        # Reach into the nested maps too.
        obj["chunker"] = _replace_fields(obj["chunker"], data.draw)
        obj["compression"] = _replace_fields(obj["compression"], data.draw)
    obj = _replace_fields(obj, data.draw)
    _check(name, msgpack.packb(obj, use_bin_type=True))


@given(trees(max_entries=3), st.data())
def test_wrong_tree_entry_fields(tree: Tree, data: st.DataObject) -> None:
    obj = msgpack.unpackb(encode_tree(tree), raw=False)
    obj[2] = [_replace_fields(row, data.draw) for row in obj[2]]
    _check("tree", msgpack.packb(obj, use_bin_type=True))


@given(trees(max_entries=4), st.data())
def test_mutated_generated_trees(tree: Tree, data: st.DataObject) -> None:
    valid = encode_tree(tree)
    cut = data.draw(st.integers(min_value=0, max_value=len(valid)))
    _check("tree", valid[:cut])
    _check("root tree", valid[:cut])
    pos = data.draw(st.integers(min_value=0, max_value=len(valid) - 1))
    bit = 1 << data.draw(st.integers(min_value=0, max_value=7))
    _check("tree", valid[:pos] + bytes([valid[pos] ^ bit]) + valid[pos + 1 :])


@given(commits, ref_entries(), st.data())
def test_mutated_generated_objects(commit: Commit, entry: RefEntry, data: st.DataObject) -> None:
    for name, valid in (("commit", encode_commit(commit)), ("ref entry", encode_ref_entry(entry))):
        cut = data.draw(st.integers(min_value=0, max_value=len(valid)))
        _check(name, valid[:cut])
        pos = data.draw(st.integers(min_value=0, max_value=len(valid) - 1))
        _check(name, valid[:pos] + bytes([valid[pos] ^ 0x40]) + valid[pos + 1 :])


ZSTD_FRAME = compression.compress(b"0123456789" * 20, 3)[1]


@given(
    codec=st.integers(min_value=-1, max_value=3),
    stored=st.binary(max_size=300),
    raw_len=st.integers(min_value=0, max_value=1 << 16),
)
@example(codec=compression.CODEC_ZSTD, stored=b"", raw_len=0)
@example(codec=compression.CODEC_ZSTD, stored=ZSTD_FRAME[:-1], raw_len=200)
@example(codec=compression.CODEC_ZSTD, stored=ZSTD_FRAME[:6], raw_len=200)
@example(codec=compression.CODEC_ZSTD, stored=ZSTD_FRAME + b"\x00", raw_len=200)
@example(codec=compression.CODEC_ZSTD, stored=ZSTD_FRAME, raw_len=199)
@example(codec=compression.CODEC_RAW, stored=b"abc", raw_len=2)
def test_decompress_arbitrary(codec: int, stored: bytes, raw_len: int) -> None:
    try:
        out = compression.decompress(codec, stored, raw_len, "chunk")
    except CorruptObjectError:
        return
    assert len(out) == raw_len


@given(data=st.data())
def test_decompress_mutated_frame(data: st.DataObject) -> None:
    buf = bytearray(ZSTD_FRAME)
    pos = data.draw(st.integers(min_value=0, max_value=len(buf) - 1))
    buf[pos] = data.draw(st.integers(min_value=0, max_value=255))
    cut = data.draw(st.integers(min_value=0, max_value=len(buf)))
    try:
        out = compression.decompress(compression.CODEC_ZSTD, bytes(buf[:cut]), 200, "chunk")
    except CorruptObjectError:
        return
    assert len(out) == 200
