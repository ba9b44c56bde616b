"""Repository over MemoryBackend and LocalDirBackend: lifecycle, write order, verified reads."""

from __future__ import annotations

import dataclasses
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import cas.repository as repository
import cas.store.local as local_module
from cas.chunking import ChunkerParams
from cas.codec import encode_commit
from cas.compression import compress
from cas.config import StoreConfig, encode_config
from cas.errors import (
    AlreadyExistsError,
    BackendUnavailableError,
    CorruptObjectError,
    HashMismatchError,
    IntegrityError,
    MissingDataError,
    NoSpaceError,
    ObjectNotFoundError,
    RepositoryNotFoundError,
    UnsafePathError,
    UnsupportedFormatError,
)
from cas.hashing import hash_bytes
from cas.history import resolve_ref
from cas.ids import ObjectId
from cas.index import ChunkIndex, decode_segment
from cas.layout import CONFIG_KEY, INDEX, JOURNAL, PACKS, commit_key, pack_key, parse_object_key
from cas.objects import ChunkRef, Commit, EntryKind, Tree, TreeEntry
from cas.packs import KIND_CHUNK, read_pack_entries
from cas.repository import Repository, WriteSession
from cas.store.base import TEMP_SUFFIX, Backend, Capabilities
from cas.store.local import LocalDirBackend
from cas.store.memory import MemoryBackend
from cas.store.retry import RetryingBackend
from tests.conftest import SMALL_CHUNKER, SMALL_PACK


class RecordingBackend:
    """Wraps a backend and records the keys written, in order."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.writes: list[str] = []

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self.inner, name)

    def write(self, key: str, data: bytes, *, if_absent: bool = False) -> None:
        self.inner.write(key, data, if_absent=if_absent)
        self.writes.append(key)


@pytest.fixture(params=["memory", "local"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RecordingBackend]:
    inner: Backend
    if request.param == "memory":
        inner = MemoryBackend()
    else:
        inner = LocalDirBackend(tmp_path / "store", fsync=False)
    yield RecordingBackend(inner)
    inner.close()


def _create(backend: Backend, **kw: object) -> Repository:
    args: dict[str, object] = {"chunker": SMALL_CHUNKER, "pack_size": SMALL_PACK, **kw}
    return Repository.create(backend, cache_root=None, writer="test@host", **args)  # type: ignore[arg-type]


def _open(backend: Backend, cache_root: Path | None = None) -> Repository:
    return Repository.open(backend, cache_root=cache_root, writer="test@host")


def _blobs(n: int, size: int = 10_000, seed: int = 0) -> list[bytes]:
    rng = random.Random(seed)
    # Half incompressible, half compressible, so both codecs are stored.
    return [rng.randbytes(size) if i % 2 else bytes([i % 251]) * size for i in range(n)]


def _store(repo: Repository, blobs: list[bytes]) -> list[ObjectId]:
    ids = []
    with repo.new_session() as session:
        for raw in blobs:
            blob_id = hash_bytes(raw)
            ids.append(blob_id)
            if session.reserve(blob_id):
                codec, stored = compress(raw, repo.config.zstd_level)
                session.add(blob_id, KIND_CHUNK, codec, len(raw), stored)
        session.flush()
    return ids


# ---------------------------------------------------------------------------- lifecycle


def test_create_then_open(backend: RecordingBackend) -> None:
    repo = _create(backend)
    assert backend.writes[0] == CONFIG_KEY
    assert repo.config.chunker == SMALL_CHUNKER
    assert repo.config.pack_size == SMALL_PACK
    assert repo.refs.state("HEAD").symbolic == "heads/main"

    again = _open(backend)
    assert again.config == repo.config
    assert again.refs.state("HEAD").symbolic == "heads/main"
    assert not again.branch_state("main").exists


def test_create_with_another_default_branch(backend: RecordingBackend) -> None:
    repo = _create(backend, default_branch="trunk")
    assert repo.refs.state("HEAD").symbolic == "heads/trunk"


@pytest.mark.parametrize("links", [True, False], ids=["links", "no-links"])
def test_create_makes_the_folders_every_commit_writes_into(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, links: bool
) -> None:
    """A new folder store has its fixed folders at once, so its first commit does not
    pay for them (on a Drive mount, a failed create and a mkdir per level each); they
    are folders, not keys. Claim folders only where claims are written."""
    root = tmp_path / "store"
    backend = RetryingBackend(LocalDirBackend(root, fsync=False))
    if not links:
        monkeypatch.setattr(LocalDirBackend, "capabilities", property(_no_links_capabilities))
    _create(backend, default_branch="dev/x")
    folders = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_dir())
    expected = ["commits", "index", "refs", "refs/heads", "refs/heads/dev%2fx"]
    expected += ["refs/store-head", "refs/tags"]
    if links:
        expected += ["refs/claims", "refs/claims/heads", "refs/claims/heads/dev%2fx"]
        expected += ["refs/claims/store-head"]
    assert folders == sorted(expected)
    keys = [k.key for k in backend.list("")]
    assert {k.split("/")[0] for k in keys} == {"config", "refs"}
    _create(MemoryBackend())  # no folders there: nothing to make


def _no_links_capabilities(self: LocalDirBackend) -> Capabilities:
    return Capabilities(conditional_write=False, values_in_memory=False)


def test_create_twice_is_refused(backend: RecordingBackend) -> None:
    first = _create(backend)
    with pytest.raises(AlreadyExistsError, match="a cas store at") as ei:
        _create(backend)
    assert "clone" in ei.value.hint
    assert _open(backend).config == first.config  # the first store is untouched


def test_create_refuses_bad_chunker_params_before_writing(backend: RecordingBackend) -> None:
    with pytest.raises(ValueError, match="64 <= min"):
        _create(backend, chunker=ChunkerParams(min=10))
    assert backend.writes == []


def test_open_missing_store(backend: RecordingBackend) -> None:
    with pytest.raises(RepositoryNotFoundError) as ei:
        _open(backend)
    assert ei.value.location == backend.location
    assert backend.location in str(ei.value)


def test_open_newer_store_is_refused(backend: RecordingBackend) -> None:
    backend.write(CONFIG_KEY, encode_config(StoreConfig("id", 1, format_version=99)))
    with pytest.raises(UnsupportedFormatError, match="format version 99"):
        _open(backend)


def test_open_damaged_config(backend: RecordingBackend) -> None:
    backend.write(CONFIG_KEY, b"\x00garbage")
    with pytest.raises(CorruptObjectError, match="config of"):
        _open(backend)


# ---------------------------------------------------------------------------- writing


def test_session_writes_packs_then_the_index_segment(backend: RecordingBackend) -> None:
    repo = _create(backend)
    blobs = _blobs(30)
    start = len(backend.writes)
    ids = _store(repo, blobs)
    writes = backend.writes[start:]

    packs = [k for k in writes if k.startswith(PACKS)]
    segments = [k for k in writes if k.startswith(INDEX)]
    journal = [k for k in writes if k.startswith(JOURNAL)]
    assert len(packs) >= 3  # 300 kB in 64 KiB packs
    assert segments
    assert set(writes) == set(packs) | set(segments) | set(journal)
    # The packs no checkpoint listed had a journal entry each, written just before the
    # pack and gone once the last segment listed it (readers never load the journal).
    assert journal and not list(backend.list_keys(JOURNAL))
    # Every segment comes after every pack it lists (invariant 2).
    for seg_key in segments:
        seg = decode_segment(backend.read(seg_key), seg_key)
        for pack_id in seg:
            assert writes.index(pack_key(pack_id)) < writes.index(seg_key)
    # Segments together list every pack, and every blob once.
    listed = {}
    for seg_key in segments:
        for pack_id, (size, entries) in decode_segment(backend.read(seg_key), seg_key).items():
            assert size == backend.stat(pack_key(pack_id)).size
            for e in entries:
                listed[e.blob_id] = pack_id
    assert {pack_key(p) for p in listed.values()} == set(packs)
    assert set(listed) == set(ids)


def test_nothing_is_indexed_before_flush(backend: RecordingBackend) -> None:
    repo = _create(backend)
    raw = b"x" * 100
    with repo.new_session() as session:
        assert session.reserve(hash_bytes(raw))
        session.add(hash_bytes(raw), KIND_CHUNK, 0, len(raw), raw)
        assert not any(k.startswith((PACKS, INDEX)) for k in backend.writes)
        session.flush()
        assert any(k.startswith(PACKS) for k in backend.writes)
        assert any(k.startswith(INDEX) for k in backend.writes)
        assert session.new_blobs == 1
        assert session.packs_written == 1


def test_packs_are_self_describing(backend: RecordingBackend) -> None:
    repo = _create(backend)
    _store(repo, _blobs(10))
    for info in backend.list(PACKS):
        pack_id = parse_object_key(info.key, PACKS)
        assert pack_id is not None
        data = backend.read(info.key)
        assert hash_bytes(data) == pack_id
        entries = read_pack_entries(
            lambda n, k=info.key: backend.read_range(k, -n, n), info.size, info.key
        )
        assert entries


def test_reserve_decides_once(backend: RecordingBackend) -> None:
    repo = _create(backend)
    (blob_id,) = _store(repo, [b"already stored" * 10])
    with repo.new_session() as session:
        assert not session.reserve(blob_id)  # in the index
        new = hash_bytes(b"new")
        assert session.reserve(new)
        assert not session.reserve(new)  # pending in this session


def test_storing_the_same_blobs_again_writes_nothing(backend: RecordingBackend) -> None:
    repo = _create(backend)
    blobs = _blobs(6)
    _store(repo, blobs)
    start = len(backend.writes)
    _store(_open(backend), blobs)
    assert backend.writes[start:] == []


# ---------------------------------------------------------------------------- reading


def test_read_blob_and_fresh_index(backend: RecordingBackend) -> None:
    repo = _create(backend)
    blobs = _blobs(20)
    ids = _store(repo, blobs)
    for blob_id, raw in zip(ids, blobs, strict=True):
        assert repo.read_blob(blob_id) == raw

    fresh = _open(backend)
    index = fresh.load_index()
    assert len(index) == len(set(ids))
    assert all(blob_id in index for blob_id in ids)
    assert fresh.read_blob(ids[3]) == blobs[3]


def test_load_index_refresh_sees_new_segments(backend: RecordingBackend) -> None:
    reader = _create(backend)
    assert len(reader.load_index()) == 0
    ids = _store(_open(backend), _blobs(4))
    assert len(reader.load_index()) == 0  # loaded once, until asked to refresh
    assert len(reader.load_index(refresh=True)) == len(ids)


def test_index_loaded_in_the_background_is_the_index(backend: RecordingBackend) -> None:
    ids = _store(_create(backend), _blobs(6))
    reader = _open(backend)
    reader.load_index_soon()
    index = reader.load_index()  # waits for the background load, or does it itself
    assert all(index.lookup(i) is not None for i in ids)
    assert reader.index_segments() == {parse_object_key(k, INDEX) for k in backend.list_keys(INDEX)}


def test_one_preload_at_a_time(backend: RecordingBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    """A clone starts the preload and its checkout asks again: one load, not two."""
    _store(_create(backend), _blobs(2))
    reader = _open(backend)
    gate, lists = threading.Event(), []
    real = backend.inner.list_keys

    def list_keys(prefix: str) -> Iterator[str]:
        if prefix == INDEX:
            lists.append(prefix)
            assert gate.wait(5)
        return real(prefix)

    monkeypatch.setattr(backend.inner, "list_keys", list_keys)
    reader.load_index_soon()
    reader.load_index_soon()
    gate.set()
    reader.load_index()
    reader.load_index_soon()  # loaded: nothing to do
    assert lists == [INDEX]


def test_a_refresh_beside_the_preload_loads_each_segment_once(backend: RecordingBackend) -> None:
    """A refresh (a commit re-reading the index before it writes) that runs while the
    preload is still loading waits for it, then adds only what the preload did not."""
    ids = [i for n in range(6) for i in _store(_create_or_open(backend), _blobs(2, seed=n))]
    reader = _open(backend)
    reader.load_index_soon()
    index = reader.load_index(refresh=True)
    later = _store(_open(backend), _blobs(2, seed=99))  # a segment the preload never saw
    index = reader.load_index(refresh=True)
    assert all(index.lookup(i) is not None for i in [*ids, *later])
    assert len(index) == len(set(ids) | set(later))
    assert reader.index_segments() == {parse_object_key(k, INDEX) for k in backend.list_keys(INDEX)}


def test_a_background_index_load_that_fails_leaves_the_error_to_the_caller(
    backend: RecordingBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = _store(_create(backend), _blobs(2))
    reader = _open(backend)
    failing = threading.Event()
    failing.set()
    real = backend.inner.list_keys

    def list_keys(prefix: str) -> Iterator[str]:
        if failing.is_set():
            raise BackendUnavailableError("listing index/: mount gone")
        return real(prefix)

    monkeypatch.setattr(backend.inner, "list_keys", list_keys)
    threads = set(threading.enumerate())
    reader.load_index_soon()
    for t in set(threading.enumerate()) - threads:
        t.join(5)  # the preload failed quietly: nothing was raised in its thread
    with pytest.raises(BackendUnavailableError):
        reader.load_index()
    failing.clear()
    assert reader.load_index().lookup(ids[0]) is not None


def test_a_stopped_index_preload_makes_no_more_reads(
    backend: RecordingBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A checkout that fails before it needs the index (an unknown ref) stops the
    preload: only the reads already on their way finish, and the index is left for
    whoever loads it next, whole."""
    width = max(repository.PARALLEL_REQUESTS, backend.capabilities.max_connections)
    ids = [i for n in range(width + 4) for i in _store(_create_or_open(backend), _blobs(2, seed=n))]
    segments = len(list(backend.list_keys(INDEX)))
    assert segments > width
    reader = _open(backend)
    gate, reads = threading.Event(), []
    real = backend.inner.read

    def read(key: str) -> bytes:
        if key.startswith(INDEX):
            reads.append(key)
            assert gate.wait(5)
        return real(key)

    monkeypatch.setattr(backend.inner, "read", read)
    threads = set(threading.enumerate())
    reader.load_index_soon()
    deadline = time.monotonic() + 5
    while len(reads) < width and time.monotonic() < deadline:
        time.sleep(0.01)
    reader.stop_preload()
    gate.set()
    for t in set(threading.enumerate()) - threads:
        t.join(5)
    assert len(reads) == width  # the reads in flight; none started after the stop
    assert reader.index_segments() == frozenset()  # nothing half-added
    index = reader.load_index()
    assert all(index.lookup(i) is not None for i in ids)
    assert len(reader.index_segments()) == segments


def _create_or_open(backend: Backend) -> Repository:
    try:
        return _open(backend)
    except RepositoryNotFoundError:
        return _create(backend)


def test_read_of_an_unknown_blob(backend: RecordingBackend) -> None:
    repo = _create(backend)
    with pytest.raises(MissingDataError, match="in no indexed pack"):
        repo.read_blob(hash_bytes(b"never stored"))


def _flip_stored_byte(backend: Backend, repo: Repository, blob_id: ObjectId) -> ObjectId:
    loc = repo.load_index().lookup(blob_id)
    assert loc is not None
    key = pack_key(loc.pack_id)
    data = bytearray(backend.read(key))
    data[loc.offset + loc.stored_len // 2] ^= 0x01
    backend.write(key, bytes(data))
    return loc.pack_id


@pytest.mark.parametrize("which", [0, 1], ids=["zstd-blob", "raw-blob"])
def test_flipped_byte_in_a_pack_is_an_integrity_error_naming_the_pack(
    backend: RecordingBackend, which: int
) -> None:
    repo = _create(backend)
    blobs = _blobs(4)
    ids = _store(repo, blobs)
    pack_id = _flip_stored_byte(backend, repo, ids[which])
    fresh = _open(backend)
    with pytest.raises(IntegrityError) as ei:
        fresh.read_blob(ids[which])
    assert pack_id.hex() in str(ei.value)
    assert ids[which].hex() in str(ei.value)
    with pytest.raises(HashMismatchError, match=f"pack {pack_id.hex()}"):
        fresh.read_pack(pack_id)


@pytest.mark.parametrize("damage", [lambda d: d[:-1], lambda d: b""], ids=["truncated", "ghost"])
def test_damaged_index_segment_is_skipped(
    backend: RecordingBackend, caplog: pytest.LogCaptureFixture, damage
) -> None:  # type: ignore[no-untyped-def]
    """Segments are derived data (repair rebuilds them); a bad one is skipped, loudly."""
    repo = _create(backend)
    ids = _store(repo, _blobs(2))
    (seg,) = [i.key for i in backend.list(INDEX)]
    backend.write(seg, damage(backend.read(seg)))
    fresh = _open(backend)
    with caplog.at_level("WARNING", logger="cas.repository"):
        assert len(fresh.load_index()) == 0
    assert "skipping index segment" in caplog.text
    with pytest.raises(MissingDataError):
        fresh.read_blob(ids[0])


def test_read_blob_rereads_the_index_on_a_miss(backend: RecordingBackend) -> None:
    reader = _create(backend)
    assert len(reader.load_index()) == 0
    blobs = _blobs(3)
    ids = _store(_open(backend), blobs)  # another writer, after the reader loaded
    assert reader.read_blob(ids[2]) == blobs[2]


def test_damaged_cached_pack_is_dropped_and_fetched_again(
    backend: RecordingBackend, tmp_path: Path
) -> None:
    _create(backend)
    repo = _open(backend, cache_root=tmp_path / "cache")
    blobs = _blobs(4)
    ids = _store(repo, blobs)
    loc = repo.load_index().lookup(ids[1])
    assert loc is not None
    repo.read_pack(loc.pack_id)  # now cached
    key = pack_key(loc.pack_id)
    assert repo.cache.has(key)
    cached = bytearray(repo.cache.get(key) or b"")
    cached[loc.offset] ^= 0xFF
    repo.cache.put(key, bytes(cached))

    assert repo.read_blob(ids[1]) == blobs[1]
    assert not repo.cache.has(key)


def test_fetch_pack_returns_damaged_packs_too(backend: RecordingBackend, tmp_path: Path) -> None:
    """Repair and checkout use the blobs of a damaged pack that still verify."""
    _create(backend)
    repo = _open(backend, cache_root=tmp_path / "cache")
    ids = _store(repo, _blobs(4))
    loc = repo.load_index().lookup(ids[0])
    assert loc is not None
    data, intact = repo.fetch_pack(loc.pack_id)
    assert intact
    assert hash_bytes(data) == loc.pack_id
    assert repo.cache.has(pack_key(loc.pack_id))

    repo.cache.evict(pack_key(loc.pack_id))
    _flip_stored_byte(backend, repo, ids[0])
    data, intact = repo.fetch_pack(loc.pack_id)
    assert not intact
    assert data == backend.read(pack_key(loc.pack_id))
    assert not repo.cache.has(pack_key(loc.pack_id))  # never cache what does not verify


def test_replace_index(backend: RecordingBackend) -> None:
    repo = _create(backend)
    ids = _store(repo, _blobs(2))
    rebuilt = ChunkIndex()
    old = {parse_object_key(k, INDEX) for k in backend.list_keys(INDEX)}
    repo.replace_index(rebuilt, superseded=old)
    assert repo.load_index() is rebuilt
    assert ids[0] not in repo.load_index()
    # A refresh (a read that missed) never brings back what the rebuilt index replaced;
    # a segment written afterwards is loaded as usual.
    assert ids[0] not in repo.load_index(refresh=True)
    later = _store(_open(backend), _blobs(2, seed=7)[1:])  # (blob 0 is the same for every seed)
    index = repo.load_index(refresh=True)
    assert ids[0] not in index and all(i in index for i in later)


def test_damaged_cached_commit_is_read_again(backend: RecordingBackend, tmp_path: Path) -> None:
    _create(backend)
    repo = _open(backend, cache_root=tmp_path / "cache")
    commit = Commit(hash_bytes(b"tree"), (), "cached", "me", 1)
    commit_id = repo.save_commit(commit)
    assert repo.cache.get(commit_key(commit_id)) is not None
    repo.cache.put(commit_key(commit_id), b"damaged")
    assert repo.load_commit(commit_id) == commit
    assert repo.cache.get(commit_key(commit_id)) == backend.read(commit_key(commit_id))


# ---------------------------------------------------------------------------- trees, commits


def test_trees_travel_in_packs(backend: RecordingBackend) -> None:
    repo = _create(backend)
    f = TreeEntry("a.txt", EntryKind.FILE, 0o644, 1, 0, hash_bytes(b""))
    tree = Tree((f,))
    with repo.new_session() as session:
        tree_id = session.store_tree(tree)
        assert session.store_tree(tree) == tree_id
        session.flush()
    assert _open(backend).load_tree(tree_id) == tree
    assert repo.load_index().lookup(tree_id).kind == 1  # type: ignore[union-attr]


def test_root_tree_refuses_dot_cas(backend: RecordingBackend) -> None:
    repo = _create(backend)
    tree = Tree((TreeEntry(".cas", EntryKind.DIR, 0o755, 0, 0, hash_bytes(b"x")),))
    with repo.new_session() as session:
        tree_id = session.store_tree(tree)
        session.flush()
    assert repo.load_tree(tree_id) == tree
    with pytest.raises(UnsafePathError):
        repo.load_tree(tree_id, at_root=True)


def test_commits(backend: RecordingBackend) -> None:
    repo = _create(backend)
    commit = Commit(hash_bytes(b"tree"), (), "first", "me", 42)
    commit_id = repo.save_commit(commit)
    assert repo.save_commit(commit) == commit_id  # create-only, identical: fine
    assert repo.has_commit(commit_id)
    assert not repo.has_commit(hash_bytes(b"nope"))
    assert list(repo.iter_commit_ids()) == [commit_id]
    assert _open(backend).load_commit(commit_id) == commit
    with pytest.raises(ObjectNotFoundError):
        repo.load_commit(hash_bytes(b"nope"))


def test_tampered_commit_is_refused(backend: RecordingBackend) -> None:
    repo = _create(backend)
    commit_id = repo.save_commit(Commit(hash_bytes(b"tree"), (), "first", "me", 42))
    other = Commit(hash_bytes(b"evil"), (), "first", "me", 42)
    backend.write(commit_key(commit_id), encode_commit(other))
    with pytest.raises(HashMismatchError, match="commit"):
        _open(backend).load_commit(commit_id)


def test_session_is_a_context_manager(backend: RecordingBackend) -> None:
    repo = _create(backend)
    with WriteSession(repo) as session:
        assert session.repo is repo


# ---------------------------------------------------------------------------- the pipeline


class GatedPacks:
    """Pack writes wait at a gate (a slow remote); records how many were started."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.gate = threading.Event()
        self.started = 0
        self.lock = threading.Lock()

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self.inner, name)

    def write(self, key: str, data: bytes, *, if_absent: bool = False) -> None:
        if key.startswith(PACKS):
            with self.lock:
                self.started += 1
            assert self.gate.wait(timeout=60), "the test never opened the gate"
        self.inner.write(key, data, if_absent=if_absent)


def _add_all(session: WriteSession, blobs: list[bytes]) -> None:
    for raw in blobs:
        bid = hash_bytes(raw)
        if session.reserve(bid):
            session.add(bid, KIND_CHUNK, 0, len(raw), raw)


def _producer(
    session: WriteSession, blobs: list[bytes], done: threading.Event, errors: list[BaseException]
) -> threading.Thread:
    """A started thread adding ``blobs`` to ``session``; ``done`` is set when it stops,
    and what it raised is appended to ``errors``."""

    def produce() -> None:
        try:
            _add_all(session, blobs)
        except BaseException as exc:  # pragma: no cover - reported by the caller
            errors.append(exc)
        finally:
            done.set()

    t = threading.Thread(target=produce)
    t.start()
    return t


def test_session_back_pressure_bounds_the_packs_held_in_memory() -> None:
    """With uploads stalled, producers stop after max_uploads full packs + the open one."""
    gated = GatedPacks(MemoryBackend())
    repo = _create(gated)  # type: ignore[arg-type]
    blob = 10_000
    blobs = [random.Random(i).randbytes(blob) for i in range(10 * SMALL_PACK // blob)]
    session = repo.new_session()
    done = threading.Event()
    errors: list[BaseException] = []
    producers = [_producer(session, blobs, done, errors) for _ in range(3)]
    bound = 3 * (SMALL_PACK + blob + 64)  # 2 packs uploading + the open one (+ a blob each)
    samples = []
    for _ in range(3000):  # until both upload threads hold a pack (at most 30 s)
        samples.append(session.new_bytes)
        if gated.started == 2 or done.wait(0.01):
            break
    for _ in range(50):  # then let the producers run into the bound
        samples.append(session.new_bytes)
        if done.wait(0.01):
            break
    assert not done.is_set(), "producers finished 10 packs while no upload could complete"
    assert gated.started == 2  # the upload pool's size: nothing else was handed over
    assert max(samples) <= bound and session.new_bytes <= bound
    gated.gate.set()
    for t in producers:
        t.join(timeout=60)
    assert not errors
    session.flush()
    session.close()
    for raw in blobs:
        assert repo.read_blob(hash_bytes(raw)) == raw


def test_no_checkpoint_while_flush_waits_for_the_last_uploads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Packs that land while flush() waits go into flush's own segment, not into a
    checkpoint segment just before it (on a Drive mount each is a few round trips)."""
    monkeypatch.setattr(repository, "CHECKPOINT_PACKS", 1)
    gated = GatedPacks(MemoryBackend())
    repo = _create(gated)  # type: ignore[arg-type]
    blob = 10_000
    blobs = [random.Random(i).randbytes(blob) for i in range(SMALL_PACK // blob + 2)]
    session = repo.new_session()
    _add_all(session, blobs)  # one full pack on its way (held at the gate), one open
    flusher = threading.Thread(target=session.flush)
    flusher.start()
    for _ in range(3000):
        if session._flushing or not flusher.is_alive():
            break
        time.sleep(0.01)
    assert session._flushing
    gated.gate.set()
    flusher.join(60)
    session.close()
    assert session.packs_written == 2
    assert session.segments_written == 1
    fresh = _open(gated.inner)
    for raw in blobs:
        assert fresh.read_blob(hash_bytes(raw)) == raw


def test_spooled_packs_go_out_as_many_at_once_as_the_backend_takes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a Drive mount each pack waits in a spool file on the local disk, not in
    memory, so up to ``max_uploads`` (8) are on their way at once (each one's round
    trips overlap the others' bytes); a backend that holds values in memory gets two."""
    monkeypatch.setattr(local_module, "filesystem_type", lambda path: "fuse.drive")
    backend = LocalDirBackend(tmp_path / "store", fsync=False)
    assert not backend.capabilities.values_in_memory
    repo = _create(backend)
    gate = threading.Event()
    started: list[str] = []
    real_create = local_module._create_temp

    def gated(tmp: Path) -> int:
        if tmp.parent.parent.name == "packs":
            started.append(tmp.name)
            gate.wait(30)
        return real_create(tmp)

    monkeypatch.setattr(local_module, "_create_temp", gated)
    blob = 10_000
    blobs = [random.Random(i).randbytes(blob) for i in range(10 * SMALL_PACK // blob)]
    session = repo.new_session()
    done = threading.Event()
    errors: list[BaseException] = []
    producer = _producer(session, blobs, done, errors)
    for _ in range(3000):
        if len(started) == backend.capabilities.max_uploads or done.wait(0.01):
            break
    time.sleep(0.2)  # room for one more, were the pool larger
    assert not done.is_set()
    assert len(started) == backend.capabilities.max_uploads == local_module.MOUNT_UPLOADS
    gate.set()
    producer.join(timeout=60)
    assert not errors
    session.flush()
    session.close()
    for raw in blobs:
        assert repo.read_blob(hash_bytes(raw)) == raw
    assert not [p for p in (tmp_path / "store").rglob("*") if TEMP_SUFFIX in p.name]
    assert WriteSession(_create(MemoryBackend()))._max_uploads == repository.BUFFERED_UPLOADS


class FailingPacks:
    """Every pack write fails as a full disk would."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self.inner, name)

    def write(self, key: str, data: bytes, *, if_absent: bool = False) -> None:
        if key.startswith(PACKS):
            raise NoSpaceError(key)
        self.inner.write(key, data, if_absent=if_absent)


def test_an_upload_thread_error_reaches_the_producer_and_nothing_is_indexed() -> None:
    inner = MemoryBackend()
    repo = _create(FailingPacks(inner))  # type: ignore[arg-type]

    def fill() -> None:
        with repo.new_session() as session:
            for i in range(10 * SMALL_PACK // 10_000):
                raw = random.Random(i).randbytes(10_000)
                bid = hash_bytes(raw)
                if session.reserve(bid):
                    session.add(bid, KIND_CHUNK, 0, len(raw), raw)
            session.flush()

    with pytest.raises(NoSpaceError):
        fill()
    assert not list(inner.list(INDEX)) and not list(inner.list(PACKS))


class PacksFailAfter:
    """Pack writes succeed ``n`` times, then fail as a full disk would."""

    def __init__(self, inner: Backend, n: int) -> None:
        self.inner = inner
        self.left = n
        self.lock = threading.Lock()

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self.inner, name)

    def write(self, key: str, data: bytes, *, if_absent: bool = False) -> None:
        if key.startswith(PACKS):
            with self.lock:
                self.left -= 1
                if self.left < 0:
                    raise NoSpaceError(key)
        self.inner.write(key, data, if_absent=if_absent)


@pytest.mark.parametrize("failure", ["upload", "producer"])
def test_an_aborted_session_indexes_exactly_the_packs_that_landed(failure: str) -> None:
    """Whatever stops a session (a failed upload, Ctrl-C in the producer), the packs
    already on the remote get an index segment, so a rerun does not upload them again."""
    inner = MemoryBackend()
    repo = _create(PacksFailAfter(inner, 2 if failure == "upload" else 99))  # type: ignore[arg-type]
    blobs = [random.Random(i).randbytes(10_000) for i in range(10 * SMALL_PACK // 10_000)]
    expected: type[BaseException] = NoSpaceError if failure == "upload" else KeyboardInterrupt

    def fill() -> None:
        with repo.new_session() as session:
            for i, raw in enumerate(blobs):
                if failure == "producer" and i == len(blobs) // 2:
                    raise KeyboardInterrupt
                bid = hash_bytes(raw)
                if session.reserve(bid):
                    session.add(bid, KIND_CHUNK, 0, len(raw), raw)
            session.flush()

    with pytest.raises(expected):
        fill()
    landed = {parse_object_key(k.key, PACKS) for k in inner.list(PACKS)}
    assert len(landed) >= 2
    fresh = _open(inner)
    index = fresh.load_index()
    where = {raw: index.lookup(hash_bytes(raw)) for raw in blobs}
    assert {loc.pack_id for loc in where.values() if loc is not None} == landed
    for raw, loc in where.items():  # every indexed blob reads back
        if loc is not None:
            assert fresh.read_blob(hash_bytes(raw)) == raw


# ---------------------------------------------------------------------------- streaming


def _fill(repo: Repository, blobs: list[bytes], stop_at: int | None = None) -> None:
    """Store ``blobs``; with ``stop_at``, a Ctrl-C at that blob once two packs landed
    (how many have by then depends on the upload threads' pace, not on the test)."""
    with repo.new_session() as session:
        for i, raw in enumerate(blobs):
            if i == stop_at:
                deadline = time.monotonic() + 30
                while session.packs_written < 2 and time.monotonic() < deadline:
                    time.sleep(0.01)
                raise KeyboardInterrupt
            bid = hash_bytes(raw)
            if session.reserve(bid):
                session.add(bid, KIND_CHUNK, 0, len(raw), raw)
        session.flush()


def test_a_pack_streams_onto_a_local_disk_in_slices_and_is_named_by_its_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Onto a local disk a pack's bytes go out in slices as it fills: the session never
    holds a whole pack. Each pack still lands under the hash of all its bytes, readable
    and listed by the index."""
    monkeypatch.setattr(repository, "SEND_SLICE", 20_000)
    backend = LocalDirBackend(tmp_path / "store", fsync=False)
    assert backend.capabilities.streaming_write
    repo = _create(backend)
    slices = []
    real = local_module._FileWrite.write

    def counting(self: object, data: bytes) -> None:
        slices.append(len(data))
        real(self, data)  # type: ignore[arg-type]

    monkeypatch.setattr(local_module._FileWrite, "write", counting)
    blobs = [random.Random(i).randbytes(10_000) for i in range(10 * SMALL_PACK // 10_000)]
    _fill(repo, blobs)
    packs = list(backend.list(PACKS))
    assert len(packs) >= 5
    assert len(slices) > 2 * len(packs)  # several slices per pack, not one write each
    for info in packs:
        data = backend.read(info.key)
        assert parse_object_key(info.key, PACKS) == hash_bytes(data)
    fresh = _open(backend)
    for raw in blobs:
        assert fresh.read_blob(hash_bytes(raw)) == raw
    assert not [p for p in (tmp_path / "store").iterdir() if p.name.endswith(TEMP_SUFFIX)]


@pytest.mark.parametrize("failure", ["disk", "producer"])
def test_a_stopped_streaming_session_drops_its_unfinished_pack_and_indexes_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    """A full disk halfway through a pack, or Ctrl-C in the producer: the pack being
    written leaves no temp file behind, and the packs that landed are indexed."""
    monkeypatch.setattr(repository, "SEND_SLICE", 20_000)
    backend = LocalDirBackend(tmp_path / "store", fsync=False)
    repo = _create(backend)
    blobs = [random.Random(i).randbytes(10_000) for i in range(10 * SMALL_PACK // 10_000)]
    if failure == "disk":
        written = [0]
        real = local_module._FileWrite.write

        def filling(self: object, data: bytes) -> None:
            written[0] += len(data)
            if written[0] > 4 * SMALL_PACK:
                raise NoSpaceError("(new value)")
            real(self, data)  # type: ignore[arg-type]

        monkeypatch.setattr(local_module._FileWrite, "write", filling)
        with pytest.raises(NoSpaceError):
            _fill(repo, blobs)
    else:
        with pytest.raises(KeyboardInterrupt):
            _fill(repo, blobs, stop_at=len(blobs) // 2)
    assert not [p for p in (tmp_path / "store").iterdir() if p.name.endswith(TEMP_SUFFIX)]
    landed = {parse_object_key(k.key, PACKS) for k in backend.list(PACKS)}
    assert len(landed) >= 2
    index = _open(backend).load_index()
    indexed = {loc.pack_id for raw in blobs if (loc := index.lookup(hash_bytes(raw)))}
    assert indexed == landed


def test_a_pack_with_one_failed_slice_is_never_committed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One write of a pack fails and the later ones work (a disk that had a moment): the
    pack has a hole, so it must never land under a name, nor be indexed."""
    monkeypatch.setattr(repository, "SEND_SLICE", 20_000)
    monkeypatch.setattr(repository, "SEND_QUEUE", 1 << 30)
    backend = LocalDirBackend(tmp_path / "store", fsync=False)
    repo = _create(backend)
    gate = threading.Event()
    calls = [0]
    real = local_module._FileWrite.write

    def flaky(self: object, data: bytes) -> None:
        calls[0] += 1
        if calls[0] == 1:
            assert gate.wait(10)  # the whole pack is queued before anything is written
        if calls[0] == 2:
            raise NoSpaceError("(new value)")
        real(self, data)  # type: ignore[arg-type]

    monkeypatch.setattr(local_module._FileWrite, "write", flaky)
    blobs = [random.Random(i).randbytes(10_000) for i in range(SMALL_PACK // 10_000 + 2)]
    session = repo.new_session()
    for raw in blobs:  # one full pack and the start of the next
        bid = hash_bytes(raw)
        assert session.reserve(bid)
        session.add(bid, KIND_CHUNK, 0, len(raw), raw)
    gate.set()
    session._sender.submit(lambda: None).result()  # every slice sent (or refused)
    for fut in list(session._uploads):
        fut.result()
    assert list(backend.list(PACKS)) == []
    with pytest.raises(NoSpaceError):
        session.flush()
    session.abort()
    assert list(backend.list(PACKS)) == []
    assert not [p for p in (tmp_path / "store").iterdir() if p.name.endswith(TEMP_SUFFIX)]


# ---------------------------------------------------------------------------- visibility


class StatCounting:
    """A memory backend that claims (or not) ordered visibility and counts pack stats."""

    def __init__(self, ordered: bool) -> None:
        self.inner = MemoryBackend()
        self.ordered = ordered
        self.pack_stats = 0

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self.inner, name)

    @property
    def capabilities(self) -> Capabilities:
        return dataclasses.replace(self.inner.capabilities, ordered_visibility=self.ordered)

    def stat(self, key: str):  # type: ignore[no-untyped-def]
        if key.startswith(PACKS):
            self.pack_stats += 1
        return self.inner.stat(key)


@pytest.mark.parametrize("ordered", [False, True])
def test_recent_version_is_checked_pack_by_pack_only_where_visibility_is_unordered(
    ordered: bool,
) -> None:
    """On Drive a fresh ref entry may arrive before its packs: each pack is checked. On
    S3 (ordered visibility) the write order alone guarantees them: no pack is probed."""
    backend = StatCounting(ordered)
    repo = _create(backend)  # type: ignore[arg-type]
    ids = _store(repo, _blobs(20))
    entries = tuple(
        TreeEntry(f"f{i:03d}", EntryKind.FILE, 0o644, 1, 10_000, bid, (ChunkRef(bid, 10_000),))
        for i, bid in enumerate(ids)
    )
    with repo.new_session() as session:
        tree_id = session.store_tree(Tree(entries))
        session.flush()
    cid = repo.save_commit(Commit(tree_id, (), "v1", "me", time.time_ns()))
    repo.refs.update("heads/main", target=cid, expected=repo.refs.state("heads/main"))
    reader = _open(backend)  # type: ignore[arg-type]
    assert resolve_ref(reader, "main").commit_id == cid
    packs = {reader.locate(b).pack_id for b in ids}  # type: ignore[union-attr]
    assert backend.pack_stats == (0 if ordered else len(packs))


class ReadCounting:
    """Counts reads (whole or ranged) of pack keys."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.pack_reads = 0

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self.inner, name)

    def read(self, key: str) -> bytes:
        self.pack_reads += key.startswith(PACKS)
        return self.inner.read(key)

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        self.pack_reads += key.startswith(PACKS)
        return self.inner.read_range(key, offset, length)


@pytest.mark.parametrize("cached", [True, False])
def test_trees_of_a_small_metadata_pack_cost_one_read(cached: bool, tmp_path: Path) -> None:
    inner = MemoryBackend()
    writer = _create(inner, pack_size=1 << 20)
    x = hash_bytes(b"x")
    trees = [
        Tree((TreeEntry("f", EntryKind.FILE, 0o644, i, 1, x, (ChunkRef(x, 1),)),))
        for i in range(40)
    ]
    with writer.new_session() as session:
        ids = [session.store_tree(t) for t in trees]
        session.flush()
    counting = ReadCounting(inner)
    reader = _open(counting, tmp_path / "cache" if cached else None)  # type: ignore[arg-type]
    assert [reader.load_tree(i) for i in ids] == trees
    assert counting.pack_reads == (1 if cached else len(ids))
