"""Helpers for the end-to-end repository tests (plain functions; fixtures are in conftest)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import cas
from cas.api import CommitResult, Repo
from cas.compression import compress
from cas.hashing import hash_bytes
from cas.history import flatten_tree, iter_tree, resolve_ref
from cas.ids import ObjectId
from cas.index import BlobLocation
from cas.objects import ChunkRef, Commit, EntryKind, Tree, TreeEntry
from cas.packs import KIND_CHUNK
from cas.repository import Repository
from cas.store import open_backend
from tests.assets import AssetInfo, AssetSpec, Mutation, Node, snapshot_tree
from tests.stores import StoreUnderTest

# A few hundred files and a few MB: the fast variant that runs in the default suite.
FAST_SPEC = AssetSpec(small_files=300, classes=10, large_bytes=2 << 20, jsonl_lines=150)
# A dozen files: for tests that only need some store.
MINI_SPEC = AssetSpec(
    small_files=12, classes=3, large_bytes=64 << 10, jsonl_files=1, jsonl_lines=10
)


@dataclass(frozen=True)
class Built:
    """A store holding v1 and v2 of a generated folder (built once per session)."""

    store: StoreUnderTest
    info: AssetInfo
    mutation: Mutation
    snap1: dict[str, Node]
    snap2: dict[str, Node]
    c1: CommitResult
    c2: CommitResult
    chunker_max: int
    pack_size: int


def clone(store: StoreUnderTest | Path, dest: Path, ref: str | None = None, **kw: object) -> Repo:
    """``cas.clone`` into ``dest`` with a fresh cache of its own and no progress bar."""
    kw.setdefault("cache_dir", dest.parent / f"{dest.name}-cache")
    return cas.clone(_where(store), dest, ref=ref, progress=False, **kw)  # type: ignore[arg-type]


def _where(store: StoreUnderTest | Path) -> str:
    return store.location if isinstance(store, StoreUnderTest) else str(store)


def fingerprint(root: Path, *, ignore: tuple[str, ...] = ()) -> dict[str, Node]:
    """Every entry below ``root`` with content hash, mode and mtime (for before/after)."""
    if not root.exists():
        return {}
    return snapshot_tree(root, ignore=ignore)


def user_files(root: Path) -> dict[str, Node]:
    """The worktree as the user sees it (without ``.cas``)."""
    return snapshot_tree(root)


def sub_snapshot(snap: dict[str, Node], prefix: str) -> dict[str, Node]:
    """The entries of a snapshot at or below ``prefix``."""
    return {p: n for p, n in snap.items() if p == prefix or p.startswith(prefix + "/")}


def without(snap: dict[str, Node], prefixes: list[str]) -> dict[str, Node]:
    """A snapshot without the entries at or below any of ``prefixes``."""
    return {
        p: n for p, n in snap.items() if not any(p == x or p.startswith(x + "/") for x in prefixes)
    }


def open_store(store: StoreUnderTest | Path) -> Repository:
    """The store opened with the lower-level API, without a local cache."""
    return Repository.open(open_backend(_where(store)), cache_root=None, writer="test")


def file_entry_at(r: Repository, ref: str, path: str) -> TreeEntry:
    """The tree entry of ``path`` in version ``ref``."""
    tree = r.load_commit(resolve_ref(r, ref).commit_id).tree
    return flatten_tree(r, tree)[path]


def chunk_location(r: Repository, chunk_id: bytes) -> BlobLocation:
    """Where a chunk is stored."""
    loc = r.load_index().lookup(ObjectId(chunk_id))
    assert loc is not None
    return loc


def flip_byte(path: Path, offset: int) -> bytes:
    """Invert one byte of a local file (a cached pack); return the file's bytes before."""
    data = path.read_bytes()
    damaged = bytearray(data)
    damaged[offset] ^= 0xFF
    replace_bytes(path, bytes(damaged))
    return data


def write_crafted_commit(
    r: Repository, root: Tree, ref: str, *, blobs: tuple[bytes, ...] = ()
) -> ObjectId:
    """Write a commit with a hand-made root tree and point ``ref`` (``tags/x``) at it.

    The sub-trees named by ``root`` must already be stored (see :func:`store_tree`).
    ``blobs`` are file contents to store as single chunks first. Uses the lower-level
    write path in the order of invariant 2: packs, index, trees, commit, ref entry.
    ``encode_tree`` does not validate names, so hostile trees can be written.
    """
    with r.new_session() as session:
        for data in blobs:
            cid = hash_bytes(data)
            if session.reserve(cid):
                codec, stored = compress(data, r.config.zstd_level)
                session.add(cid, KIND_CHUNK, codec, len(data), stored)
        tree_id = session.store_tree(root)
        session.flush()
    commit = Commit(tree_id, (), f"crafted {ref}", "test", time.time_ns())
    cid = r.save_commit(commit)
    r.refs.update(ref, target=cid, expected=r.refs.state(ref))
    return cid


def store_tree(r: Repository, tree: Tree) -> ObjectId:
    """Store one (possibly hostile) tree blob; return its id."""
    with r.new_session() as session:
        tree_id = session.store_tree(tree)
        session.flush()
    return tree_id


def file_entry(name: str, data: bytes, *, mode: int = 0o644) -> TreeEntry:
    """A one-chunk file entry for ``data`` (store the bytes with ``blobs=``)."""
    oid = hash_bytes(data)
    chunks = (ChunkRef(oid, len(data)),) if data else ()
    return TreeEntry(name, EntryKind.FILE, mode, 1_600_000_000_123_456_789, len(data), oid, chunks)


def dir_entry(name: str, tree_id: ObjectId) -> TreeEntry:
    """A directory entry pointing at a stored tree."""
    return TreeEntry(name, EntryKind.DIR, 0o755, 1_600_000_000_123_456_789, 0, tree_id)


def symlink_entry(name: str, target: str) -> TreeEntry:
    """A symlink entry."""
    return TreeEntry(
        name,
        EntryKind.SYMLINK,
        0o777,
        1_600_000_000_123_456_789,
        len(os.fsencode(target)),
        hash_bytes(os.fsencode(target)),
        target=target,
    )


def tree_of(*entries: TreeEntry, sort: bool = True) -> Tree:
    """A tree of ``entries`` (sorted by name bytes unless ``sort`` is false)."""
    rows = sorted(entries, key=lambda e: os.fsencode(e.name)) if sort else list(entries)
    return Tree(tuple(rows))


def replace_bytes(path: Path, data: bytes) -> None:
    """Give ``path`` new content as a new file (never through a shared hard link)."""
    tmp = path.with_name(path.name + ".replacing")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def tree_bytes_of_version(repo: Repo, ref: str) -> int:
    """Raw bytes of every tree blob of a version (an upper bound of its new tree bytes)."""
    r = repo.repository
    index = r.load_index()
    root = r.load_commit(repo.resolve(ref)).tree
    ids = [root] + [e.oid for _p, e in iter_tree(r, root) if e.kind == EntryKind.DIR]
    total = 0
    for tree_id in set(ids):
        loc = index.lookup(tree_id)
        assert loc is not None
        total += loc.raw_len
    return total


def v2_storage_bound(changed_bytes: int, max_chunk: int, tree_bytes: int) -> int:
    """Most bytes a commit may store when ``changed_bytes`` of new content were written.

    stored = new chunks (compressed, never larger than raw: incompressible chunks are
    kept raw) + framing (44 B blob header + 48 B footer entry per blob, 32 B per pack)
    + the new tree blobs (at most every tree of the version: ``tree_bytes``).

    New chunks hold the changed bytes plus the old bytes that share a chunk with them:
    the chunk holding the start of a rewritten region begins before it (≤ 1 max chunk)
    and after its end the cut points need a chunk or two to fall back onto the old
    ones (≤ 2 max chunks). Added files are new chunks of their own size. Framing is
    92 B per chunk of ≥ 1 KiB (files here are 1–12 KiB, chunks ~5 KiB or more), i.e.
    ≤ 2 % in practice, so 10 % slack on the changed bytes covers it with room.
    """
    return int(1.10 * changed_bytes) + 3 * max_chunk + tree_bytes
