"""The chunk index: blob id → (pack, offset, lengths, kind, codec).

On the remote the index is a set of immutable **segments** (``index/<id>``), each listing
the blobs of some packs; the in-memory :class:`ChunkIndex` is their union. Segments are a
cache of what the packs already say about themselves, so the whole index can always be
rebuilt by listing every pack's footer (``cas repair``).

Segment layout (little-endian; ``docs/design.md`` is the reference)::

    "CASIDX01"                                         8
    pack_count:u32 entry_count:u32                     8
    pack_count × (pack_id:32 pack_size:u64)            40 each
    entry_count × (blob_id:32 pack_no:u32 offset:u32
                   stored_len:u32 raw_len:u32 kind:u8 codec:u8)   50 each, sorted by blob_id
"""

from __future__ import annotations

import struct
import sys
import threading
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import repeat
from operator import attrgetter

from cas.compression import CODECS
from cas.errors import CorruptObjectError
from cas.ids import ObjectId
from cas.packs import KINDS, MAX_BLOB_SIZE, PackEntry

SEGMENT_MAGIC = b"CASIDX01"
_HEAD = struct.Struct("<8sII")
_PACK = struct.Struct("<32sQ")
_ENTRY = struct.Struct("<32sIIIIBB")


@dataclass(frozen=True, slots=True)
class BlobLocation:
    """Where a blob lives: its pack and its entry in that pack."""

    pack_id: ObjectId
    offset: int
    stored_len: int
    raw_len: int
    kind: int
    codec: int


def encode_segment(packs: dict[ObjectId, tuple[int, list[PackEntry]]]) -> bytes:
    """Encode a segment describing ``packs`` (pack id → (pack size, entries))."""
    pack_ids = sorted(packs)
    numbers = {p: i for i, p in enumerate(pack_ids)}
    # Key on (blob, pack, offset): PackEntry is not orderable, and one pack may hold the
    # same blob twice (a scan of a pack written by a raced or older writer).
    rows = sorted(
        ((e.blob_id, numbers[p], e) for p in pack_ids for e in packs[p][1]),
        key=lambda r: (r[0], r[1], r[2].offset),
    )
    out = [_HEAD.pack(SEGMENT_MAGIC, len(pack_ids), len(rows))]
    out += [_PACK.pack(p, packs[p][0]) for p in pack_ids]
    out += [
        _ENTRY.pack(bid, no, e.offset, e.stored_len, e.raw_len, e.kind, e.codec)
        for bid, no, e in rows
    ]
    return b"".join(out)


def decode_segment(data: bytes, what: str) -> dict[ObjectId, tuple[int, list[PackEntry]]]:
    """Decode a segment into its packs and their entries (checked by
    :func:`parse_segment`, sizes against the data before anything is built).

    Raises:
        CorruptObjectError: anything malformed.
    """
    seg = parse_segment(data, what)
    packs: dict[ObjectId, tuple[int, list[PackEntry]]] = {
        pid: (size, []) for pid, size in seg.packs
    }
    for bid, no, offset, stored, raw, kind, codec in seg.entries:
        packs[seg.packs[no][0]][1].append(
            PackEntry(ObjectId(bid), kind, codec, offset, stored, raw)
        )
    return packs


@dataclass(frozen=True, slots=True)
class ParsedSegment:
    """A checked segment, kept as rows rather than one object per entry (for loading).

    ``entries`` are ``(blob_id, pack_no, offset, stored_len, raw_len, kind, codec)`` with
    ``pack_no`` an index into ``packs``, in the segment's order (sorted by blob id).
    """

    packs: list[tuple[ObjectId, int]]
    entries: list[tuple[bytes, int, int, int, int, int, int]]


def parse_segment(data: bytes, what: str) -> ParsedSegment:
    """Check a segment without building a :class:`PackEntry` per blob: loading the index
    of 100k files is then one C-level unpack and one loop of checks instead of 100k
    objects (:func:`decode_segment` builds them from this).

    Raises:
        CorruptObjectError: anything malformed.
    """
    if len(data) < _HEAD.size:
        raise CorruptObjectError(what, "too short for an index segment")
    magic, n_packs, n_entries = _HEAD.unpack_from(data, 0)
    if magic != SEGMENT_MAGIC:
        raise CorruptObjectError(what, "not an index segment (magic missing)")
    body = _HEAD.size + n_packs * _PACK.size
    if body + n_entries * _ENTRY.size != len(data):
        raise CorruptObjectError(what, "segment length does not match its counts")
    packs = [(ObjectId(pid), size) for pid, size in _PACK.iter_unpack(data[_HEAD.size : body])]
    sizes = [size for _pid, size in packs]
    entries = list(_ENTRY.iter_unpack(data[body:]))
    kinds, codecs = frozenset(KINDS), frozenset(CODECS)
    for _bid, no, offset, stored, raw, kind, codec in entries:
        if no >= n_packs or kind not in kinds or codec not in codecs or raw > MAX_BLOB_SIZE:
            raise CorruptObjectError(what, "segment entry out of range")
        if offset + stored > sizes[no]:
            raise CorruptObjectError(what, "segment entry points past the end of its pack")
    return ParsedSegment(packs, entries)


_ID = 32
# One row per blob, parallel to the sorted ids: pack_no, offset, stored_len, raw_len, kind,
# codec. Offsets and lengths fit in u32 because a pack is smaller than 4 GiB
# (MAX_PACK_SIZE); struct.error guards the rest.
_ROW = struct.Struct("<IIIIBB")
_ROW_SIZE = _ROW.size
_BUCKETS = 1 << 16  # buckets by the first 2 bytes of the id
if array("I").itemsize != 4:  # pragma: no cover - the bucket table holds u32 positions
    raise ImportError("cas.index needs a 4-byte array type 'I'")


class _Frozen:
    """An immutable sorted run of blobs: ``ids`` (n × 32 bytes) and ``rows`` (n × 18 bytes).

    ``buckets[b]`` is the position of the first id whose first two bytes are ≥ ``b``, so a
    lookup searches only among the ids sharing its first two bytes. Never mutated
    once built: ChunkIndex swaps in a new one, and readers hold no lock.
    """

    __slots__ = ("buckets", "ids", "n", "rows")

    def __init__(self, ids: bytes, rows: bytes) -> None:
        self.ids = ids
        self.rows = rows
        self.n = len(ids) // _ID
        if self.n == 0:
            self.buckets = array("I", bytes(4 * (_BUCKETS + 1)))
            return
        # The first two bytes of every id as big-endian u16, in id order (so sorted).
        prefix = bytearray(2 * self.n)
        prefix[0::2] = ids[0::_ID]
        prefix[1::2] = ids[1::_ID]
        pre = array("H", prefix)
        if sys.byteorder == "little":
            pre.byteswap()
        self.buckets = array("I", [bisect_left(pre, b) for b in range(_BUCKETS + 1)])

    def find(self, key: bytes) -> int:
        """Position of ``key``, or -1."""
        if len(key) != _ID:
            return -1
        b = key[0] << 8 | key[1]
        lo = self.buckets[b]
        hi = self.buckets[b + 1]
        ids = self.ids
        while hi - lo > 32:  # only in an index of several million blobs
            mid = (lo + hi) >> 1
            if key < ids[mid * _ID : mid * _ID + _ID]:
                hi = mid
            else:
                lo = mid
        # A short scan in C; a match must start on an id boundary (a miss, -1, does not).
        end = hi * _ID
        p = ids.find(key, lo * _ID, end)
        while p % _ID:
            if p < 0:
                return -1
            p = ids.find(key, p + 1, end)
        return p // _ID

    def insertion_point(self, key: bytes) -> int:
        """First position whose id is ≥ ``key`` (bisect_left)."""
        b = key[0] << 8 | key[1]
        lo, hi = self.buckets[b], self.buckets[b + 1]
        ids = self.ids
        while lo < hi:
            mid = (lo + hi) >> 1
            if ids[mid * _ID : mid * _ID + _ID] < key:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def merged(self, keys: list[bytes], rows: list[bytes]) -> _Frozen:
        """A new run: this one plus ``keys`` (sorted, unique) and their ``rows``.

        A key already here keeps its row here.
        """
        ids, old_rows, size, n = self.ids, self.rows, _ROW.size, self.n
        if n == 0:
            return _Frozen(b"".join(keys), b"".join(rows))
        id_parts: list[bytes] = []
        row_parts: list[bytes] = []
        prev = 0
        for key, row in zip(keys, rows, strict=True):
            p = self.insertion_point(key)
            if p != prev:
                id_parts.append(ids[prev * _ID : p * _ID])
                row_parts.append(old_rows[prev * size : p * size])
                prev = p
            if p < n and ids[p * _ID : p * _ID + _ID] == key:
                continue
            id_parts.append(key)
            row_parts.append(row)
        id_parts.append(ids[prev * _ID :])
        row_parts.append(old_rows[prev * size :])
        return _Frozen(b"".join(id_parts), b"".join(row_parts))


_EMPTY = _Frozen(b"", b"")
_BLOB_ID = attrgetter("blob_id")
_FIELDS = tuple(attrgetter(f) for f in ("offset", "stored_len", "raw_len", "kind", "codec"))


def _rows(pack_no: int, entries: list[PackEntry]) -> Iterator[bytes]:
    """The packed rows of ``entries`` (all in C: no Python frame per entry)."""
    return map(_ROW.pack, repeat(pack_no, len(entries)), *(map(f, entries) for f in _FIELDS))


class ChunkIndex:
    """The in-memory union of index segments; safe to read and add from several threads.

    About 50 bytes per blob: a frozen sorted run (:class:`_Frozen`) plus a small dict of
    the blobs added since it was built (``_recent``, id → packed row). When ``_recent``
    outgrows ``max(MERGE_THRESHOLD, frozen size // MERGE_RATIO)`` it is merged into a new
    frozen run, so merging costs amortized O(1) copies per blob. Writers hold the lock.
    Readers take none: they check ``_recent`` and then ``_frozen``, and a merge publishes
    the new frozen run before it empties ``_recent``, so a blob already added is found.
    """

    # A dict entry costs about 180 bytes, a frozen row 50: merging when ``_recent`` passes
    # an eighth of the frozen run keeps the index near 50-65 bytes per blob.
    MERGE_THRESHOLD = 16384
    MERGE_RATIO = 8

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pack_ids: list[ObjectId] = []
        self._pack_no: dict[ObjectId, int] = {}
        self._pack_sizes: list[int] = []
        self._frozen = _EMPTY
        self._recent: dict[bytes, bytes] = {}

    def __len__(self) -> int:
        with self._lock:
            return self._frozen.n + len(self._recent)

    def __contains__(self, blob_id: object) -> bool:
        if blob_id in self._recent:
            return True
        return isinstance(blob_id, bytes) and self._frozen.find(blob_id) >= 0

    def add_pack(self, pack_id: ObjectId, pack_size: int, entries: Iterable[PackEntry]) -> None:
        """Record a pack and its blobs; a blob already indexed keeps its first location."""
        self.add_segment({pack_id: (pack_size, list(entries))})

    def add_segment(self, packs: dict[ObjectId, tuple[int, list[PackEntry]]]) -> None:
        """Merge a decoded segment (its packs in order; the first location of a blob wins)."""
        with self._lock:
            todo: list[tuple[int, list[PackEntry]]] = []
            for pack_id, (size, entries) in packs.items():
                no = self._pack_no.get(pack_id)
                if no is None:
                    no = self._pack_no[pack_id] = len(self._pack_ids)
                    self._pack_ids.append(pack_id)
                    self._pack_sizes.append(size)
                todo.append((no, entries))
            count = sum(len(entries) for _no, entries in todo)
            frozen, recent = self._frozen, self._recent
            if len(recent) + count <= max(self.MERGE_THRESHOLD, frozen.n // self.MERGE_RATIO):
                for no, entries in todo:
                    for bid, row in zip(map(_BLOB_ID, entries), _rows(no, entries), strict=True):
                        if bid not in recent and frozen.find(bid) < 0:
                            recent[bid] = row
                return
            keys: list[bytes] = []
            rows: list[bytes] = []
            for no, entries in todo:
                keys += map(_BLOB_ID, entries)
                rows += _rows(no, entries)
            self._freeze(keys, rows)

    def add_parsed(self, segments: list[ParsedSegment]) -> None:
        """Merge parsed segments, in order, in one step (the first location of a blob
        wins): one sort for all of them instead of one merge per segment."""
        with self._lock:
            keys: list[bytes] = []
            rows: list[bytes] = []
            pack = _ROW.pack
            for seg in segments:
                numbers = []
                for pack_id, size in seg.packs:
                    no = self._pack_no.get(pack_id)
                    if no is None:
                        no = self._pack_no[pack_id] = len(self._pack_ids)
                        self._pack_ids.append(pack_id)
                        self._pack_sizes.append(size)
                    numbers.append(no)
                keys += [e[0] for e in seg.entries]
                rows += [pack(numbers[e[1]], *e[2:]) for e in seg.entries]
            if keys:
                self._freeze(keys, rows)

    def _freeze(self, keys: list[bytes], rows: list[bytes]) -> None:
        """Merge ``_recent`` and then ``keys`` (in arrival order) into a new frozen run;
        a key seen twice keeps its first row, and one already frozen its frozen row.
        Called with the lock held."""
        keys[:0] = self._recent
        rows[:0] = self._recent.values()
        # Built from the end, so a key seen twice keeps its first row.
        first = dict(zip(reversed(keys), reversed(rows), strict=True))
        del keys[:], rows[:]
        new_keys = sorted(first)
        self._frozen = self._frozen.merged(new_keys, list(map(first.__getitem__, new_keys)))
        self._recent = {}

    def lookup(self, blob_id: bytes) -> BlobLocation | None:
        """Location of a blob, or None when no known pack holds it."""
        row = self._recent.get(blob_id)
        if row is not None:
            no, offset, stored, raw, kind, codec = _ROW.unpack(row)
        else:
            frozen = self._frozen
            i = frozen.find(blob_id)
            if i < 0:
                return None
            no, offset, stored, raw, kind, codec = _ROW.unpack_from(frozen.rows, i * _ROW_SIZE)
        return BlobLocation(self._pack_ids[no], offset, stored, raw, kind, codec)

    def pack_size(self, pack_id: ObjectId) -> int | None:
        """Recorded size of a pack, or None if unknown."""
        no = self._pack_no.get(pack_id)
        return None if no is None else self._pack_sizes[no]

    def iter_packs(self) -> Iterator[tuple[ObjectId, int]]:
        """Every known pack with its size."""
        return iter(list(zip(self._pack_ids, self._pack_sizes, strict=True)))

    def iter_blobs(self) -> Iterator[tuple[ObjectId, BlobLocation]]:
        """Every blob with its location (a snapshot taken at the first ``next``)."""
        with self._lock:
            frozen, recent = self._frozen, list(self._recent.items())
        pack_ids = self._pack_ids
        ids = frozen.ids
        for i, (no, offset, stored, raw, kind, codec) in enumerate(_ROW.iter_unpack(frozen.rows)):
            loc = BlobLocation(pack_ids[no], offset, stored, raw, kind, codec)
            yield ObjectId(ids[i * _ID : i * _ID + _ID]), loc
        for bid, row in recent:
            no, offset, stored, raw, kind, codec = _ROW.unpack(row)
            yield ObjectId(bid), BlobLocation(pack_ids[no], offset, stored, raw, kind, codec)
