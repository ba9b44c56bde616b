"""Index segments (encode/decode and their refusals) and the in-memory ChunkIndex."""

from __future__ import annotations

import struct
import threading

import pytest

from cas.compression import CODEC_RAW, CODEC_ZSTD
from cas.errors import CorruptObjectError
from cas.hashing import hash_bytes
from cas.ids import ObjectId
from cas.index import SEGMENT_MAGIC, BlobLocation, ChunkIndex, decode_segment, encode_segment
from cas.packs import KIND_CHUNK, KIND_TREE, MAX_BLOB_SIZE, PackEntry

P1 = hash_bytes(b"pack 1")
P2 = hash_bytes(b"pack 2")
X, Y, Z = (hash_bytes(s) for s in (b"x", b"y", b"z"))

HEAD = struct.Struct("<8sII")
PACK_ROW = 40
ENTRY_ROW = 50


def _e(
    blob: ObjectId,
    offset: int = 52,
    stored: int = 10,
    raw: int = 20,
    kind: int = KIND_CHUNK,
    codec: int = CODEC_ZSTD,
) -> PackEntry:
    return PackEntry(blob, kind, codec, offset, stored, raw)


def _packs() -> dict[ObjectId, tuple[int, list[PackEntry]]]:
    return {
        P1: (1000, [_e(X), _e(Y, offset=106, kind=KIND_TREE, codec=CODEC_RAW, raw=10)]),
        P2: (500, [_e(Z, offset=52, stored=400, raw=400, codec=CODEC_RAW)]),
    }


def _sorted(packs: dict[ObjectId, tuple[int, list[PackEntry]]]) -> dict[ObjectId, tuple]:  # type: ignore[type-arg]
    return {
        p: (size, sorted(es, key=lambda e: (e.blob_id, e.offset)))
        for p, (size, es) in packs.items()
    }


# ---------------------------------------------------------------------------- segments


def test_segment_round_trip() -> None:
    packs = _packs()
    data = encode_segment(packs)
    assert data.startswith(SEGMENT_MAGIC)
    assert len(data) == HEAD.size + 2 * PACK_ROW + 3 * ENTRY_ROW
    assert _sorted(decode_segment(data, "segment")) == _sorted(packs)


def test_segment_encoding_is_deterministic() -> None:
    packs = _packs()
    reordered = {P2: packs[P2], P1: (packs[P1][0], list(reversed(packs[P1][1])))}
    assert encode_segment(packs) == encode_segment(reordered)


def test_empty_segment() -> None:
    data = encode_segment({})
    assert data == HEAD.pack(SEGMENT_MAGIC, 0, 0)
    assert decode_segment(data, "s") == {}


def test_pack_without_entries_is_kept() -> None:
    assert decode_segment(encode_segment({P1: (32, [])}), "s") == {P1: (32, [])}


def test_same_blob_twice_in_one_pack() -> None:
    """A scan of a pack from a raced writer may list a blob twice; that must encode."""
    packs = {P1: (1000, [_e(X, offset=200), _e(X, offset=52)])}
    assert _sorted(decode_segment(encode_segment(packs), "s")) == _sorted(packs)


@pytest.mark.parametrize("data", [b"", b"CASIDX0", SEGMENT_MAGIC + b"\x00" * 7])
def test_too_short(data: bytes) -> None:
    with pytest.raises(CorruptObjectError, match="too short") as ei:
        decode_segment(data, "index segment ab12")
    assert ei.value.what == "index segment ab12"


def test_bad_magic() -> None:
    data = encode_segment(_packs())
    with pytest.raises(CorruptObjectError, match="magic missing"):
        decode_segment(b"CASIDX02" + data[8:], "s")


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d[:-1],
        lambda d: d + b"\x00",
        lambda d: d[:-ENTRY_ROW],
        lambda d: HEAD.pack(SEGMENT_MAGIC, 3, 3) + d[HEAD.size :],
        lambda d: HEAD.pack(SEGMENT_MAGIC, 2, 2**32 - 1) + d[HEAD.size :],
    ],
    ids=["short-by-one", "long-by-one", "entry-missing", "pack-count", "huge-count"],
)
def test_length_must_match_the_counts(mutate) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(CorruptObjectError, match="length does not match"):
        decode_segment(mutate(encode_segment(_packs())), "s")


def _one_entry_segment(
    pack_no: int = 0,
    offset: int = 52,
    stored: int = 10,
    raw: int = 20,
    kind: int = 0,
    codec: int = 0,
    pack_size: int = 100,
) -> bytes:
    return (
        HEAD.pack(SEGMENT_MAGIC, 1, 1)
        + struct.pack("<32sQ", P1, pack_size)
        + struct.pack("<32sIIIIBB", X, pack_no, offset, stored, raw, kind, codec)
    )


def test_hand_made_segment_decodes() -> None:
    assert decode_segment(_one_entry_segment(), "s") == {
        P1: (100, [PackEntry(X, 0, 0, 52, 10, 20)])
    }


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"pack_no": 1}, "out of range"),
        ({"kind": 2}, "out of range"),
        ({"codec": 7}, "out of range"),
        ({"raw": MAX_BLOB_SIZE + 1}, "out of range"),
        ({"offset": 95, "stored": 6}, "past the end"),
        ({"offset": 2**32 - 1, "stored": 2**32 - 1}, "past the end"),
    ],
)
def test_entry_out_of_range(fields: dict[str, int], reason: str) -> None:
    with pytest.raises(CorruptObjectError, match=reason):
        decode_segment(_one_entry_segment(**fields), "s")


def test_entry_ending_exactly_at_the_pack_end_is_fine() -> None:
    decode_segment(_one_entry_segment(offset=90, stored=10), "s")


# ---------------------------------------------------------------------------- ChunkIndex


def test_add_and_lookup() -> None:
    index = ChunkIndex()
    assert len(index) == 0
    assert index.lookup(X) is None
    index.add_segment(_packs())
    assert len(index) == 3
    assert X in index
    assert hash_bytes(b"nope") not in index
    assert index.lookup(Y) == BlobLocation(P1, 106, 10, 10, KIND_TREE, CODEC_RAW)
    assert index.lookup(Z) == BlobLocation(P2, 52, 400, 400, KIND_CHUNK, CODEC_RAW)
    assert index.pack_size(P1) == 1000
    assert index.pack_size(hash_bytes(b"other")) is None
    assert sorted(index.iter_packs()) == sorted([(P1, 1000), (P2, 500)])
    blobs = dict(index.iter_blobs())
    assert set(blobs) == {X, Y, Z}
    assert all(isinstance(b, ObjectId) for b in blobs)
    assert blobs[X] == index.lookup(X)


def test_first_location_wins() -> None:
    index = ChunkIndex()
    index.add_pack(P1, 1000, [_e(X, offset=60)])
    index.add_pack(P2, 500, [_e(X, offset=70), _e(Y)])
    loc = index.lookup(X)
    assert loc is not None
    assert (loc.pack_id, loc.offset) == (P1, 60)
    assert len(index) == 2
    # ...also within one pack.
    index.add_pack(P1, 1000, [_e(Z, offset=80), _e(Z, offset=90)])
    assert index.lookup(Z).offset == 80  # type: ignore[union-attr]


def test_adding_a_pack_twice_records_it_once() -> None:
    index = ChunkIndex()
    index.add_pack(P1, 1000, [_e(X)])
    index.add_pack(P1, 1000, [_e(Y)])
    assert list(index.iter_packs()) == [(P1, 1000)]
    assert len(index) == 2


def test_lookup_accepts_plain_bytes() -> None:
    index = ChunkIndex()
    index.add_pack(P1, 1000, [_e(X)])
    assert index.lookup(bytes(X)) is not None


def test_concurrent_adds() -> None:
    index = ChunkIndex()
    packs = [hash_bytes(f"p{i}".encode()) for i in range(8)]

    def add(i: int) -> None:
        for j in range(200):
            index.add_pack(packs[i], 1 << 20, [_e(hash_bytes(f"{i}-{j}".encode()))])

    threads = [threading.Thread(target=add, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(index) == 1600
    assert sorted(p for p, _ in index.iter_packs()) == sorted(packs)
