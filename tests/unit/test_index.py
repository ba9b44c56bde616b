"""Index segments (encode/decode and their refusals) and the in-memory ChunkIndex."""

from __future__ import annotations

import gc
import itertools
import os
import random
import struct
import sys
import threading
import tracemalloc

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from cas.compression import CODEC_RAW, CODEC_ZSTD
from cas.errors import CorruptObjectError
from cas.hashing import hash_bytes
from cas.ids import ObjectId
from cas.index import (
    SEGMENT_MAGIC,
    BlobLocation,
    ChunkIndex,
    decode_segment,
    encode_segment,
    parse_segment,
)
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


def _parsed(data: bytes) -> dict[ObjectId, tuple[int, list[PackEntry]]]:
    """parse_segment's result in decode_segment's shape."""
    seg = parse_segment(data, "s")
    out: dict[ObjectId, tuple[int, list[PackEntry]]] = {p: (n, []) for p, n in seg.packs}
    for bid, no, offset, stored, raw, kind, codec in seg.entries:
        out[seg.packs[no][0]][1].append(PackEntry(ObjectId(bid), kind, codec, offset, stored, raw))
    return out


_SEGMENTS = {
    "two packs": encode_segment(_packs()),
    "empty": encode_segment({}),
    "pack without entries": encode_segment({P1: (32, [])}),
    "blob twice": encode_segment({P1: (1000, [_e(X, offset=200), _e(X, offset=52)])}),
    "at the end": _one_entry_segment(offset=90, stored=10),
    "too short": SEGMENT_MAGIC + b"\x00" * 7,
    "bad magic": b"CASIDX02" + encode_segment(_packs())[8:],
    "long by one": encode_segment(_packs()) + b"\x00",
    "huge count": HEAD.pack(SEGMENT_MAGIC, 2, 2**32 - 1) + encode_segment(_packs())[HEAD.size :],
    "pack no": _one_entry_segment(pack_no=1),
    "kind": _one_entry_segment(kind=2),
    "codec": _one_entry_segment(codec=7),
    "raw": _one_entry_segment(raw=MAX_BLOB_SIZE + 1),
    "past the end": _one_entry_segment(offset=95, stored=6),
}


@pytest.mark.parametrize("name", sorted(_SEGMENTS))
def test_parse_segment_agrees_with_decode_segment(name: str) -> None:
    """The loader's fast path accepts and refuses exactly what the decoder does."""
    data = _SEGMENTS[name]
    expected: object
    try:
        expected = decode_segment(data, "s")
    except CorruptObjectError as exc:
        expected = exc.reason
    try:
        got: object = _parsed(data)
    except CorruptObjectError as exc:
        got = exc.reason
    assert got == expected


def test_parsed_segments_load_like_decoded_ones() -> None:
    """add_parsed (one bulk merge) and add_segment (one at a time) build the same index,
    first location winning across segments and over what was already there."""
    first = encode_segment({P1: (1000, [_e(X, offset=60), _e(Y, offset=100)])})
    second = encode_segment({P2: (500, [_e(X, offset=70), _e(Z)])})
    one_by_one, bulk = ChunkIndex(), ChunkIndex()
    for index in (one_by_one, bulk):
        index.add_pack(P2, 500, [_e(Y, offset=300)])  # already known: keeps its row
    one_by_one.add_segment(decode_segment(first, "a"))
    one_by_one.add_segment(decode_segment(second, "b"))
    bulk.add_parsed([parse_segment(first, "a"), parse_segment(second, "b")])
    assert sorted(bulk.iter_blobs()) == sorted(one_by_one.iter_blobs())
    assert bulk.lookup(X) == BlobLocation(P1, 60, 10, 20, KIND_CHUNK, CODEC_ZSTD)
    assert bulk.lookup(Y) == BlobLocation(P2, 300, 10, 20, KIND_CHUNK, CODEC_ZSTD)
    assert sorted(bulk.iter_packs()) == sorted([(P1, 1000), (P2, 500)])
    bulk.add_parsed([])
    assert len(bulk) == 3


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


def test_empty_index() -> None:
    index = ChunkIndex()
    assert len(index) == 0
    assert X not in index
    assert index.lookup(X) is None
    assert list(index.iter_blobs()) == []
    assert list(index.iter_packs()) == []


def test_odd_keys_are_absent() -> None:
    index = ChunkIndex()
    index.MERGE_THRESHOLD = 1
    index.add_pack(P1, 1000, [_e(X), _e(Y), _e(Z)])  # merged into the frozen run
    assert index.lookup(b"") is None
    assert index.lookup(bytes(X)[:31]) is None
    assert bytes(X) + b"\x00" not in index
    assert 42 not in index
    assert "x" not in index


# Ids in one bucket (first two bytes 0505) where an id also appears across the boundary
# of two neighbours: lookup must only match on a 32-byte boundary.
K = bytes([5] * 32)
LEFT = bytes([5, 5] + [0] * 14 + [5] * 16)  # its second half + RIGHT's first half == K
RIGHT = bytes([5] * 16 + [9] * 16)


@pytest.mark.parametrize("with_k", [False, True])
def test_match_must_be_aligned(with_k: bool) -> None:
    index = ChunkIndex()
    index.MERGE_THRESHOLD = 1
    ids = [LEFT, RIGHT] + ([K] if with_k else [])
    index.add_pack(P1, 1000, [_e(ObjectId(b), offset=60 + i) for i, b in enumerate(ids)])
    assert index._frozen.n == len(ids)  # the frozen run is what is being tested
    assert (K in index) is with_k
    if with_k:
        assert index.lookup(K) == BlobLocation(P1, 62, 10, 20, KIND_CHUNK, CODEC_ZSTD)
    assert index.lookup(LEFT).offset == 60  # type: ignore[union-attr]
    assert index.lookup(RIGHT).offset == 61  # type: ignore[union-attr]


def test_merges_crossing_the_threshold() -> None:
    """The default threshold, crossed by small packs and then by one big segment."""
    index = ChunkIndex()
    blobs = [ObjectId(os.urandom(32)) for _ in range(3 * ChunkIndex.MERGE_THRESHOLD)]
    packs = [hash_bytes(b"pack %d" % i) for i in range(len(blobs) // 1000 + 1)]
    half = len(blobs) // 2
    for n, start in enumerate(range(0, half, 1000)):
        index.add_pack(
            packs[n],
            1 << 30,
            [_e(b, offset=i) for i, b in enumerate(blobs[start : min(start + 1000, half)])],
        )
    assert index._frozen.n > 0
    big = {packs[-1]: (1 << 30, [_e(b, offset=7) for b in blobs[half - 10 :]])}
    index.add_segment(big)  # a bulk merge; its first 10 blobs are already indexed
    assert len(index) == len(blobs)
    assert not index._recent
    for i in (0, 999, 1000, half - 1):
        assert index.lookup(blobs[i]) == BlobLocation(packs[i // 1000], i % 1000, 10, 20, 0, 1)
    for b in blobs[half:]:
        assert index.lookup(b) == BlobLocation(packs[-1], 7, 10, 20, 0, 1)
    assert dict(index.iter_blobs()) == {b: index.lookup(b) for b in blobs}


# ------------------------------------------------------------------ ChunkIndex vs a dict

# Ids made of four 8-byte blocks of 00, 05 or 09: many share their first two bytes, and
# many appear misaligned inside the concatenation of two others.
POOL = [
    ObjectId(b"".join(bytes([v]) * 8 for v in c)) for c in itertools.product([0, 5, 9], repeat=4)
] + [hash_bytes(b"%d" % i) for i in range(8)]
PACKS = [hash_bytes(b"model pack %d" % i) for i in range(4)]

entries = st.lists(
    st.tuples(st.sampled_from(POOL), st.integers(0, 2**32 - 1), st.integers(0, 255)),
    max_size=12,
)


class IndexMachine(RuleBasedStateMachine):
    """ChunkIndex against a dict model: first location wins, merges at a tiny threshold."""

    def __init__(self) -> None:
        super().__init__()
        self.index = ChunkIndex()
        self.blobs: dict[bytes, BlobLocation] = {}
        self.sizes: dict[ObjectId, int] = {}

    @rule(threshold=st.sampled_from([1, 2, 5, 16384]), ratio=st.sampled_from([1, 2, 8]))
    def tune(self, threshold: int, ratio: int) -> None:
        self.index.MERGE_THRESHOLD = threshold
        self.index.MERGE_RATIO = ratio

    def _model_add(self, pack: ObjectId, size: int, es: list[PackEntry]) -> None:
        self.sizes.setdefault(pack, size)
        for e in es:
            self.blobs.setdefault(
                e.blob_id, BlobLocation(pack, e.offset, e.stored_len, e.raw_len, e.kind, e.codec)
            )

    @staticmethod
    def _entries(rows: list[tuple[ObjectId, int, int]]) -> list[PackEntry]:
        return [PackEntry(b, i % 2, (i // 2) % 2, off, i, i + 1) for b, off, i in rows]

    @rule(pack=st.sampled_from(PACKS), size=st.integers(1, 2**40), rows=entries)
    def add_pack(self, pack: ObjectId, size: int, rows: list[tuple[ObjectId, int, int]]) -> None:
        es = self._entries(rows)
        self.index.add_pack(pack, size, iter(es))
        self._model_add(pack, size, es)

    @rule(
        packs=st.dictionaries(
            st.sampled_from(PACKS), st.tuples(st.integers(1, 2**40), entries), max_size=3
        )
    )
    def add_segment(
        self, packs: dict[ObjectId, tuple[int, list[tuple[ObjectId, int, int]]]]
    ) -> None:
        seg = {p: (size, self._entries(rows)) for p, (size, rows) in packs.items()}
        self.index.add_segment(seg)
        for p, (size, es) in seg.items():
            self._model_add(p, size, es)

    @rule(blob=st.sampled_from(POOL))
    def lookup(self, blob: ObjectId) -> None:
        assert self.index.lookup(blob) == self.blobs.get(blob)
        assert self.index.lookup(bytes(blob)) == self.blobs.get(blob)
        assert (blob in self.index) is (blob in self.blobs)

    @precondition(lambda self: len(self.blobs) > 0)
    @rule()
    def iterate(self) -> None:
        got = list(self.index.iter_blobs())
        assert len(got) == len(self.blobs)
        assert all(type(b) is ObjectId for b, _loc in got)
        assert dict(got) == self.blobs

    @invariant()
    def same_size_and_packs(self) -> None:
        assert len(self.index) == len(self.blobs)
        assert dict(self.index.iter_packs()) == self.sizes
        for p in PACKS:
            assert self.index.pack_size(p) == self.sizes.get(p)


TestIndexMachine = IndexMachine.TestCase
TestIndexMachine.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)


# ---------------------------------------------------------------------- threads, memory


def test_readers_never_see_a_wrong_location() -> None:
    """Lock-free lookups while a writer adds and merges: a location, if any, is right."""
    index = ChunkIndex()
    index.MERGE_THRESHOLD = 50
    index.MERGE_RATIO = 2
    batches = [[ObjectId(os.urandom(32)) for _ in range(20)] for _ in range(300)]
    packs = [hash_bytes(b"p%d" % i) for i in range(len(batches))]
    every = [(b, n, j) for n, batch in enumerate(batches) for j, b in enumerate(batch)]
    added = [0]  # batches fully added: their blobs must be found
    failures: list[str] = []
    stop = threading.Event()

    def read(seed: int) -> None:
        rnd = random.Random(seed)
        while not stop.is_set():
            done = added[0]
            blob, n, j = rnd.choice(every)
            loc, there = index.lookup(blob), blob in index
            if loc is not None and loc != BlobLocation(packs[n], j, 10, 20, 0, 1):
                failures.append(f"wrong location {loc} for batch {n}")
            if n < done and (loc is None or not there):
                failures.append(f"batch {n} added but not found")

    readers = [threading.Thread(target=read, args=(s,)) for s in range(3)]
    for t in readers:
        t.start()
    try:
        for n, batch in enumerate(batches):
            index.add_pack(packs[n], 1 << 20, [_e(b, offset=j) for j, b in enumerate(batch)])
            added[0] = n + 1
    finally:
        stop.set()
        for t in readers:
            t.join()
    assert failures == []
    assert len(index) == 6000


def _deep_size(root: object) -> int:
    """Bytes of every object reachable from ``root`` (classes excluded)."""
    seen: set[int] = set()
    stack, total = [root], 0
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, type):
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        stack.extend(gc.get_referents(obj))
    return total


def _build(count: int, per_pack: int = 4000) -> ChunkIndex:
    raw = os.urandom(32 * count)
    index = ChunkIndex()
    for p, start in enumerate(range(0, count, per_pack)):
        es = [
            _e(ObjectId(raw[i * 32 : i * 32 + 32]), offset=i)
            for i in range(start, start + per_pack)
        ]
        index.add_segment({hash_bytes(b"%d" % p): (1 << 32, es)})
    return index


def test_memory_per_blob() -> None:
    """About 50 bytes a blob (a dict of tuples took about 250): sizes, not time."""
    index = _build(200_000)
    assert len(index) == 200_000
    per_blob = _deep_size(index) / len(index)
    assert per_blob < 80, f"{per_blob:.1f} bytes per blob"


@pytest.mark.slow
def test_memory_per_blob_traced() -> None:
    """The same, counted by tracemalloc (slow: it traces every allocation)."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        index = _build(200_000)
        used = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert used / len(index) < 80, f"{used / len(index):.1f} bytes per blob"
