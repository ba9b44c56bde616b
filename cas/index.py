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
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

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
    """Decode a segment; sizes are checked against the data before anything is built.

    Raises:
        CorruptObjectError: anything malformed.
    """
    if len(data) < _HEAD.size:
        raise CorruptObjectError(what, "too short for an index segment")
    magic, n_packs, n_entries = _HEAD.unpack_from(data, 0)
    if magic != SEGMENT_MAGIC:
        raise CorruptObjectError(what, "not an index segment (magic missing)")
    if _HEAD.size + n_packs * _PACK.size + n_entries * _ENTRY.size != len(data):
        raise CorruptObjectError(what, "segment length does not match its counts")
    packs: dict[ObjectId, tuple[int, list[PackEntry]]] = {}
    order: list[ObjectId] = []
    pos = _HEAD.size
    for _ in range(n_packs):
        pid, size = _PACK.unpack_from(data, pos)
        pos += _PACK.size
        oid = ObjectId(pid)
        order.append(oid)
        packs[oid] = (size, [])
    for _ in range(n_entries):
        bid, no, offset, stored, raw, kind, codec = _ENTRY.unpack_from(data, pos)
        pos += _ENTRY.size
        if no >= n_packs or kind not in KINDS or codec not in CODECS or raw > MAX_BLOB_SIZE:
            raise CorruptObjectError(what, "segment entry out of range")
        size, entries = packs[order[no]]
        if offset + stored > size:
            raise CorruptObjectError(what, "segment entry points past the end of its pack")
        entries.append(PackEntry(ObjectId(bid), kind, codec, offset, stored, raw))
    return packs


class ChunkIndex:
    """The in-memory union of index segments; safe to read and add from several threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pack_ids: list[ObjectId] = []
        self._pack_no: dict[ObjectId, int] = {}
        self._pack_sizes: list[int] = []
        # blob id → (pack_no, offset, stored_len, raw_len, kind, codec)
        self._blobs: dict[bytes, tuple[int, int, int, int, int, int]] = {}

    def __len__(self) -> int:
        return len(self._blobs)

    def __contains__(self, blob_id: object) -> bool:
        return blob_id in self._blobs

    def add_pack(self, pack_id: ObjectId, pack_size: int, entries: Iterable[PackEntry]) -> None:
        """Record a pack and its blobs; a blob already indexed keeps its first location."""
        with self._lock:
            no = self._pack_no.get(pack_id)
            if no is None:
                no = self._pack_no[pack_id] = len(self._pack_ids)
                self._pack_ids.append(pack_id)
                self._pack_sizes.append(pack_size)
            for e in entries:
                self._blobs.setdefault(
                    e.blob_id, (no, e.offset, e.stored_len, e.raw_len, e.kind, e.codec)
                )

    def add_segment(self, packs: dict[ObjectId, tuple[int, list[PackEntry]]]) -> None:
        """Merge a decoded segment."""
        for pack_id, (size, entries) in packs.items():
            self.add_pack(pack_id, size, entries)

    def lookup(self, blob_id: bytes) -> BlobLocation | None:
        """Location of a blob, or None when no known pack holds it."""
        row = self._blobs.get(blob_id)
        if row is None:
            return None
        no, offset, stored, raw, kind, codec = row
        return BlobLocation(self._pack_ids[no], offset, stored, raw, kind, codec)

    def pack_size(self, pack_id: ObjectId) -> int | None:
        """Recorded size of a pack, or None if unknown."""
        no = self._pack_no.get(pack_id)
        return None if no is None else self._pack_sizes[no]

    def iter_packs(self) -> Iterator[tuple[ObjectId, int]]:
        """Every known pack with its size."""
        return iter(list(zip(self._pack_ids, self._pack_sizes, strict=True)))

    def iter_blobs(self) -> Iterator[tuple[ObjectId, BlobLocation]]:
        """Every blob with its location."""
        for bid in list(self._blobs):
            loc = self.lookup(bid)
            if loc is not None:
                yield ObjectId(bid), loc
