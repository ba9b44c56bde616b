"""Commit's pipeline, end to end: reader threads chunk and hash files, a pool compresses
new chunks, upload threads send full packs. Whatever the number of workers and the order in
which they finish, the commit is the same. An error in any thread, or Ctrl-C in the main
thread, stops every thread promptly, commits nothing, keeps the worktree as it was, and the
packs that landed are reused by the rerun.
"""

from __future__ import annotations

import errno
import functools
import itertools
import random
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest

import cas
import cas.ingest as ingest
from cas.api import Repo
from cas.errors import NoSpaceError, WorktreeReadError
from cas.layout import PACKS
from cas.packs import read_pack_entries
from cas.repository import WriteSession
from tests.assets import (
    AssetSpec,
    age_tree,
    assert_same_tree,
    generate_assets,
    snapshot_tree,
    wait_out_racy_window,
)
from tests.conftest import SMALL_CHUNKER, SMALL_PACK

SPEC = AssetSpec(small_files=80, classes=4, large_bytes=3 << 20, jsonl_files=1, jsonl_lines=400)


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("commit-pipeline") / "assets"
    generate_assets(root, SPEC, seed=21)
    return root


def _init(tmp_path: Path, assets: Path, name: str = "") -> Repo:
    wt = Path(shutil.copytree(assets, tmp_path / f"wt{name}", symlinks=True))
    return cas.init(
        tmp_path / f"store{name}",
        wt,
        cache_dir=tmp_path / f"cache{name}",
        progress=False,
        chunker=SMALL_CHUNKER,
        pack_size=SMALL_PACK,
    )


def _cas_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("cas-")]


def _pack_count(store: Path) -> int:
    return sum(1 for p in (store / PACKS).rglob("*") if p.is_file())


# ---------------------------------------------------------------------------- ordering


def test_the_commit_is_the_same_whatever_the_workers_and_their_timing(
    tmp_path: Path, assets: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """1, 3 or 8 readers, compressions that finish in a random order: one tree id, and a
    clone of each commit is the folder."""
    real = ingest.compress
    rng = random.Random(3)
    lock = threading.Lock()

    def jittery(data: bytes, level: int, *, planes: bool = False) -> tuple[int, bytes]:
        with lock:
            pause = rng.random() * 0.002
        time.sleep(pause)
        return real(data, level, planes=planes)

    trees = set()
    for n, (workers, jitter) in enumerate([(1, False), (3, True), (8, True)]):
        if jitter:
            monkeypatch.setattr(ingest, "compress", jittery)
        with _init(tmp_path, assets, str(n)) as repo:
            repo.workers = workers
            cid = repo.commit("v1").commit_id
            trees.add(repo.repository.load_commit(cid).tree)
        cas.clone(
            tmp_path / f"store{n}",
            tmp_path / f"clone{n}",
            progress=False,
            cache_dir=tmp_path / f"clone-cache{n}",
        ).close()
        assert_same_tree(snapshot_tree(assets), tmp_path / f"clone{n}")
        monkeypatch.setattr(ingest, "compress", real)
    assert len(trees) == 1


def _nested(root: Path, rng: random.Random) -> None:
    """Folders inside folders, each with a few files: parents walked while their
    sub-folders' files are still being read."""
    for top in range(3):
        for sub in range(3):
            d = root / f"t{top}" / f"s{sub}" / "leaf"
            d.mkdir(parents=True)
            for k in range(6):
                (d / f"f{k}").write_bytes(rng.randbytes(rng.randint(0, 3000)))
            for k in range(4):
                (d.parent / f"g{k}").write_bytes(rng.randbytes(rng.randint(0, 3000)))
        (root / f"t{top}" / "h").write_bytes(rng.randbytes(500))


def test_trees_are_built_while_files_are_still_being_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A folder's tree is stored as soon as its files are read and its sub-folders built,
    not after the whole worktree is read: with one reader the first
    trees come long before the last read. Reads that finish in any order, with 1, 2 or
    5 readers, give one root tree, and a commit with the stat cache rebuilds the same."""
    src = tmp_path / "src"
    _nested(src, random.Random(8))
    age_tree(src, seed=1)  # the copies keep these mtimes
    real_read = ingest.read_path_content
    real_store = WriteSession.store_tree
    events: list[str] = []
    lock = threading.Lock()
    rng = random.Random(5)

    def slow_read(path, chunker, on_chunk=None, **kw):  # type: ignore[no-untyped-def]
        with lock:
            pause = rng.random() * 0.003
        time.sleep(pause)  # reads finish out of order
        content = real_read(path, chunker, on_chunk, **kw)
        with lock:
            events.append("read")
        return content

    def store_tree(self, tree):  # type: ignore[no-untyped-def]
        events.append("tree")
        return real_store(self, tree)

    monkeypatch.setattr(ingest, "read_path_content", slow_read)
    monkeypatch.setattr(WriteSession, "store_tree", store_tree)
    monkeypatch.setattr(ingest, "BATCH_FILES", 4)  # batches far smaller than the tree
    roots = set()
    for n, workers in enumerate((1, 2, 5)):
        events.clear()
        with _init(tmp_path, src, str(n)) as repo:
            repo.workers = workers
            wait_out_racy_window(repo.root)  # so that the stat cache vouches for each file
            cid = repo.commit("v1").commit_id
            roots.add(repo.repository.load_commit(cid).tree)
            if workers == 1:
                last_read = len(events) - 1 - events[::-1].index("read")
                assert events.index("tree") < last_read / 2
                assert events.count("tree") == 1 + 3 + 9 + 9  # root, t*, t*/s*, leaves
            (repo.root / "t1" / "s2" / "leaf" / "f0").write_bytes(b"changed")
            events.clear()
            again = repo.commit("v2")
            assert events.count("read") == 1  # the stat cache vouches for the rest
            changed = repo.repository.load_commit(again.commit_id).tree
            (repo.root / ".cas" / "statcache").unlink()
            full = repo.commit("v2, everything read again")
            assert repo.repository.load_commit(full.commit_id).tree == changed
    assert len(roots) == 1


def _dirs(n: int) -> list[ingest._Dir]:
    return [ingest._Dir(str(k).encode(), [], {}, {}, 0) for k in range(n)]


@pytest.mark.parametrize("workers", [1, 2, 5])
def test_files_are_read_in_batches_and_come_back_in_order_within_the_window(
    workers: int,
) -> None:
    """Small files go to the readers many to a task, a large one ends its batch, the
    contents come back in the order the files were given, whatever order the reads end
    in, and no more than the window is ever queued."""
    rng = random.Random(workers)
    dirs = _dirs(3)
    lock = threading.Lock()
    started: list[tuple[bytes, int]] = []

    def read(d: ingest._Dir, i: int) -> object:
        with lock:
            started.append((d.rel, i))
            pause = rng.random() * 0.0005
        time.sleep(pause)
        return (d.rel, i)

    reads = ingest._BoundedReads(read, 300, workers)  # type: ignore[arg-type]
    tasks = []
    real_dispatch = reads._dispatch

    def dispatch() -> None:
        tasks.append(len(reads._batch))
        real_dispatch()

    reads._dispatch = dispatch  # type: ignore[method-assign]
    order = [(dirs[k % 3], k) for k in range(2000)]
    got = []
    try:
        for n, (d, i) in enumerate(order):
            size = 50 << 20 if n == 1000 else 5000  # one large file among small ones
            got += reads.submit(d, i, size)
            assert reads._queued + len(reads._batch) <= 300
        got += list(reads.drain())
    finally:
        reads.close()
    assert [(d.rel, i) for d, i, _c in got] == [(d.rel, i) for d, i in order]
    assert all(c == (d.rel, i) for d, i, c in got)
    assert sorted(started) == sorted((d.rel, i) for d, i in order)
    assert sum(tasks) == 2000
    assert max(tasks) <= ingest.BATCH_FILES
    assert len(tasks) < 2000 / 4, "a task per file"


def test_a_failed_read_in_a_batch_reaches_the_caller_and_cancel_drops_the_rest() -> None:
    dirs = _dirs(1)
    read_files: list[int] = []

    def read(d: ingest._Dir, i: int) -> object:
        if i == 70:
            raise WorktreeReadError("f70", OSError(errno.EIO, "Input/output error"))
        read_files.append(i)
        return i

    reads = ingest._BoundedReads(read, 10_000, 1)  # type: ignore[arg-type]

    def read_all() -> None:
        try:
            for i in range(5000):
                reads.submit(dirs[0], i, 100)
            list(reads.drain())
        except BaseException:
            reads.cancel()
            raise
        finally:
            reads.close()

    with pytest.raises(WorktreeReadError, match="f70"):
        read_all()
    assert 70 not in read_files
    assert len(read_files) < 5000 - 1


# ---------------------------------------------------------------------------- failures


def _assert_nothing_committed(repo: Repo, before: dict[str, object]) -> None:
    """No version, the folder untouched, no thread left, and every pack that landed is
    indexed (no orphan: a rerun deduplicates against all of them)."""
    assert repo.log() == []
    assert snapshot_tree(repo.root) == before
    assert _cas_threads() == []
    report = repo.verify()
    assert report.ok, report.problems
    assert report.orphan_packs == []


def test_a_file_that_cannot_be_read_stops_the_commit_naming_it(
    tmp_path: Path, assets: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """EIO halfway through the large file, in a reader thread: the commit stops with one
    error naming the file; nothing is committed; the rerun commits everything."""
    real = ingest.read_path_content
    large = max(assets.rglob("*"), key=lambda p: p.lstat().st_size)

    def failing(path, chunker, on_chunk=None, **kw):  # type: ignore[no-untyped-def]
        if path.endswith(large.name.encode()):
            done = [0]

            def cut(cid, view):  # type: ignore[no-untyped-def]
                done[0] += len(view)
                if done[0] > 1 << 20:
                    raise OSError(errno.EIO, "Input/output error")
                on_chunk(cid, view)

            return real(path, chunker, cut, **kw)
        return real(path, chunker, on_chunk, **kw)

    monkeypatch.setattr(ingest, "read_path_content", failing)
    with _init(tmp_path, assets) as repo:
        before = snapshot_tree(repo.root)
        with pytest.raises(WorktreeReadError, match=rf"cannot read .*{large.name}: Input/output"):
            repo.commit("v1")
        _assert_nothing_committed(repo, before)
        monkeypatch.setattr(ingest, "read_path_content", real)
        repo.commit("v1")
    cas.clone(tmp_path / "store", tmp_path / "clone", progress=False).close()
    assert_same_tree(snapshot_tree(assets), tmp_path / "clone")


class _FullAfter:
    """The store's backend, with pack writes failing as a full disk once ``n`` landed."""

    def __init__(self, inner: object, n: int) -> None:
        self._inner = inner
        self._left = itertools.count(n, -1)

    def write(self, key: str, data: bytes, *, if_absent: bool = False) -> None:
        if key.startswith(PACKS) and next(self._left) <= 0:
            raise NoSpaceError(key)
        self._inner.write(key, data, if_absent=if_absent)  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)


def test_an_upload_error_stops_the_readers_and_the_rerun_reuses_what_landed(
    tmp_path: Path, assets: Path
) -> None:
    with _init(tmp_path, assets) as repo:
        before = snapshot_tree(repo.root)
        repo.repository.backend = _FullAfter(repo.repository.backend, 6)  # type: ignore[assignment]
        with pytest.raises(NoSpaceError):
            repo.commit("v1")
        repo.repository.backend = repo.repository.backend._inner  # type: ignore[attr-defined]
        _assert_nothing_committed(repo, before)
        assert _pack_count(tmp_path / "store") >= 6
    _assert_rerun_reuses(tmp_path, assets)


def _tail(data: bytes, n: int) -> bytes:
    return data[len(data) - n :]


def _assert_rerun_reuses(tmp_path: Path, assets: Path) -> None:
    """A rerun with an empty cache (a fresh runtime) uploads only what had not landed:
    afterwards no blob is stored in two packs, and every version is whole."""
    shutil.rmtree(tmp_path / "cache")
    with cas.open(tmp_path / "wt", cache_dir=tmp_path / "cache", progress=False) as repo:
        repo.commit("v1")
        report = repo.verify(read_data=True)
        assert report.ok and report.orphan_packs == []
    seen: set[bytes] = set()
    for pack in (tmp_path / "store" / PACKS).rglob("*"):
        if pack.is_file():
            data = pack.read_bytes()
            tail = functools.partial(_tail, data)
            for entry in read_pack_entries(tail, len(data), pack.name):
                assert entry.blob_id not in seen, "a chunk was uploaded twice"
                seen.add(entry.blob_id)
    cas.clone(tmp_path / "store", tmp_path / "clone", progress=False).close()
    assert_same_tree(snapshot_tree(assets), tmp_path / "clone")


def test_ctrl_c_stops_every_thread_commits_nothing_and_the_rerun_reuses_the_packs(
    tmp_path: Path, assets: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGINT to the main thread while readers, compressors and uploads run: the readers
    stop at their next chunk (the large file is not read to its end), every thread is
    gone when KeyboardInterrupt arrives, the packs that landed are indexed, and a rerun
    on a fresh cache stores only the rest."""
    main = threading.main_thread().ident
    assert main is not None
    real = ingest.read_path_content
    chunks = itertools.count(1)
    read = [0]

    def counting(path, chunker, on_chunk=None, **kw):  # type: ignore[no-untyped-def]
        def count(cid, view):  # type: ignore[no-untyped-def]
            n = next(chunks)
            read[0] += len(view)
            if n == 300:
                signal.pthread_kill(main, signal.SIGINT)
            on_chunk(cid, view)

        return real(path, chunker, count, **kw)

    monkeypatch.setattr(ingest, "read_path_content", counting)
    with _init(tmp_path, assets) as repo:
        before = snapshot_tree(repo.root)
        repo.workers = 2
        with pytest.raises(KeyboardInterrupt):
            repo.commit("v1")
        total = sum(p.stat().st_size for p in assets.rglob("*") if p.is_file())
        assert read[0] < total / 2, "the readers went on after Ctrl-C"
        monkeypatch.setattr(ingest, "read_path_content", real)
        _assert_nothing_committed(repo, before)
        assert _pack_count(tmp_path / "store") >= 1
    _assert_rerun_reuses(tmp_path, assets)


# ---------------------------------------------------------------------------- progress


class _Recorder:
    """A Progress that checks what it is told: the total is known before bytes arrive."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.phases: list[tuple[str, str]] = []
        self.expected = self.done = 0
        self.ahead = True  # every advance stayed within the total announced so far

    def start(self, total: int, unit: str, label: str) -> None:
        self.phases.append((label, unit))
        self.expected, self.done = total, 0

    def expect(self, n: int) -> None:
        with self.lock:
            self.expected += n

    def advance(self, n: int) -> None:
        with self.lock:
            self.done += n
            self.ahead = self.ahead and self.done <= self.expected

    def finish(self) -> None:
        pass


def test_commit_and_checkout_report_every_byte_against_a_known_total(
    tmp_path: Path, assets: Path
) -> None:
    with _init(tmp_path, assets) as repo:
        commit = repo.progress = _Recorder()
        result = repo.commit("v1")
        assert commit.phases == [("commit", "B")]
        assert commit.done == commit.expected == result.scanned_bytes > 0
        assert commit.ahead
    clone = cas.clone(tmp_path / "store", tmp_path / "clone", progress=False)
    with clone:
        checkout = clone.progress = _Recorder()
        big = max(
            (
                p
                for p in (tmp_path / "clone").rglob("*")
                if p.is_file() and not p.is_symlink() and ".cas" not in p.parts
            ),
            key=lambda p: p.stat().st_size,
        )
        big.unlink()
        clone.checkout("HEAD", force=True)
        assert checkout.phases == [("checkout", "B")]
        assert checkout.done == checkout.expected == big.stat().st_size
        assert checkout.ahead
