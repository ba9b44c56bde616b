"""Packs: writer, footer reader, forward scan, and every way a pack can be refused."""

from __future__ import annotations

import pytest

from cas.compression import CODEC_RAW, CODEC_ZSTD, compress, decompress
from cas.errors import CorruptObjectError, HashMismatchError
from cas.hashing import hash_bytes
from cas.packs import (
    BLOB_HEADER,
    END_MAGIC,
    FOOTER_ENTRY,
    KIND_CHUNK,
    KIND_TREE,
    MAX_BLOB_SIZE,
    PACK_MAGIC,
    TAIL_GUESS,
    TRAILER,
    PackEntry,
    PackWriter,
    read_pack_entries,
    scan_pack,
    verify_pack_id,
)

BLOBS = [
    (KIND_CHUNK, b"first chunk"),
    (KIND_CHUNK, b"compressible " * 40),
    (KIND_TREE, b"a tree blob"),
    (KIND_CHUNK, b""),
]


def _pack(blobs: list[tuple[int, bytes]] = BLOBS) -> tuple[bytes, list[PackEntry]]:
    w = PackWriter()
    for kind, raw in blobs:
        codec, stored = compress(raw, 3)
        w.add(hash_bytes(raw), kind, codec, len(raw), stored)
    pack_id, data, entries = w.seal()
    assert pack_id == hash_bytes(data)
    return data, entries


def _reader(data: bytes, calls: list[int] | None = None):  # type: ignore[no-untyped-def]
    def read_tail(n: int) -> bytes:
        if calls is not None:
            calls.append(n)
        assert 0 < n <= len(data)
        return data[len(data) - n :]

    return read_tail


def _entries(data: bytes) -> list[PackEntry]:
    return read_pack_entries(_reader(data), len(data), "pack p")


def test_writer_layout() -> None:
    data, entries = _pack()
    assert data.startswith(PACK_MAGIC)
    assert data.endswith(END_MAGIC)
    first = entries[0]
    assert first.offset == len(PACK_MAGIC) + BLOB_HEADER.size
    assert data[first.offset : first.offset + first.stored_len] == b"first chunk"
    assert [e.codec for e in entries] == [CODEC_RAW, CODEC_ZSTD, CODEC_RAW, CODEC_RAW]
    body = len(PACK_MAGIC) + sum(BLOB_HEADER.size + e.stored_len for e in entries)
    assert len(data) == body + len(entries) * FOOTER_ENTRY.size + TRAILER.size


def test_writer_counts_and_size() -> None:
    w = PackWriter()
    assert (w.count, w.size) == (0, len(PACK_MAGIC))
    w.add(hash_bytes(b"x"), KIND_CHUNK, CODEC_RAW, 1, b"x")
    assert (w.count, w.size) == (1, len(PACK_MAGIC) + BLOB_HEADER.size + 1)


def test_writer_refuses_oversized_blobs() -> None:
    with pytest.raises(ValueError, match="too large"):
        PackWriter().add(hash_bytes(b"x"), KIND_CHUNK, CODEC_ZSTD, MAX_BLOB_SIZE + 1, b"x")


def test_footer_lists_every_entry() -> None:
    data, entries = _pack()
    assert _entries(data) == entries
    for (kind, raw), e in zip(BLOBS, entries, strict=True):
        assert (e.blob_id, e.kind, e.raw_len) == (hash_bytes(raw), kind, len(raw))
        stored = data[e.offset : e.offset + e.stored_len]
        assert decompress(e.codec, stored, e.raw_len, "blob") == raw


def test_empty_pack() -> None:
    _, data, entries = PackWriter().seal()
    assert entries == []
    assert len(data) == len(PACK_MAGIC) + TRAILER.size
    assert _entries(data) == []
    assert list(scan_pack(data, "p")) == []


def test_small_pack_is_listed_with_one_read() -> None:
    data, _ = _pack()
    calls: list[int] = []
    read_pack_entries(_reader(data, calls), len(data), "p")
    assert calls == [len(data)]


def test_large_footer_takes_a_second_read() -> None:
    n = TAIL_GUESS // FOOTER_ENTRY.size + 10
    data, entries = _pack([(KIND_CHUNK, i.to_bytes(4, "little")) for i in range(n)])
    calls: list[int] = []
    assert read_pack_entries(_reader(data, calls), len(data), "p") == entries
    assert calls == [TAIL_GUESS, n * FOOTER_ENTRY.size + TRAILER.size]


def test_scan_finds_the_same_entries_without_the_footer() -> None:
    data, entries = _pack()
    assert list(scan_pack(data, "p")) == entries
    body_end = len(data) - len(entries) * FOOTER_ENTRY.size - TRAILER.size
    assert list(scan_pack(data[:body_end], "p")) == entries


def test_scan_of_a_truncated_pack_yields_the_whole_blobs() -> None:
    data, entries = _pack()
    cut = entries[2].offset + 1  # inside the third blob
    assert list(scan_pack(data[:cut], "p")) == entries[:2]


def test_scan_stops_at_a_damaged_blob_header() -> None:
    data, entries = _pack()
    header_of_second = entries[1].offset - BLOB_HEADER.size
    damaged = data[:header_of_second] + b"XX" + data[header_of_second + 2 :]
    assert list(scan_pack(damaged, "p")) == entries[:1]


@pytest.mark.parametrize("data", [b"", b"CASPACK", b"NOTAPACK" + b"\x00" * 64])
def test_scan_refuses_a_non_pack(data: bytes) -> None:
    with pytest.raises(CorruptObjectError, match="magic missing"):
        list(scan_pack(data, "p"))


def test_verify_pack_id() -> None:
    data, _ = _pack()
    verify_pack_id(data, hash_bytes(data), "pack p")
    with pytest.raises(HashMismatchError, match="pack p") as ei:
        verify_pack_id(data[:-1] + b"\x00", hash_bytes(data), "pack p")
    assert ei.value.expected == hash_bytes(data).hex()


# ---------------------------------------------------------------------------- damage


@pytest.mark.parametrize("size", [0, 1, len(PACK_MAGIC) + TRAILER.size - 1])
def test_too_small_for_a_pack(size: int) -> None:
    data = _pack()[0][-size:] if size else b""
    with pytest.raises(CorruptObjectError, match="too small"):
        read_pack_entries(_reader(data), size, "p")


@pytest.mark.parametrize("cut", [1, 8, 24, 100])
def test_truncated_pack_has_no_trailer(cut: int) -> None:
    data, _ = _pack()
    with pytest.raises(CorruptObjectError, match="trailer magic missing"):
        _entries(data[:-cut])


def test_damaged_trailer_magic() -> None:
    data, _ = _pack()
    with pytest.raises(CorruptObjectError, match="trailer magic missing") as ei:
        _entries(data[:-1] + b"X")
    assert ei.value.what == "pack p"


def _retrailer(data: bytes, count: int, footer_len: int, check: bytes | None = None) -> bytes:
    _count, _len, old_check, magic = TRAILER.unpack_from(data, len(data) - TRAILER.size)
    trailer = TRAILER.pack(count, footer_len, old_check if check is None else check, magic)
    return data[: -TRAILER.size] + trailer


def test_footer_length_that_does_not_match_the_count() -> None:
    data, entries = _pack()
    with pytest.raises(CorruptObjectError, match="footer length"):
        _entries(_retrailer(data, len(entries) + 1, len(entries) * FOOTER_ENTRY.size))


def test_footer_longer_than_the_pack() -> None:
    data, _ = _pack()
    n = len(data) // FOOTER_ENTRY.size + 1
    with pytest.raises(CorruptObjectError, match="footer length"):
        _entries(_retrailer(data, n, n * FOOTER_ENTRY.size))


def test_footer_checksum_mismatch() -> None:
    data, entries = _pack()
    footer_start = len(data) - TRAILER.size - len(entries) * FOOTER_ENTRY.size
    damaged = bytearray(data)
    damaged[footer_start + 40] ^= 0x01  # inside the first entry's offset field
    with pytest.raises(CorruptObjectError, match="footer checksum"):
        _entries(bytes(damaged))


def _with_footer(data: bytes, entries: list[PackEntry], rows: list[tuple]) -> bytes:  # type: ignore[type-arg]
    """Replace the footer with ``rows`` and a matching checksum (a well-formed lie)."""
    body_end = len(data) - TRAILER.size - len(entries) * FOOTER_ENTRY.size
    footer = b"".join(FOOTER_ENTRY.pack(*r) for r in rows)
    trailer = TRAILER.pack(len(rows), len(footer), hash_bytes(footer)[:8], END_MAGIC)
    return data[:body_end] + footer + trailer


def _row(e: PackEntry, **kw: int) -> tuple:  # type: ignore[type-arg]
    f = {
        "kind": e.kind,
        "codec": e.codec,
        "offset": e.offset,
        "stored": e.stored_len,
        "raw": e.raw_len,
        **kw,
    }
    return (e.blob_id, f["kind"], f["codec"], 0, f["offset"], f["stored"], f["raw"])


def test_rewritten_footer_with_a_valid_checksum_is_accepted() -> None:
    data, entries = _pack()
    assert _entries(_with_footer(data, entries, [_row(e) for e in entries])) == entries


@pytest.mark.parametrize(
    "change",
    [
        {"kind": 2},
        {"codec": 3},
        {"raw": MAX_BLOB_SIZE + 1},
        {"offset": 0},
        {"offset": len(PACK_MAGIC) + BLOB_HEADER.size - 1},
        {"offset": 10**6},
        {"stored": 10**6},
        {"offset": 2**32 - 1, "stored": 2**32 - 1},
    ],
    ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()),
)
def test_footer_entry_out_of_range(change: dict[str, int]) -> None:
    data, entries = _pack()
    rows = [_row(e) for e in entries]
    rows[1] = _row(entries[1], **change)
    with pytest.raises(CorruptObjectError, match="footer entry 1 is invalid"):
        _entries(_with_footer(data, entries, rows))


def test_footer_entry_may_not_reach_into_the_footer() -> None:
    data, entries = _pack()
    body_end = len(data) - TRAILER.size - len(entries) * FOOTER_ENTRY.size
    last = entries[-1]
    rows = [_row(e) for e in entries[:-1]] + [_row(last, stored=body_end - last.offset + 1)]
    with pytest.raises(CorruptObjectError, match="footer entry 3 is invalid"):
        _entries(_with_footer(data, entries, rows))
