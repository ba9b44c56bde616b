"""The repository: a backend plus the formats on it, and the only module combining them.

A :class:`Repository` opens a store (reads and checks its config), loads the chunk index
from the index segments, reads blobs (verifying every one against its id), trees and
commits, and — through a :class:`WriteSession` — writes new blobs into packs, then the
index segment that lists them, in the order of invariant 2:

    packs → index segment → (trees travel inside packs) → commit → ref entry

The ref entry is written by the caller (:mod:`cas.refs`) and is the only commit point.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from cas._faults import crash_point
from cas.cache import LocalCache
from cas.chunking import ChunkerParams
from cas.codec import decode_commit, decode_tree, encode_commit, encode_tree
from cas.compression import compress, decompress
from cas.config import (
    DEFAULT_PACK_SIZE,
    DEFAULT_ZSTD_LEVEL,
    NEW_STORE_FEATURES,
    StoreConfig,
    decode_config,
    encode_config,
)
from cas.errors import (
    AlreadyExistsError,
    CasError,
    HashMismatchError,
    IntegrityError,
    MissingDataError,
    ObjectNotFoundError,
    RepositoryNotFoundError,
)
from cas.hashing import StreamHasher, hash_bytes
from cas.ids import ObjectId
from cas.index import (
    BlobLocation,
    ChunkIndex,
    ParsedSegment,
    decode_segment,
    encode_segment,
    parse_segment,
)
from cas.layout import (
    COMMITS,
    CONFIG_KEY,
    INDEX,
    JOURNAL,
    REFS,
    commit_key,
    index_key,
    journal_key,
    pack_key,
    parse_object_key,
    ref_folder,
)
from cas.objects import Commit, Tree
from cas.packs import KIND_CHUNK, KIND_TREE, PackEntry, PackWriter
from cas.refs import RefState, RefStore, claim_folder
from cas.store.base import Backend, PendingWrite, begin_write, make_folders

log = logging.getLogger(__name__)

# A metadata pack up to this size is fetched whole (and cached) when one of its trees is
# read: one request instead of one per directory.
TREE_PACK_PREFETCH = 8 << 20
# Small requests (a stat, an index segment) sent at once where many are needed.
PARALLEL_REQUESTS = 8

T = TypeVar("T")
R = TypeVar("R")


def commit_id_of(commit: Commit) -> ObjectId:
    """The id a commit has once written (:meth:`Repository.save_commit`)."""
    return ObjectId(hash_bytes(encode_commit(commit)))


class _PreloadStopped(Exception):
    """An index preload stopped before it finished (nothing was added)."""


class Repository:
    """An open store."""

    def __init__(
        self, backend: Backend, config: StoreConfig, cache: LocalCache, writer: str
    ) -> None:
        self.backend = backend
        self.config = config
        self.cache = cache
        self.writer = writer
        self.refs = RefStore(backend, cache, writer)
        self.index = ChunkIndex()
        self._segments: set[ObjectId] = set()
        self._superseded: set[ObjectId] = set()  # see replace_index
        self._index_loaded = False
        self._index_lock = threading.Lock()
        self._preload_stop = threading.Event()
        self._preload: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    def create(
        cls,
        backend: Backend,
        *,
        cache_root: Path | None,
        writer: str,
        chunker: ChunkerParams | None = None,
        pack_size: int = DEFAULT_PACK_SIZE,
        zstd_level: int = DEFAULT_ZSTD_LEVEL,
        default_branch: str = "main",
    ) -> Repository:
        """Create a new store on ``backend`` and return it opened.

        Raises:
            AlreadyExistsError: a store already exists there.
        """
        config = StoreConfig(
            store_id=secrets.token_hex(16),
            created_ns=time.time_ns(),
            chunker=chunker or ChunkerParams(),
            zstd_level=zstd_level,
            pack_size=pack_size,
            mandatory_features=NEW_STORE_FEATURES,
        )
        config.chunker.validate()
        encoded = encode_config(config)
        try:
            backend.write(CONFIG_KEY, encoded, if_absent=True)
        except AlreadyExistsError:
            if not _landed(backend, CONFIG_KEY, encoded):
                raise AlreadyExistsError(
                    f"a cas store at {backend.location}",
                    hint="attach a worktree to it with `cas clone STORE DIR`",
                ) from None
        # The folders every commit writes into, made now rather than by the first commit
        # (on a Drive mount, a few round trips each). Pack fan-out folders come as needed.
        branch = f"heads/{default_branch}"
        folders = [INDEX, COMMITS, ref_folder(branch), ref_folder("HEAD"), f"{REFS}tags/"]
        if backend.capabilities.conditional_write:
            folders += [claim_folder(branch), claim_folder("HEAD")]
        make_folders(backend, folders)
        return cls._finish_create(backend, config, cache_root, writer, default_branch)

    @classmethod
    def _finish_create(
        cls,
        backend: Backend,
        config: StoreConfig,
        cache_root: Path | None,
        writer: str,
        default_branch: str,
    ) -> Repository:
        repo = cls(backend, config, _cache_for(cache_root, config), writer)
        repo.refs.update(
            "HEAD",
            target=None,
            symbolic=f"heads/{default_branch}",
            expected=repo.refs.state("HEAD"),
        )
        return repo

    @classmethod
    def open(cls, backend: Backend, *, cache_root: Path | None, writer: str) -> Repository:
        """Open an existing store.

        Raises:
            RepositoryNotFoundError: no config at the location.
            UnsupportedFormatError: the store is of a newer format.
        """
        try:
            raw = backend.read(CONFIG_KEY)
        except ObjectNotFoundError:
            raise RepositoryNotFoundError(backend.location) from None
        config = decode_config(raw, f"config of {backend.location}")
        return cls(backend, config, _cache_for(cache_root, config), writer)

    def close(self) -> None:
        """Release the backend (stopping an index preload still running)."""
        self.stop_preload()
        self.backend.close()

    # ------------------------------------------------------------------ index

    def load_index(self, *, refresh: bool = False) -> ChunkIndex:
        """Load every index segment not loaded yet (all of them the first time)."""
        return self._load_index(refresh, None)

    def _load_index(self, refresh: bool, stop: threading.Event | None) -> ChunkIndex:
        """:meth:`load_index`; with ``stop``, reads not started when it is set are not
        made and :class:`_PreloadStopped` is raised, the index left as it was."""
        with self._index_lock:
            if self._index_loaded and not refresh:
                return self.index
            todo = []
            for key in self.backend.list_keys(INDEX):
                seg_id = parse_object_key(key, INDEX)
                if (
                    seg_id is not None
                    and seg_id not in self._segments
                    and seg_id not in self._superseded
                ):
                    todo.append((key, seg_id))

            def read(item: tuple[str, ObjectId]) -> tuple[ObjectId, ParsedSegment] | None:
                if stop is not None and stop.is_set():
                    raise _PreloadStopped
                key, seg_id = item
                what = f"index segment {seg_id.short}"
                try:
                    return seg_id, parse_segment(self._read_verified(key, seg_id, what), what)
                except (IntegrityError, ObjectNotFoundError) as exc:
                    # Derived data: a segment still being uploaded (a zero-byte Drive
                    # "ghost") or damaged is skipped; `cas repair` rebuilds the index.
                    log.warning("skipping %s: %s", what, exc)
                    return None

            parsed = []
            for got in self.in_parallel(read, todo):
                if got is not None:
                    self._segments.add(got[0])
                    parsed.append(got[1])
            self.index.add_parsed(parsed)
            self._index_loaded = True
            return self.index

    def load_index_soon(self) -> None:
        """Start loading the index on a thread of its own, for an operation that will
        need it after other reads (a checkout resolves its ref and reads the commit
        first): on a Drive mount the two sets of round trips then overlap. Whoever calls
        :meth:`load_index` meanwhile waits for it; a failure here is left for that call
        to meet and report. :meth:`stop_preload` (or :meth:`close`) ends it early, so
        that a command that fails before it needs the index (an unknown ref) does not
        wait for segments it will never use."""
        running = self._preload
        if self._index_loaded or (
            running is not None and running.is_alive() and not self._preload_stop.is_set()
        ):
            return  # loaded, or on its way
        stop = self._preload_stop = threading.Event()

        def load() -> None:
            try:
                self._load_index(False, stop)
            except _PreloadStopped:
                log.debug("index preload stopped")
            except Exception as exc:  # noqa: BLE001 - never a traceback from a preload
                # (the command may have ended and closed the backend meanwhile)
                log.debug("index preload failed: %s", exc)

        self._preload = threading.Thread(target=load, name="cas-index", daemon=True)
        self._preload.start()

    def stop_preload(self) -> None:
        """Stop an index preload still running: reads not started are not made (one
        that is loading for a caller of :meth:`load_index` is unaffected: that caller
        loads what is left itself)."""
        self._preload_stop.set()

    def index_segments(self) -> frozenset[ObjectId]:
        """The ids of the index segments loaded or written by this process."""
        with self._index_lock:
            return frozenset(self._segments)

    def replace_index(self, index: ChunkIndex, superseded: Iterable[ObjectId] = ()) -> None:
        """Use ``index`` (rebuilt by repair) instead of the segments on the store.

        The ``superseded`` segments (those ``index`` was rebuilt to replace, still on the
        store until repair deletes them) are never loaded into it again: a refresh — a
        read that misses, say — would otherwise add back their entries for packs that
        are gone or damaged. Segments written later are loaded as usual.
        """
        with self._index_lock:
            self.index = index
            self._segments.clear()  # the index is no longer those segments
            self._superseded.update(superseded)
            self._index_loaded = True

    def _read_verified(self, key: str, oid: ObjectId, what: str, *, cache: bool = True) -> bytes:
        """Read an immutable object (cache first), checking it against its id."""
        data = self.cache.get(key) if cache else None
        if data is not None:
            if hash_bytes(data) == oid:
                return data
            self.cache.evict(key)
        data = self.backend.read(key)
        actual = hash_bytes(data)
        if actual != oid:
            raise HashMismatchError(what, oid.hex(), actual.hex())
        if cache:
            self.cache.put(key, data)
        return data

    # ------------------------------------------------------------------ blobs

    def read_pack(self, pack_id: ObjectId) -> bytes:
        """A whole pack, verified against its id; cached for later checkouts."""
        return self._read_verified(pack_key(pack_id), pack_id, f"pack {pack_id.hex()}")

    def fetch_pack(self, pack_id: ObjectId) -> tuple[bytes, bool]:
        """A whole pack from the remote and whether it matches its id.

        A pack that matches is cached. One that does not is still returned, so that the
        caller can use the blobs that verify on their own and name the damaged ones.
        """
        key = pack_key(pack_id)
        data = self.backend.read(key)
        intact = hash_bytes(data) == pack_id
        if intact:
            self.cache.put(key, data)
        else:
            log.info("pack %s does not match its id; checking its chunks one by one", pack_id)
        return data, intact

    def read_pack_range(self, pack_id: ObjectId, offset: int, length: int) -> bytes:
        """Bytes of a pack (from the cache when the pack is cached)."""
        key = pack_key(pack_id)
        data = self.cache.read_range(key, offset, length)
        if data is None:
            try:
                data = self.backend.read_range(key, offset, length)
            except ObjectNotFoundError as exc:  # indexed, so once stored: lost since
                raise MissingDataError(f"pack {pack_id.hex()} is missing from the store") from exc
        return data

    def decode_blob(
        self, blob_id: ObjectId, codec: int, raw_len: int, stored: bytes, pack_id: ObjectId
    ) -> bytes:
        """Decompress a blob's stored bytes and check them against its id.

        Raises:
            IntegrityError: the bytes are damaged; the message names pack and blob.
        """
        what = f"chunk {blob_id.hex()} in pack {pack_id.hex()}"
        raw = decompress(codec, stored, raw_len, what)
        actual = hash_bytes(raw)
        if actual != blob_id:
            raise HashMismatchError(what, blob_id.hex(), actual.hex())
        return raw

    def locate(self, blob_id: ObjectId) -> BlobLocation | None:
        """Where a blob is; the index is re-read once if it does not know the blob yet.

        Another writer may have committed since this repository loaded the index.
        """
        loc = self.load_index().lookup(blob_id)
        if loc is None:
            loc = self.load_index(refresh=True).lookup(blob_id)
        return loc

    def read_blob(self, blob_id: ObjectId) -> bytes:
        """One blob's raw bytes, verified.

        Raises:
            MissingDataError: no known pack holds the blob.
            IntegrityError: the stored bytes are damaged.
        """
        loc = self.locate(blob_id)
        if loc is None:
            raise MissingDataError(f"chunk {blob_id.hex()} is in no indexed pack")
        stored = self.read_pack_range(loc.pack_id, loc.offset, loc.stored_len)
        try:
            return self.decode_blob(blob_id, loc.codec, loc.raw_len, stored, loc.pack_id)
        except IntegrityError:
            if not self.cache.has(pack_key(loc.pack_id)):
                raise
            # A damaged cached copy: drop it and read from the remote.
            self.cache.evict(pack_key(loc.pack_id))
            stored = self.backend.read_range(pack_key(loc.pack_id), loc.offset, loc.stored_len)
            return self.decode_blob(blob_id, loc.codec, loc.raw_len, stored, loc.pack_id)

    # ------------------------------------------------------------------ trees, commits

    def load_tree(self, tree_id: ObjectId, *, at_root: bool = False) -> Tree:
        """Load and decode a tree (cached locally once read)."""
        h = tree_id.hex()
        key = f"trees/{h[:2]}/{h}"
        data = self.cache.get(key)
        if data is None or hash_bytes(data) != tree_id:
            self._prefetch_tree_pack(tree_id)
            data = self.read_blob(tree_id)
            self.cache.put(key, data)
        return decode_tree(data, f"tree {tree_id.short}", at_root=at_root)

    def _prefetch_tree_pack(self, tree_id: ObjectId) -> None:
        """Cache the whole metadata pack of a tree about to be read, when it is small.

        A version's trees are usually in a few metadata packs, and whoever reads one tree
        reads its neighbours next: one request for the pack instead of one ranged read
        per directory (a round trip each on S3, a few metadata operations on Drive). Best
        effort: any failure leaves the ranged read to report the problem.
        """
        if not self.cache.enabled:
            return
        loc = self.load_index().lookup(tree_id)  # read_blob re-reads the index on a miss
        if loc is None or loc.kind != KIND_TREE or self.cache.has(pack_key(loc.pack_id)):
            return
        size = self.load_index().pack_size(loc.pack_id)
        if size is None or size > TREE_PACK_PREFETCH:
            return
        with contextlib.suppress(CasError):
            self.fetch_pack(loc.pack_id)

    def load_commit(self, commit_id: ObjectId) -> Commit:
        """Load a commit, verified against its id.

        Raises:
            ObjectNotFoundError: no such commit on the remote.
        """
        data = self._read_verified(commit_key(commit_id), commit_id, f"commit {commit_id.short}")
        return decode_commit(data, f"commit {commit_id.short}")

    def save_commit(self, commit: Commit) -> ObjectId:
        """Write a commit (create-only; an identical one already there is fine)."""
        data = encode_commit(commit)
        commit_id = ObjectId(hash_bytes(data))
        try:
            self.backend.write(commit_key(commit_id), data, if_absent=True)
        except AlreadyExistsError:
            pass
        self.cache.put(commit_key(commit_id), data)
        crash_point("after-commit-write")
        return commit_id

    def has_commit(self, commit_id: ObjectId) -> bool:
        """True when the commit object exists (cached or on the remote)."""
        return self._has(commit_key(commit_id))

    def has_pack(self, pack_id: ObjectId) -> bool:
        """True when the pack is on the store (or cached whole, hence verified)."""
        return self._has(pack_key(pack_id))

    def missing_packs(self, pack_ids: Iterable[ObjectId]) -> list[ObjectId]:
        """The packs of ``pack_ids`` that are not on the store, asked in parallel."""
        ids = list(pack_ids)
        return [
            p
            for p, there in zip(ids, self.in_parallel(self.has_pack, ids), strict=True)
            if not there
        ]

    def in_parallel(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        """``[fn(x) for x in items]``, with up to ``PARALLEL_REQUESTS`` (or the backend's
        ``max_connections``, if more) running at once: a store answers each small request
        after a round trip (tens of milliseconds on a Drive mount), not after its bytes.
        The first error is raised once every call has ended."""
        if len(items) <= 1:
            return [fn(x) for x in items]
        n = min(len(items), max(PARALLEL_REQUESTS, self.backend.capabilities.max_connections))
        with ThreadPoolExecutor(n, thread_name_prefix="cas-request") as pool:
            futures = [pool.submit(fn, x) for x in items]
        return [f.result() for f in futures]

    def _has(self, key: str) -> bool:
        if self.cache.has(key):
            return True
        try:
            self.backend.stat(key)
        except ObjectNotFoundError:
            return False
        return True

    def iter_commit_ids(self) -> Iterator[ObjectId]:
        """Every commit on the remote (unordered)."""
        for info in self.backend.list(COMMITS):
            oid = parse_object_key(info.key, COMMITS)
            if oid is not None:
                yield oid

    def branch_state(self, branch: str) -> RefState:
        """State of ``heads/<branch>``."""
        return self.refs.state(f"heads/{branch}")

    def new_session(self) -> WriteSession:
        """Start writing blobs; see :class:`WriteSession`."""
        return WriteSession(self)


def _landed(backend: Backend, key: str, data: bytes) -> bool:
    """True when ``key`` holds exactly ``data`` (an earlier attempt of this write landed)."""
    try:
        return backend.read(key) == data
    except ObjectNotFoundError:
        return False


def _cache_for(cache_root: Path | None, config: StoreConfig) -> LocalCache:
    return LocalCache(None if cache_root is None else cache_root / config.store_id)


def _wait(future: Future[str]) -> None:
    """Wait for ``future`` (raising its error)."""
    future.result()


# Write an index segment after this many uploaded packs. Between two checkpoints, each
# uploaded pack gets a journal entry (a segment of that one pack under journal/, deleted
# once a segment lists the pack): an interrupted commit leaves every complete pack findable
# on the remote, and a rerun on any machine reuses them all (WriteSession.adopt_journal).
# Readers never load the journal, so it costs them nothing; a segment per pack would.
CHECKPOINT_PACKS = 4
# A pack's bytes go to the sender thread in slices of this size as it fills, and at most
# SEND_QUEUE bytes wait for it.
SEND_SLICE = 4 << 20
SEND_QUEUE = 16 << 20
# Full packs on their way at once where the backend holds each in memory until stored.
BUFFERED_UPLOADS = 2


class _PackOut:
    """A pack on its way to the store: its bytes so far, hashed as they are written."""

    __slots__ = ("broken", "hasher", "pending")

    def __init__(self, pending: PendingWrite) -> None:
        self.pending = pending
        self.hasher = StreamHasher()
        self.broken = False  # a write failed: the pack's bytes are not what was hashed


class WriteSession:
    """Collects new blobs into packs, uploads them, then writes their index segment.

    Safe to use from several threads: :meth:`reserve` decides atomically which thread
    stores a blob never seen before; :meth:`add` lays it out in the open pack of its kind.
    A pack's bytes go, in slices of ``SEND_SLICE`` as it fills, to one sender thread,
    which hashes them and writes them in order to the pack's pending write: straight to
    the store where the backend streams (a folder on a local disk: a pack is then never
    held in memory whole), into a spool file on the local disk (a folder on a Drive
    mount, an object store: sent whole, with retries, at commit), or into one buffer
    stored with one write at commit (the memory backend, a wrapper without its own
    ``begin_write``). A full pack is committed under its name (the
    hash of its bytes) on an upload thread, at most ``max_uploads`` at once: by default
    the backend's ``max_uploads`` (or ``max_connections``), or ``BUFFERED_UPLOADS``
    where each pack on its way is held in memory. :meth:`flush` waits for the uploads
    and writes the index segment; only then may a commit reference the blobs.
    """

    def __init__(self, repo: Repository, *, max_uploads: int | None = None) -> None:
        self.repo = repo
        if max_uploads is None:
            caps = repo.backend.capabilities
            if caps.values_in_memory:
                max_uploads = BUFFERED_UPLOADS
            else:
                max_uploads = caps.max_uploads or caps.max_connections
        max_uploads = max(1, max_uploads)
        self._index = repo.load_index()
        # Reentrant: a done-callback runs at once, in the thread adding it, when its
        # future is done already, and _send adds them holding the lock.
        self._lock = threading.RLock()
        self._room = threading.Condition(self._lock)  # notified when bytes leave memory
        self._pending: set[bytes] = set()
        self._writers = {KIND_CHUNK: PackWriter(), KIND_TREE: PackWriter()}
        self._outs: dict[int, _PackOut | None] = {KIND_CHUNK: None, KIND_TREE: None}
        self._unfinished: set[_PackOut] = set()  # begun and neither committed nor dropped
        self._sends: list[Future[None]] = []
        self._uploads: list[Future[None]] = []
        self._failure: BaseException | None = None  # the first failed send or upload
        self._max_uploads = max_uploads
        self._in_flight = 0  # full packs being sent or committed
        self._queued = 0  # bytes handed to the sender and not written yet
        self._sender = ThreadPoolExecutor(1, thread_name_prefix="cas-send")
        self._pool = ThreadPoolExecutor(max_uploads, thread_name_prefix="cas-upload")
        # Writes each pack's journal entry while the pack's bytes travel, and deletes the
        # entries a segment has superseded: off the upload threads and the commit's
        # critical path (on a Drive mount each small write or delete is round trips).
        self._janitor = ThreadPoolExecutor(max_uploads, thread_name_prefix="cas-journal")
        self._packs: dict[ObjectId, tuple[int, list[PackEntry]]] = {}
        # Set while flush() waits for the last uploads: its own segment comes next, so no
        # checkpoint is written meanwhile (on a Drive mount each is a few round trips).
        self._flushing = False
        self.new_blobs = 0
        self.new_bytes = 0
        self.stored_bytes = 0
        self.packs_written = 0
        self.segments_written = 0
        self.segment_keys: list[str] = []  # every index segment this session wrote
        # Journal entries not yet covered by a segment of this session: pack → key.
        self._journal: dict[ObjectId, str] = {}
        self.adopted_packs = 0  # packs an interrupted commit left, reused (adopt_journal)
        self.adopted_bytes = 0

    def reserve(self, blob_id: ObjectId) -> bool:
        """True when the caller must store ``blob_id`` (first sight in store and session)."""
        with self._lock:
            if blob_id in self._pending or blob_id in self._index:
                return False
            self._pending.add(blob_id)
            return True

    def add(self, blob_id: ObjectId, kind: int, codec: int, raw_len: int, stored: bytes) -> None:
        """Append a reserved blob (already compressed) to the open pack of its kind.

        Back-pressure: while ``max_uploads`` full packs are on their way, or
        ``SEND_QUEUE`` bytes wait for the sender, callers wait here, so memory stays
        bounded however fast the producers are.
        """
        with self._room:
            self._wait_for_room()
            w = self._writers[kind]
            w.add(blob_id, kind, codec, raw_len, stored)
            self.new_blobs += 1
            self.new_bytes += raw_len
            if w.size >= self.repo.config.pack_size:
                self._send_last(kind)
            elif w.unsent >= SEND_SLICE:
                self._send(kind, w.take(), None)

    def _wait_for_room(self) -> None:
        """Wait (holding the lock) until fewer than ``max_uploads`` full packs are on
        their way and the sender's queue has room; raise the error of a failed upload."""
        while self._in_flight >= self._max_uploads or self._queued >= SEND_QUEUE:
            self._raise_failed_upload()
            self._room.wait(timeout=1.0)
        self._raise_failed_upload()

    def _send_last(self, kind: int) -> None:
        """Hand the full or final pack of ``kind`` to the sender (holding the lock)."""
        parts, total, entries = self._writers[kind].finish()
        self._writers[kind] = PackWriter()
        self._in_flight += 1
        self._send(kind, parts, (total, entries))
        self._outs[kind] = None

    def _send(
        self, kind: int, parts: list[bytes], last: tuple[int, list[PackEntry]] | None
    ) -> None:
        """Queue the next bytes of the pack of ``kind`` (holding the lock: the order of
        the queue is the order of the pack's bytes)."""
        out = self._outs[kind]
        if out is None:
            out = self._outs[kind] = _PackOut(begin_write(self.repo.backend))
            self._unfinished.add(out)
        size = sum(map(len, parts))
        self._queued += size
        fut = self._sender.submit(self._guarded, self._write_parts, out, parts, size, last)
        if last is not None:
            fut.add_done_callback(self._last_sent)
        if len(self._sends) >= 64:
            self._sends = [f for f in self._sends if not f.done()]
        self._sends.append(fut)

    def _write_parts(
        self, out: _PackOut, parts: list[bytes], size: int, last: tuple[int, list[PackEntry]] | None
    ) -> None:
        try:
            if out.broken:  # never commit a pack with a hole in it
                raise RuntimeError("pack abandoned: an earlier write of it failed")
            # One write and one hash update per slice, not two per blob (a header and
            # its bytes): on a folder of small images a write per 44-byte header cost
            # more than the copy into one buffer, which is let go once written.
            data = parts[0] if len(parts) == 1 else b"".join(parts)
            parts.clear()
            out.pending.write(data)
            out.hasher.update(data)
            del data
        except BaseException:
            out.broken = True
            raise
        finally:
            with self._room:
                self._queued -= size
                self._room.notify_all()
        if last is not None:
            total, entries = last
            digest = out.hasher.digest()
            fut = self._pool.submit(self._guarded, self._commit_pack, out, digest, total, entries)
            fut.add_done_callback(self._left_memory)
            with self._lock:
                self._uploads.append(fut)

    def _guarded(self, fn: Callable[..., None], *args: object) -> None:
        """Run a sender or upload job; its error is kept before its future is done, so
        no one who sees the future done can miss it."""
        try:
            fn(*args)
        except BaseException as exc:
            with self._lock:
                if self._failure is None:
                    self._failure = exc
            raise

    def _last_sent(self, fut: Future[None]) -> None:
        if fut.cancelled() or fut.exception() is not None:
            self._left_memory()  # not all its bytes went out: it is never committed

    def _left_memory(self, _fut: object = None) -> None:
        with self._room:
            self._in_flight -= 1
            self._room.notify_all()

    def _commit_pack(
        self, out: _PackOut, pack_id: ObjectId, total: int, entries: list[PackEntry]
    ) -> None:
        # The journal entry goes first: whenever this process dies, a pack that is on
        # the remote whole has one (or a segment lists it), so a rerun reuses it. An entry
        # whose pack never landed is only a hint: adopt_journal checks the pack is there.
        # It is written on the janitor thread while the pack's bytes travel (on a Drive
        # mount, seconds), and the pack waits for it only before its publishing rename.
        entry = self._janitor.submit(self._write_journal, pack_id, total, entries)
        try:
            try:
                out.pending.commit(
                    pack_key(pack_id), if_absent=True, before_publish=lambda: _wait(entry)
                )
            except AlreadyExistsError:
                pass  # same name, same bytes: written by an earlier, interrupted run
            except BaseException:
                # A failed commit may have left its temp value (say, when the journal
                # entry failed first): drop it; then the entry, if it was written.
                out.pending.abort()
                with contextlib.suppress(BaseException):
                    self._drop_journal([entry.result()])
                raise
            journal = entry.result()
        finally:
            with self._lock:
                self._unfinished.discard(out)
        crash_point("after-pack-upload")
        checkpoint = None
        with self._lock:
            self._packs[pack_id] = (total, entries)
            self._journal[pack_id] = journal
            self.stored_bytes += total
            self.packs_written += 1
            if len(self._packs) >= CHECKPOINT_PACKS and not self._flushing:
                checkpoint, self._packs = self._packs, {}
        if checkpoint is not None:
            # A checkpoint: if this commit is interrupted, a rerun (on any machine) finds
            # these packs through the index and does not upload their chunks again.
            self._write_segment(checkpoint)

    def store_tree(self, tree: Tree) -> ObjectId:
        """Encode a tree and store it as a blob unless the store has it; return its id."""
        data = encode_tree(tree)
        tree_id = hash_bytes(data)
        if self.reserve(tree_id):
            codec, stored = compress(data, self.repo.config.zstd_level)
            self.add(tree_id, KIND_TREE, codec, len(data), stored)
        return tree_id

    def _write_segment(self, packs: dict[ObjectId, tuple[int, list[PackEntry]]]) -> None:
        segment = encode_segment(packs)
        seg_id = hash_bytes(segment)
        try:
            self.repo.backend.write(index_key(seg_id), segment, if_absent=True)
        except AlreadyExistsError:
            pass
        self.repo.cache.put(index_key(seg_id), segment)
        self.segment_keys.append(index_key(seg_id))
        self._index.add_segment(packs)
        self.repo._segments.add(seg_id)
        self.segments_written += 1
        crash_point("after-index-write")
        # The segment lists these packs now: their journal entries have served.
        with self._lock:
            done = [self._journal.pop(p) for p in packs if p in self._journal]
        if done:
            self._drop_journal_soon(done)

    def _write_journal(self, pack_id: ObjectId, total: int, entries: list[PackEntry]) -> str:
        """Record, under ``journal/``, a pack about to be committed (create-only): what a
        rerun of a killed commit reads to reuse it. Returns the entry's key. A failure is
        the store's (a full disk, a dropped mount, after the retries of transient ones):
        it stops the commit like the failure of any other write."""
        entry = encode_segment({pack_id: (total, entries)})
        key = journal_key(hash_bytes(entry))
        try:
            self.repo.backend.write(key, entry, if_absent=True)
        except AlreadyExistsError:
            pass  # the same pack, recorded by an earlier, interrupted run
        return key

    def _drop_journal_soon(self, keys: list[str]) -> None:
        """Delete journal entries on the janitor thread (at once once it is shut down,
        as when :meth:`abort` indexes the packs that landed)."""
        try:
            self._janitor.submit(self._drop_journal, keys)
        except RuntimeError:  # shut down
            self._drop_journal(keys)

    def _drop_journal(self, keys: list[str]) -> None:
        for key in keys:
            try:
                self.repo.backend.delete(key)
            except CasError as exc:  # a leftover is harmless: the next commit drops it
                log.info("could not delete journal entry %s: %s", key, exc)

    def adopt_journal(self) -> None:
        """Reuse the packs that commits killed before their next checkpoint uploaded
        (their ``journal/`` entries): each one that is on the remote whole (its size as
        recorded) is indexed in this session and listed by its next segment, so none of
        its chunks is uploaded again. An entry whose packs are all indexed already is
        deleted; one whose pack is not there (yet: a Drive upload still on its way) is
        left for a later commit.
        """
        backend = self.repo.backend
        keys = [k for k in backend.list_keys(JOURNAL) if parse_object_key(k, JOURNAL)]
        stale: list[str] = []
        for key in keys:
            entry_id = parse_object_key(key, JOURNAL)
            assert entry_id is not None
            try:
                data = backend.read(key)
                if hash_bytes(data) != entry_id:
                    raise HashMismatchError(key, entry_id.hex(), hash_bytes(data).hex())
                packs = decode_segment(data, f"journal entry {entry_id.short}")
            except (IntegrityError, ObjectNotFoundError) as exc:
                log.info("journal entry %s not usable: %s", key, exc)  # a Drive ghost?
                continue
            fresh = {p: v for p, v in packs.items() if self._index.pack_size(p) is None}
            if not fresh:
                stale.append(key)
                continue
            for pack_id, (size, entries) in fresh.items():
                try:
                    whole = backend.stat(pack_key(pack_id)).size == size
                except ObjectNotFoundError:
                    # Never landed (its writer died first), or, on Drive, not visible yet:
                    # where writes are visible at once, the entry is dropped.
                    if backend.capabilities.ordered_visibility:
                        stale.append(key)
                    continue
                if not whole:
                    continue
                self._index.add_segment({pack_id: (size, entries)})
                with self._lock:
                    self._packs[pack_id] = (size, entries)
                    self._journal[pack_id] = key
                self.adopted_packs += 1
                self.adopted_bytes += size
        if stale:
            self._drop_journal_soon(stale)

    def _raise_failed_upload(self) -> None:
        if self._failure is not None:
            raise self._failure

    def flush(self) -> None:
        """Seal open packs, wait for every upload, write the index segment.

        After this returns, every blob added so far is durable and findable, and the
        session can go on accepting blobs.
        """
        with self._room:
            self._wait_for_room()
            for kind, w in self._writers.items():
                if w.count:
                    self._send_last(kind)
            sends, self._sends = self._sends, []
        with self._lock:
            self._flushing = True
        try:
            for fut in sends:
                fut.result()
            with self._lock:
                uploads, self._uploads = self._uploads, []
            for fut in uploads:
                fut.result()
            self._raise_failed_upload()  # a failure whose future was pruned from the lists
            with self._lock:
                packs, self._packs = self._packs, {}
        finally:
            with self._lock:
                self._flushing = False
        if packs:
            self._write_segment(packs)
        with self._lock:
            self._pending.clear()

    def close(self) -> None:
        """Stop the sender and upload threads (without flushing); drop unfinished packs;
        wait for the journal entries being deleted."""
        self._sender.shutdown(wait=True, cancel_futures=True)
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._janitor.shutdown(wait=True)
        with self._lock:
            unfinished, self._unfinished = self._unfinished, set()
        for out in unfinished:
            out.pending.abort()

    def abort(self) -> None:
        """Give up: drop queued uploads, wait for the running ones, and index the packs
        that landed completely, so that a rerun (on any machine) reuses them.

        Indexing them is safe: each is on the remote whole, and an index entry only says
        where a blob is (invariant 2). A failure to write that segment is logged and
        ignored; the packs then wait for ``cas repair`` or a rerun that writes them again.
        """
        self.close()
        with self._lock:
            packs, self._packs = self._packs, {}
        if not packs:
            return
        try:
            self._write_segment(packs)
        except Exception as exc:  # noqa: BLE001 (best effort: the original error matters more)
            log.warning("could not index %d uploaded packs: %s", len(packs), exc)

    def __enter__(self) -> WriteSession:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


__all__ = ["CHECKPOINT_PACKS", "Repository", "WriteSession"]
