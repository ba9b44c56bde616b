"""Round trips: what is encoded (or cut, or compressed, or packed) comes back unchanged."""

from __future__ import annotations

import io
import random

from hypothesis import example, given, settings
from hypothesis import strategies as st

from cas import compression
from cas.chunking import Chunker, ChunkerParams
from cas.codec import (
    decode_commit,
    decode_ref_entry,
    decode_tree,
    encode_commit,
    encode_ref_entry,
    encode_tree,
)
from cas.hashing import hash_bytes
from cas.index import decode_segment, encode_segment
from cas.objects import Commit, RefEntry, Tree
from cas.packs import KIND_CHUNK, KIND_TREE, PackWriter, read_pack_entries, scan_pack
from tests.property.strategies import commits, ref_entries, trees

# Smallest sizes pyfastcdc accepts, so that a few KiB of data make many chunks.
TINY = ChunkerParams(min=64, avg=256, max=1024)
TINY_CHUNKER = Chunker(TINY)


@given(trees())
@example(Tree(()))
def test_tree_roundtrip(tree: Tree) -> None:
    data = encode_tree(tree)
    assert decode_tree(data) == tree
    assert encode_tree(decode_tree(data)) == data


@given(commits)
def test_commit_roundtrip(commit: Commit) -> None:
    data = encode_commit(commit)
    assert decode_commit(data) == commit
    assert encode_commit(decode_commit(data)) == data


@given(ref_entries())
def test_ref_entry_roundtrip(entry: RefEntry) -> None:
    data = encode_ref_entry(entry)
    assert decode_ref_entry(data) == entry
    assert encode_ref_entry(decode_ref_entry(data)) == data


def _cut(data: bytes) -> list[bytes]:
    return [bytes(c) for c in TINY_CHUNKER.iter_buffer(data)]


@given(st.binary(max_size=8192))
@example(b"")
@example(b"\x00")
@example(bytes(TINY.min))
@example(bytes(range(256)) * (TINY.avg // 256))
@example(b"\xff" * TINY.max)
@example(b"\xff" * (TINY.max + 1))
def test_chunks_concatenate_to_the_input(data: bytes) -> None:
    chunks = _cut(data)
    assert b"".join(chunks) == data
    assert all(0 < len(c) <= TINY.max for c in chunks)
    assert all(len(c) >= TINY.min for c in chunks[:-1])
    # Cutting a stream gives the same chunks as cutting the buffer.
    assert [bytes(c) for c in TINY_CHUNKER.iter_chunks(io.BytesIO(data))] == chunks


@given(st.binary(max_size=4096), st.integers(min_value=0, max_value=5))
@example(b"", 3)
@example(b"a" * 63, 3)
@example(b"a" * 64, 3)
@example(b"a" * 64, 0)
def test_compress_roundtrip(data: bytes, level: int) -> None:
    codec, stored = compression.compress(data, level)
    assert codec in compression.CODECS
    if codec == compression.CODEC_ZSTD:
        assert len(stored) < len(data)
    else:
        assert stored == data
    assert compression.decompress(codec, stored, len(data), "chunk") == data


@given(
    st.binary(min_size=1, max_size=64),
    st.integers(min_value=64 * 1024, max_value=160 * 1024),
    st.integers(min_value=0, max_value=2**32 - 1),
    st.integers(min_value=0, max_value=1),
)
@settings(max_examples=40, deadline=None)
def test_compress_roundtrip_with_planes(motif: bytes, size: int, seed: int, odd: int) -> None:
    """Large chunks (the probe's range) of every mix — noise interleaved with a repeated
    motif, at either parity — come back exactly, whichever codec the probe picks."""
    noise = random.Random(seed).randbytes(size // 2 + 1)
    buf = bytearray(size)
    buf[odd::2] = (motif * (size // len(motif) + 1))[: len(buf[odd::2])]
    buf[1 - odd :: 2] = noise[: len(buf[1 - odd :: 2])]
    data = bytes(buf)
    codec, stored = compression.compress(data, 1, planes=True)
    assert codec in compression.CODECS
    if codec != compression.CODEC_RAW:
        assert len(stored) < len(data)
    assert compression.decompress(codec, stored, len(data), "chunk") == data


blobs = st.lists(
    st.tuples(st.sampled_from([KIND_CHUNK, KIND_TREE]), st.binary(max_size=300)),
    max_size=12,
)


@given(blobs)
@example([])
@example([(KIND_CHUNK, b"")])
def test_pack_write_then_read_returns_every_entry(items: list[tuple[int, bytes]]) -> None:
    writer = PackWriter()
    for kind, raw in items:
        codec, stored = compression.compress(raw, 3)
        writer.add(hash_bytes(raw), kind, codec, len(raw), stored)
    pack_id, data, entries = writer.seal()
    assert pack_id == hash_bytes(data)
    assert len(entries) == len(items)

    listed = read_pack_entries(lambda n: data[len(data) - n :], len(data), "pack")
    assert listed == entries
    assert list(scan_pack(data, "pack")) == entries
    for (kind, raw), e in zip(items, entries, strict=True):
        assert e.kind == kind
        assert e.blob_id == hash_bytes(raw)
        stored = data[e.offset : e.offset + e.stored_len]
        assert compression.decompress(e.codec, stored, e.raw_len, "blob") == raw

    # The index segment describing the pack round-trips as well.
    packs = {pack_id: (len(data), entries)}
    decoded = decode_segment(encode_segment(packs), "segment")
    assert decoded[pack_id][0] == len(data)
    assert sorted(decoded[pack_id][1], key=lambda e: e.blob_id) == sorted(
        entries, key=lambda e: e.blob_id
    )
