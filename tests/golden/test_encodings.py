"""Pinned encodings: the exact bytes of every stored object kind.

Objects are named by the hash of their bytes, so any change to an encoding — a field
renamed, a map no longer sorted, an integer packed differently, a byte moved in a pack
footer — changes every id and makes old stores unreadable or undeduplicable. Each
sample below is encoded and compared byte for byte with a file under ``tests/data/``
named by its own BLAKE3 (for a pack and an index segment that is also its id), and each
file is decoded back into the sample, so old bytes stay readable.

A deliberate format change needs a new format version (``TREE_VERSION``,
``FORMAT_VERSION``…), a new golden file beside the old one, and a test that the old one
still decodes; never an edited file here. On a mismatch the failure prints the new
bytes' hash and hex so the difference can be studied.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cas.chunking import ChunkerParams
from cas.codec import (
    decode_commit,
    decode_ref_entry,
    decode_tree,
    encode_commit,
    encode_ref_entry,
    encode_tree,
)
from cas.compression import CODEC_PLANES2, CODEC_RAW, CODEC_ZSTD, decompress
from cas.config import StoreConfig, decode_config, encode_config
from cas.hashing import hash_bytes
from cas.ids import ObjectId
from cas.index import decode_segment, encode_segment
from cas.objects import ChunkRef, Commit, CommitStats, EntryKind, RefEntry, Tree, TreeEntry
from cas.packs import KIND_CHUNK, KIND_TREE, PackEntry, PackWriter, read_pack_entries, scan_pack

DATA = Path(__file__).resolve().parent.parent / "data"


def _h(text: str) -> ObjectId:
    return hash_bytes(text.encode())


T0 = 1_700_000_000_000_000_000

TREE = Tree(
    (
        TreeEntry("data", EntryKind.DIR, 0o755, T0, 0, _h("tree of data")),
        TreeEntry("empty.txt", EntryKind.FILE, 0o644, T0 + 1, 0, hash_bytes(b"")),
        TreeEntry(
            "latest",
            EntryKind.SYMLINK,
            0o777,
            T0 + 2,
            11,
            hash_bytes(b"weights.bin"),
            (),
            "weights.bin",
        ),
        TreeEntry(  # one chunk whose id is the file id: the chunk list is implied
            "small.txt",
            EntryKind.FILE,
            0o600,
            T0 + 3,
            5,
            hash_bytes(b"hello"),
            (ChunkRef(hash_bytes(b"hello"), 5),),
        ),
        TreeEntry(
            "weights.bin",
            EntryKind.FILE,
            0o644,
            T0 + 4,
            6000,
            _h("whole file"),
            (
                ChunkRef(_h("chunk 1"), 1000),
                ChunkRef(_h("chunk 2"), 2000),
                ChunkRef(_h("chunk 3"), 3000),
            ),
        ),
    )
)

COMMIT = Commit(
    tree=_h("root tree"),
    parents=(_h("parent 1"), _h("parent 2")),
    message="Add weights\n\nsecond line ✓",
    author="Ada Lovelace <ada@example.org>",
    time_ns=1_700_000_000_123_456_789,
    stats=CommitStats(
        files=3,
        dirs=1,
        symlinks=1,
        bytes=6005,
        scanned_bytes=6005,
        new_chunks=4,
        new_bytes=6005,
        stored_bytes=4000,
    ),
)

REF_ENTRY = RefEntry(
    name="heads/main",
    target=_h("commit"),
    symbolic="",
    prev=("refs/heads/main/0000000001-" + _h("entry 1").hex(),),
    time_ns=1_700_000_000_999_999_999,
    writer="ada@laptop",
)

CONFIG = StoreConfig(
    store_id="0123456789abcdef0123456789abcdef",
    created_ns=T0,
    chunker=ChunkerParams(),
    zstd_level=3,
    pack_size=32 << 20,
)

# A zstd frame made once by zstandard 0.25 (libzstd 1.5.7) at level 3. Compressor output
# may differ between zstd releases, so the pack pins this frame, not today's output;
# decompression of an existing frame is what must never change.
ZSTD_RAW = b"golden chunk, compressed with zstd. " * 8
ZSTD_FRAME = bytes.fromhex(
    "28b52ffd6020006d01004402676f6c64656e206368756e6b2c20636f6d707265737365642077697468"
    "207a7374642e200100cc1f4a3d01"
)


# A codec-2 frame (byte planes, then zstd) made once by zstandard 0.25 (libzstd 1.5.7) at
# level 3: 40 float16-like pairs and one odd byte. Its decoding must never change.
PLANES_RAW = b"".join(bytes((i * 7 & 0xFF, 0x3C)) for i in range(40)) + b"!"
PLANES_FRAME = bytes.fromhex(
    "28b52ffd20518d0100a40200070e151c232a31383f464d545b626970777e858c939aa1a8afb6bdc4cbd2"
    "d9e0e7eef5fc030a11213c0100528232"
)


def test_golden_planes_frame_decodes() -> None:
    assert decompress(CODEC_PLANES2, PLANES_FRAME, len(PLANES_RAW), "golden") == PLANES_RAW


def _pack() -> tuple[ObjectId, bytes, list[PackEntry]]:
    w = PackWriter()
    w.add(hash_bytes(b"hello"), KIND_CHUNK, CODEC_RAW, 5, b"hello")
    w.add(hash_bytes(ZSTD_RAW), KIND_CHUNK, CODEC_ZSTD, len(ZSTD_RAW), ZSTD_FRAME)
    tree = encode_tree(TREE)
    w.add(hash_bytes(tree), KIND_TREE, CODEC_RAW, len(tree), tree)
    return w.seal()


def _segment() -> bytes:
    pack_id, data, entries = _pack()
    return encode_segment({pack_id: (len(data), entries)})


# kind → (file name = blake3 of the golden bytes, encoder)
GOLDEN = {
    "tree": (
        "ce8633f91250676903d843e5fb854d326002ea6d78739eedd608e3ef20c2f7f0",
        lambda: encode_tree(TREE),
    ),
    "commit": (
        "de0b4d58aab598e38d4fc28a0fdf6c202487a7017d5be8f2af5fe153212a3f5b",
        lambda: encode_commit(COMMIT),
    ),
    "ref": (
        "8d0591ddf88de0c1cbaf88e4aa47fd92736de071cca08d69d68428ffd8e4fced",
        lambda: encode_ref_entry(REF_ENTRY),
    ),
    "config": (
        "ec583d5bf4ddab5a84b3a1c95b93b2372c184fbbc5c69e1f4e7443dfa0ddb772",
        lambda: encode_config(CONFIG),
    ),
    "pack": (
        "e45adf7f690c46067e2c86e006b158cafae6020e0165a400066879127b9118e4",
        lambda: _pack()[1],
    ),
    "segment": (
        "61adcc6a2844b778aa00950fa58ea1071d17e1bd216b37d76cfd5a5b4417cc5a",
        _segment,
    ),
}


def _golden(kind: str) -> bytes:
    name, _ = GOLDEN[kind]
    path = DATA / f"{name}.{kind}"
    data = path.read_bytes()
    assert hash_bytes(data).hex() == name, f"{path} does not match its name"
    return data


@pytest.mark.parametrize("kind", sorted(GOLDEN))
def test_encoding_is_pinned(kind: str) -> None:
    name, encode = GOLDEN[kind]
    data = encode()
    actual = hash_bytes(data).hex()
    assert actual == name, (
        f"the {kind} encoding changed: blake3 {actual}, {len(data)} bytes:\n{data.hex()}"
    )
    assert data == _golden(kind)


def test_golden_tree_decodes() -> None:
    assert decode_tree(_golden("tree"), at_root=True) == TREE


def test_golden_commit_decodes() -> None:
    assert decode_commit(_golden("commit")) == COMMIT


def test_golden_ref_entry_decodes() -> None:
    assert decode_ref_entry(_golden("ref")) == REF_ENTRY


def test_golden_config_decodes() -> None:
    assert decode_config(_golden("config")) == CONFIG


def test_golden_pack_reads() -> None:
    data = _golden("pack")
    entries = read_pack_entries(lambda n: data[len(data) - n :], len(data), "golden pack")
    assert entries == _pack()[2]
    assert list(scan_pack(data, "golden pack")) == entries
    raws = [b"hello", ZSTD_RAW, encode_tree(TREE)]
    for e, raw in zip(entries, raws, strict=True):
        stored = data[e.offset : e.offset + e.stored_len]
        assert decompress(e.codec, stored, e.raw_len, "golden blob") == raw
        assert hash_bytes(raw) == e.blob_id
    assert [e.codec for e in entries] == [CODEC_RAW, CODEC_ZSTD, CODEC_RAW]


def test_golden_segment_decodes() -> None:
    pack_id, pack, entries = _pack()
    assert pack_id.hex() == GOLDEN["pack"][0]
    decoded = decode_segment(_golden("segment"), "golden segment")
    assert list(decoded) == [pack_id]
    size, listed = decoded[pack_id]
    assert size == len(pack)
    assert sorted(listed, key=lambda e: e.blob_id) == sorted(entries, key=lambda e: e.blob_id)
