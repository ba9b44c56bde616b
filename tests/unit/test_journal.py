"""The pack journal: a commit killed between checkpoints loses none of its complete packs.

A session writes ``journal/<id>`` (a segment of one pack) before it commits each pack,
and deletes the entries once a segment lists their packs. The next session adopts every
entry whose pack is on the store whole, and drops the entries it no longer needs.
"""

from __future__ import annotations

import random
from pathlib import Path

from cas.compression import compress
from cas.hashing import hash_bytes
from cas.layout import JOURNAL, PACKS
from cas.packs import KIND_CHUNK
from cas.repository import Repository, WriteSession
from cas.store.local import LocalDirBackend
from tests.conftest import SMALL_CHUNKER
from tests.crash.faulty import DriveView

PACK = 64 << 10


def _store(tmp_path: Path) -> LocalDirBackend:
    backend = LocalDirBackend(tmp_path / "store", fsync=False)
    Repository.create(
        backend, cache_root=None, writer="t", chunker=SMALL_CHUNKER, pack_size=PACK
    ).close()
    return backend


def _add(session: WriteSession, n: int, seed: int) -> list[bytes]:
    """``n`` incompressible 20 KB blobs (a few fill a pack)."""
    ids = []
    for i in range(n):
        raw = random.Random(seed * 1000 + i).randbytes(20_000)
        blob_id = hash_bytes(raw)
        assert session.reserve(blob_id)
        codec, stored = compress(raw, 1)
        session.add(blob_id, KIND_CHUNK, codec, len(raw), stored)
        ids.append(bytes(blob_id))
    return ids


def _journal(backend: LocalDirBackend) -> list[str]:
    return sorted(backend.list_keys(JOURNAL))


def _killed_session(backend: LocalDirBackend) -> tuple[list[bytes], set[str]]:
    """A session that uploaded a few packs and died before any segment: what a SIGKILL
    between two checkpoints leaves (its journal entries, its packs)."""
    repo = Repository.open(backend, cache_root=None, writer="killed")
    session = repo.new_session()
    ids = _add(session, 7, seed=1)  # two full packs go out; the third stays open
    session._send_last(KIND_CHUNK)  # and the open one too, as a full pack would
    for fut in list(session._sends) + list(session._uploads):
        fut.result()
    for fut in list(session._uploads):
        fut.result()
    session.close()  # no flush, no abort: nothing indexes them
    packs = set(backend.list_keys(PACKS))
    assert packs and len(_journal(backend)) == len(packs)
    return ids, packs


def test_a_rerun_adopts_every_complete_pack_and_clears_the_journal(tmp_path: Path) -> None:
    backend = _store(tmp_path)
    ids, packs = _killed_session(backend)
    repo = Repository.open(backend, cache_root=None, writer="rerun")
    with repo.new_session() as session:
        session.adopt_journal()
        assert session.adopted_packs == len(packs)
        assert all(not session.reserve(i) for i in ids)  # nothing to upload again
        session.flush()  # the segment lists the adopted packs ...
        assert session.stored_bytes == 0
    assert _journal(backend) == []  # ... and their entries are gone
    fresh = Repository.open(backend, cache_root=None, writer="reader")
    assert all(fresh.locate(i) is not None for i in ids)
    assert set(backend.list_keys(PACKS)) == packs


def test_an_entry_whose_pack_never_landed_is_dropped_where_writes_show_at_once(
    tmp_path: Path,
) -> None:
    backend = _store(tmp_path)
    _ids, packs = _killed_session(backend)
    lost = sorted(packs)[0]
    (tmp_path / "store" / lost).unlink()  # as if the kill came before its rename
    repo = Repository.open(backend, cache_root=None, writer="rerun")
    with repo.new_session() as session:
        session.adopt_journal()
        assert session.adopted_packs == len(packs) - 1
        session.flush()
    assert _journal(backend) == []


def test_on_drive_an_entry_whose_pack_is_not_visible_yet_is_kept(tmp_path: Path) -> None:
    backend = _store(tmp_path)
    _ids, packs = _killed_session(backend)
    late = sorted(packs)[0]
    view = DriveView(backend, hidden=lambda key: key == late)
    repo = Repository.open(view, cache_root=None, writer="rerun")
    session = repo.new_session()
    session.adopt_journal()
    assert session.adopted_packs == len(packs) - 1
    session.close()
    # Not deleted: the pack may still arrive (another machine's upload in flight).
    assert len(_journal(backend)) == len(packs)
    repo2 = Repository.open(backend, cache_root=None, writer="later")
    with repo2.new_session() as later:
        later.adopt_journal()
        assert later.adopted_packs == len(packs)
        later.flush()
    assert _journal(backend) == []


def test_a_damaged_entry_is_ignored_and_a_ghost_too(tmp_path: Path) -> None:
    backend = _store(tmp_path)
    _ids, packs = _killed_session(backend)
    entries = _journal(backend)
    (tmp_path / "store" / entries[0]).write_bytes(b"not a segment")
    (tmp_path / "store" / entries[1]).write_bytes(b"")  # a zero-byte Drive ghost
    repo = Repository.open(backend, cache_root=None, writer="rerun")
    with repo.new_session() as session:
        session.adopt_journal()
        assert session.adopted_packs == len(packs) - 2
        session.flush()


def test_a_normal_commit_leaves_no_journal(tmp_path: Path) -> None:
    backend = _store(tmp_path)
    repo = Repository.open(backend, cache_root=None, writer="t")
    with repo.new_session() as session:
        _add(session, 30, seed=2)
        session.flush()
    assert _journal(backend) == []
    assert len(list(backend.list_keys(PACKS))) > 4  # a checkpoint, then the final segment
