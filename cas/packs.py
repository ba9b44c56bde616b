"""Packs: the containers of chunks and tree blobs on the remote.

A pack holds blobs (file chunks and encoded trees), each stored zstd-compressed or raw,
and describes itself twice: every blob is preceded by a small header carrying its id and
sizes (so a forward scan can rebuild the index even when the footer is damaged), and the
pack ends with a footer table of every blob plus a fixed-size trailer (so one range read
of the tail lists the pack). A pack is named by the BLAKE3 of all its bytes.

Layout (integers little-endian; ``docs/design.md`` is the reference)::

    "CASPACK1"                                   8  magic + format version
    blob*:  "CB" kind:u8 codec:u8 raw_len:u32 stored_len:u32 id:32     44  blob header
            stored bytes                                             stored_len
    footer: entry* with entry = id:32 kind:u8 codec:u8 0:u16 offset:u32
            stored_len:u32 raw_len:u32                               48 each
    trailer: count:u32 footer_len:u32 footer_check:8 "CASPEND1"      24

``offset`` is where the blob's stored bytes start; ``footer_check`` is the first 8 bytes
of the BLAKE3 of the footer table.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from cas.compression import CODECS
from cas.errors import CorruptObjectError, HashMismatchError
from cas.hashing import hash_bytes
from cas.ids import ObjectId

PACK_MAGIC = b"CASPACK1"
BLOB_MAGIC = b"CB"
END_MAGIC = b"CASPEND1"
BLOB_HEADER = struct.Struct("<2sBBII32s")
FOOTER_ENTRY = struct.Struct("<32sBBHIII")
TRAILER = struct.Struct("<II8s8s")
MAX_PACK_SIZE = (1 << 32) - 1
MAX_BLOB_SIZE = 64 << 20

KIND_CHUNK = 0
KIND_TREE = 1
KINDS = (KIND_CHUNK, KIND_TREE)

# How much of a pack's tail to read in one go: enough for the footer of a pack of up to
# ~1,300 blobs, so a typical pack is listed with one range read.
TAIL_GUESS = 64 * 1024


@dataclass(frozen=True, slots=True)
class PackEntry:
    """Where one blob sits inside a pack."""

    blob_id: ObjectId
    kind: int
    codec: int
    offset: int
    stored_len: int
    raw_len: int


class PackWriter:
    """Lays out blobs into one pack.

    A pack is written front to back: :meth:`take` hands over the bytes laid out since the
    last call (so a caller can stream them to the store while the pack fills) and
    :meth:`finish` the rest with the footer and trailer. :meth:`seal` does both at once
    and returns the whole pack. Blobs are kept as the parts they arrive in, never copied
    into a growing buffer.
    """

    def __init__(self) -> None:
        self._parts: list[bytes] = [PACK_MAGIC]
        self._unsent = len(PACK_MAGIC)
        self._size = len(PACK_MAGIC)
        self._entries: list[PackEntry] = []

    @property
    def size(self) -> int:
        """Bytes so far (without the footer)."""
        return self._size

    @property
    def count(self) -> int:
        """Blobs so far."""
        return len(self._entries)

    @property
    def unsent(self) -> int:
        """Bytes laid out since the last :meth:`take`."""
        return self._unsent

    def add(self, blob_id: ObjectId, kind: int, codec: int, raw_len: int, stored: bytes) -> None:
        """Append one blob (already compressed with ``codec``)."""
        if len(stored) > MAX_BLOB_SIZE or raw_len > MAX_BLOB_SIZE:
            raise ValueError("blob too large for a pack")
        self._parts.append(BLOB_HEADER.pack(BLOB_MAGIC, kind, codec, raw_len, len(stored), blob_id))
        offset = self._size + BLOB_HEADER.size
        self._parts.append(stored)
        self._size = offset + len(stored)
        self._unsent += BLOB_HEADER.size + len(stored)
        self._entries.append(PackEntry(blob_id, kind, codec, offset, len(stored), raw_len))

    def take(self) -> list[bytes]:
        """The pack's next bytes: everything laid out since the last call, in order."""
        parts, self._parts, self._unsent = self._parts, [], 0
        return parts

    def finish(self) -> tuple[list[bytes], int, list[PackEntry]]:
        """The pack's last bytes (the unsent blobs, the footer and the trailer), its total
        size and its entries. Nothing may be added afterwards."""
        footer = b"".join(
            FOOTER_ENTRY.pack(e.blob_id, e.kind, e.codec, 0, e.offset, e.stored_len, e.raw_len)
            for e in self._entries
        )
        check = hash_bytes(footer)[:8]
        trailer = TRAILER.pack(len(self._entries), len(footer), check, END_MAGIC)
        total = self._size + len(footer) + len(trailer)
        if total > MAX_PACK_SIZE:
            raise ValueError("pack larger than 4 GiB")
        parts = self.take()
        parts += (footer, trailer)
        return parts, total, list(self._entries)

    def seal(self) -> tuple[ObjectId, bytes, list[PackEntry]]:
        """Finish a pack nothing was taken from: returns ``(pack_id, pack_bytes, entries)``."""
        if self._size != self._unsent:
            raise ValueError("part of this pack was taken already")
        parts, _total, entries = self.finish()
        data = b"".join(parts)
        return hash_bytes(data), data, entries


def read_pack_entries(
    read_tail: Callable[[int], bytes], pack_size: int, what: str
) -> list[PackEntry]:
    """List a pack from its footer.

    Args:
        read_tail: returns the last ``n`` bytes of the pack.
        pack_size: the pack's total size (from a listing or the index).
        what: a name for error messages.

    Raises:
        CorruptObjectError: damaged trailer or footer, or entries outside the pack.
    """
    min_size = len(PACK_MAGIC) + TRAILER.size
    if pack_size < min_size:
        raise CorruptObjectError(what, f"{pack_size} bytes is too small for a pack")
    tail = read_tail(min(pack_size, TAIL_GUESS))
    count, footer_len, check, magic = TRAILER.unpack_from(tail, len(tail) - TRAILER.size)
    if magic != END_MAGIC:
        raise CorruptObjectError(what, "pack trailer magic missing (truncated pack?)")
    if footer_len != count * FOOTER_ENTRY.size or footer_len + min_size > pack_size:
        raise CorruptObjectError(what, "pack footer length does not fit the pack")
    need = footer_len + TRAILER.size
    if need > len(tail):
        tail = read_tail(need)
    footer = tail[len(tail) - need : len(tail) - TRAILER.size]
    if hash_bytes(footer)[:8] != check:
        raise CorruptObjectError(what, "pack footer checksum mismatch")
    body_end = pack_size - need
    entries = []
    for i in range(count):
        blob_id, kind, codec, _pad, offset, stored_len, raw_len = FOOTER_ENTRY.unpack_from(
            footer, i * FOOTER_ENTRY.size
        )
        if (
            kind not in KINDS
            or codec not in CODECS
            or raw_len > MAX_BLOB_SIZE
            or offset < len(PACK_MAGIC) + BLOB_HEADER.size
            or offset + stored_len > body_end
        ):
            raise CorruptObjectError(what, f"pack footer entry {i} is invalid")
        entries.append(PackEntry(ObjectId(blob_id), kind, codec, offset, stored_len, raw_len))
    return entries


def scan_pack(data: bytes, what: str) -> Iterator[PackEntry]:
    """Walk a pack's blob headers from the start (recovery path; footer not needed).

    Stops at the first byte that is not a blob header (the footer, or damage).

    Raises:
        CorruptObjectError: the pack does not start with the pack magic.
    """
    if not data.startswith(PACK_MAGIC):
        raise CorruptObjectError(what, "not a cas pack (magic missing)")
    pos = len(PACK_MAGIC)
    while pos + BLOB_HEADER.size <= len(data):
        magic, kind, codec, raw_len, stored_len, blob_id = BLOB_HEADER.unpack_from(data, pos)
        start = pos + BLOB_HEADER.size
        if (
            magic != BLOB_MAGIC
            or kind not in KINDS
            or codec not in CODECS
            or raw_len > MAX_BLOB_SIZE
            or start + stored_len > len(data)
        ):
            return
        yield PackEntry(ObjectId(blob_id), kind, codec, start, stored_len, raw_len)
        pos = start + stored_len


def verify_pack_id(data: bytes, pack_id: ObjectId, what: str) -> None:
    """Raise unless ``data`` hashes to ``pack_id``."""
    actual = hash_bytes(data)
    if actual != pack_id:
        raise HashMismatchError(what, pack_id.hex(), actual.hex())


__all__ = [
    "KIND_CHUNK",
    "KIND_TREE",
    "PackEntry",
    "PackWriter",
    "read_pack_entries",
    "scan_pack",
    "verify_pack_id",
]
