"""Refs as append-only histories of create-only entries (invariant 4), over MemoryBackend."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path

import pytest

import cas.refs
from cas.cache import LocalCache
from cas.codec import encode_ref_entry
from cas.errors import CorruptObjectError, InvalidNameError, RefConflictError
from cas.hashing import hash_bytes
from cas.ids import ObjectId
from cas.layout import REFS, parse_ref_entry_key, ref_entry_key
from cas.objects import RefEntry
from cas.refs import RefState, RefStore, check_entry_bytes, check_ref_name
from cas.store.base import Capabilities
from cas.store.memory import MemoryBackend

C1, C2, C3 = (hash_bytes(f"commit {i}".encode()) for i in (1, 2, 3))
MAIN = "heads/main"


class DriveLikeMemory(MemoryBackend):
    """A store that does not enforce create-only writes (a Drive mount): ref updates rely
    on the entry DAG alone, and racing writers diverge instead of one being refused."""

    @property
    def capabilities(self) -> Capabilities:
        return dataclasses.replace(super().capabilities, conditional_write=False)


@pytest.fixture
def backend() -> MemoryBackend:
    return DriveLikeMemory()


@pytest.fixture
def refs(backend: MemoryBackend) -> RefStore:
    return RefStore(backend, LocalCache(None), "alice@laptop")


def _keys(backend: MemoryBackend) -> list[str]:
    return sorted(i.key for i in backend.list(REFS))


# ---------------------------------------------------------------------------- names


@pytest.mark.parametrize("name", ["main", "feature/x", "v1.0", "Ünï", "a-b_c", "abcdef"])
def test_valid_ref_names(name: str) -> None:
    assert check_ref_name(name, "branch") == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "-x",
        ".x",
        "/x",
        "x/",
        "x.",
        "x.lock",
        "a..b",
        "a//b",
        "a@{1}",
        "a b",
        "a~1",
        "a^",
        "a:b",
        "a?",
        "a*",
        "a[",
        "a\\b",
        "a\x00",
        "a\x7f",
        "HEAD",
        "abcdef0",
        "0123456789abcdef",
    ],
)
def test_invalid_ref_names(name: str) -> None:
    with pytest.raises(InvalidNameError, match="invalid tag name"):
        check_ref_name(name, "tag")


# ---------------------------------------------------------------------------- updates


def test_missing_ref(refs: RefStore) -> None:
    state = refs.state(MAIN)
    assert state == RefState(MAIN, (), 0)
    assert not state.exists
    assert not state.diverged
    assert state.target is None
    assert state.symbolic == ""
    assert state.head_keys == ()


def test_create(refs: RefStore, backend: MemoryBackend) -> None:
    state = refs.update(MAIN, target=C1, expected=refs.state(MAIN))
    assert state.exists
    assert state.target == C1
    assert state.entries == 1
    (head,) = state.heads
    assert head.seq == 1
    assert head.entry.prev == ()
    assert head.entry.writer == "alice@laptop"
    assert _keys(backend) == [head.key]
    assert parse_ref_entry_key(head.key) == (MAIN, 1, hash_bytes(backend.read(head.key)))


def test_update_names_the_previous_head(refs: RefStore, backend: MemoryBackend) -> None:
    s1 = refs.update(MAIN, target=C1, expected=refs.state(MAIN))
    s2 = refs.update(MAIN, target=C2, expected=s1)
    assert s2.target == C2
    assert s2.entries == 2
    (head,) = s2.heads
    assert head.seq == 2
    assert head.entry.prev == s1.head_keys
    assert len(_keys(backend)) == 2  # nothing overwritten
    assert refs.state(MAIN) == s2


def test_racing_updates_diverge_and_keep_both_heads(backend: MemoryBackend) -> None:
    alice = RefStore(backend, LocalCache(None), "alice")
    bob = RefStore(backend, LocalCache(None), "bob")
    base = alice.update(MAIN, target=C1, expected=alice.state(MAIN))
    seen_by_bob = bob.state(MAIN)
    assert seen_by_bob == base

    alice.update(MAIN, target=C2, expected=base)
    state = bob.update(MAIN, target=C3, expected=seen_by_bob)

    assert state.diverged
    assert state.exists
    assert len(state.heads) == 2
    assert {h.entry.target for h in state.heads} == {C2, C3}
    assert {h.entry.writer for h in state.heads} == {"alice", "bob"}
    assert all(h.seq == 2 for h in state.heads)
    assert state.target in (C2, C3)  # the newest head's
    assert state.target == state.live_heads[0].entry.target
    assert alice.state(MAIN) == state


def test_divergence_is_resolved_by_an_update_naming_both_heads(backend: MemoryBackend) -> None:
    alice = RefStore(backend, LocalCache(None), "alice")
    bob = RefStore(backend, LocalCache(None), "bob")
    base = alice.update(MAIN, target=C1, expected=alice.state(MAIN))
    alice.update(MAIN, target=C2, expected=base)
    diverged = bob.update(MAIN, target=C3, expected=base)
    resolved = bob.update(MAIN, target=C3, expected=diverged)
    assert not resolved.diverged
    (head,) = resolved.heads
    assert head.seq == 3
    assert set(head.entry.prev) == set(diverged.head_keys)
    assert resolved.entries == 4


def test_racing_updates_to_the_same_commit_do_not_diverge(backend: MemoryBackend) -> None:
    alice = RefStore(backend, LocalCache(None), "alice")
    bob = RefStore(backend, LocalCache(None), "bob")
    base = alice.update(MAIN, target=C1, expected=alice.state(MAIN))
    alice.update(MAIN, target=C2, expected=base)
    state = bob.update(MAIN, target=C2, expected=base)
    assert len(state.heads) == 2
    assert not state.diverged
    assert state.target == C2


def test_retried_update_that_already_landed_is_not_a_conflict(
    refs: RefStore, backend: MemoryBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The entry is named by its own hash: finding the same bytes there means success."""
    monkeypatch.setattr(cas.refs.time, "time_ns", lambda: 123)
    base = refs.state(MAIN)
    first = refs.update(MAIN, target=C1, expected=base)
    again = refs.update(MAIN, target=C1, expected=base)
    assert again == first
    assert len(_keys(backend)) == 1


def test_other_bytes_under_our_entry_name_are_a_conflict(
    refs: RefStore, backend: MemoryBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cas.refs.time, "time_ns", lambda: 123)
    entry = RefEntry(MAIN, C1, "", (), 123, "alice@laptop")
    key = ref_entry_key(MAIN, 1, hash_bytes(encode_ref_entry(entry)))
    backend.write(key, b"")  # a ghost under the exact name our update will use
    with pytest.raises(RefConflictError, match="already exists"):
        refs.update(MAIN, target=C1, expected=refs.state(MAIN))


def test_deletion(refs: RefStore) -> None:
    s1 = refs.update(MAIN, target=C1, expected=refs.state(MAIN))
    gone = refs.update(MAIN, target=None, expected=s1)
    assert not gone.exists
    assert gone.target is None
    assert gone.live_heads == ()
    (head,) = gone.heads
    assert head.entry.is_deletion
    assert gone.entries == 2
    again = refs.update(MAIN, target=C2, expected=gone)
    assert again.exists
    assert again.target == C2
    assert again.heads[0].seq == 3


def test_deletion_racing_an_update_keeps_the_update(backend: MemoryBackend) -> None:
    alice = RefStore(backend, LocalCache(None), "alice")
    bob = RefStore(backend, LocalCache(None), "bob")
    base = alice.update(MAIN, target=C1, expected=alice.state(MAIN))
    alice.update(MAIN, target=None, expected=base)
    state = bob.update(MAIN, target=C2, expected=base)
    assert len(state.heads) == 2
    assert state.exists
    assert not state.diverged  # one live head
    assert state.target == C2


def test_symbolic_head(refs: RefStore) -> None:
    state = refs.update("HEAD", target=None, symbolic="heads/main", expected=refs.state("HEAD"))
    assert state.exists
    assert state.symbolic == "heads/main"
    assert state.target is None
    assert state.heads[0].key.startswith("refs/store-head/")


def test_history_is_oldest_first(refs: RefStore) -> None:
    s = refs.update(MAIN, target=C1, expected=refs.state(MAIN))
    s = refs.update(MAIN, target=C2, expected=s)
    s = refs.update(MAIN, target=None, expected=s)
    refs.update(MAIN, target=C3, expected=s)
    assert [e.target for e in refs.history(MAIN)] == [C1, C2, None, C3]
    assert refs.history("heads/other") == []


def test_all_states(refs: RefStore) -> None:
    refs.update(MAIN, target=C1, expected=refs.state(MAIN))
    refs.update("tags/v1", target=C2, expected=refs.state("tags/v1"))
    refs.update("heads/Feature/ü", target=C3, expected=refs.state("heads/Feature/ü"))
    states = refs.all_states()
    assert list(states) == sorted(["heads/Feature/ü", MAIN, "tags/v1"])
    assert states["heads/Feature/ü"].target == C3
    assert states["tags/v1"].target == C2


def test_foreign_keys_under_refs_are_ignored(refs: RefStore, backend: MemoryBackend) -> None:
    backend.write("refs/heads/main/notes.txt", b"hello")
    backend.write("refs/readme", b"hello")
    refs.update(MAIN, target=C1, expected=refs.state(MAIN))
    state = refs.state(MAIN)
    assert state.entries == 1
    assert state.unreadable == ()


# ---------------------------------------------------------------------------- bad entries


def _ghost_key(seq: int, data: bytes = b"what the upload would have been") -> str:
    return ref_entry_key(MAIN, seq, hash_bytes(data))


def test_zero_byte_ghost_is_skipped_and_reported(
    refs: RefStore, backend: MemoryBackend, caplog: pytest.LogCaptureFixture
) -> None:
    """A Drive upload still in flight shows up as a zero-byte file under its final name."""
    s1 = refs.update(MAIN, target=C1, expected=refs.state(MAIN))
    ghost = _ghost_key(2)
    backend.write(ghost, b"")
    with caplog.at_level(logging.WARNING, logger="cas.refs"):
        state = refs.state(MAIN)
    assert state.unreadable == (ghost,)
    assert state.heads == s1.heads
    assert state.target == C1
    assert state.entries == 1
    assert "does not match its name" in caplog.text
    assert [e.target for e in refs.history(MAIN)] == [C1]


def test_ghost_does_not_block_the_next_update(refs: RefStore, backend: MemoryBackend) -> None:
    s1 = refs.update(MAIN, target=C1, expected=refs.state(MAIN))
    backend.write(_ghost_key(2), b"")
    s2 = refs.update(MAIN, target=C2, expected=refs.state(MAIN))
    assert s2.target == C2
    assert s2.heads[0].entry.prev == s1.head_keys


def test_entry_that_matches_its_name_but_does_not_decode(
    refs: RefStore, backend: MemoryBackend
) -> None:
    refs.update(MAIN, target=C1, expected=refs.state(MAIN))
    junk = b"\x93not a ref entry"
    key = _ghost_key(2, junk)
    backend.write(key, junk)
    state = refs.state(MAIN)
    assert state.unreadable == (key,)
    assert state.target == C1


def test_entry_naming_another_ref_is_skipped(refs: RefStore, backend: MemoryBackend) -> None:
    refs.update(MAIN, target=C1, expected=refs.state(MAIN))
    data = encode_ref_entry(RefEntry("heads/other", C2, "", (), 5, "mallory"))
    key = _ghost_key(2, data)
    backend.write(key, data)
    state = refs.state(MAIN)
    assert state.unreadable == (key,)
    assert state.target == C1


def test_entry_deleted_between_list_and_read(refs: RefStore, backend: MemoryBackend) -> None:
    s1 = refs.update(MAIN, target=C1, expected=refs.state(MAIN))
    real_read = backend.read

    def read(key: str) -> bytes:
        if key == s1.heads[0].key:
            backend.delete(key)
        return real_read(key)

    backend.read = read  # type: ignore[method-assign]
    state = refs.state(MAIN)
    assert state.unreadable == (s1.heads[0].key,)
    assert not state.exists


# ---------------------------------------------------------------------------- cache


def test_entries_are_cached_and_a_damaged_cache_copy_is_refetched(
    backend: MemoryBackend, tmp_path: Path
) -> None:
    cache = LocalCache(tmp_path / "cache")
    refs = RefStore(backend, cache, "alice")
    s1 = refs.update(MAIN, target=C1, expected=refs.state(MAIN))
    key = s1.heads[0].key
    assert cache.get(key) == backend.read(key)

    cache.put(key, b"damaged")
    assert refs.state(MAIN).target == C1
    assert cache.get(key) == backend.read(key)


def test_cached_copy_is_used_without_reading_the_backend(
    backend: MemoryBackend, tmp_path: Path
) -> None:
    refs = RefStore(backend, LocalCache(tmp_path / "cache"), "alice")
    refs.update(MAIN, target=C1, expected=refs.state(MAIN))

    def no_read(key: str) -> bytes:
        raise AssertionError(f"read {key}")

    backend.read = no_read  # type: ignore[method-assign]
    assert refs.state(MAIN).target == C1


# ---------------------------------------------------------------------------- check_entry_bytes


def test_check_entry_bytes(refs: RefStore, backend: MemoryBackend) -> None:
    s1 = refs.update(MAIN, target=C1, expected=refs.state(MAIN))
    key = s1.heads[0].key
    assert check_entry_bytes(backend.read(key), key) == s1.heads[0].entry
    with pytest.raises(CorruptObjectError, match="does not match its name"):
        check_entry_bytes(b"", key)
    with pytest.raises(CorruptObjectError, match="not a ref entry key"):
        check_entry_bytes(backend.read(key), "refs/heads/main")
    junk = b"junk"
    with pytest.raises(CorruptObjectError):
        check_entry_bytes(junk, _ghost_key(9, junk))


# ---------------------------------------------------------------------------- claims


def test_with_create_only_writes_the_store_refuses_the_second_racer() -> None:
    store = MemoryBackend()  # enforces if_absent, like S3's If-None-Match
    alice = RefStore(store, LocalCache(None), "alice")
    bob = RefStore(store, LocalCache(None), "bob")
    alice.update(MAIN, target=C1, expected=alice.state(MAIN))
    seen_by_both = alice.state(MAIN)
    alice.update(MAIN, target=C2, expected=seen_by_both)
    with pytest.raises(RefConflictError, match="another writer at the same moment"):
        bob.update(MAIN, target=C3, expected=seen_by_both)
    state = bob.state(MAIN)
    assert not state.diverged and state.target == C2
    assert "refs/claims/heads/main/0000000002" in _keys(store)


def test_a_dead_writers_claim_does_not_block_forever(monkeypatch: pytest.MonkeyPatch) -> None:
    store = MemoryBackend()
    refs = RefStore(store, LocalCache(None), "alice")
    key = cas.refs.claim_key(MAIN, 1)
    store.write(key, b'{"entry": "refs/heads/main/0000000001-x", "time_ns": 1, "writer": "bob"}')
    refs.update(MAIN, target=C1, expected=refs.state(MAIN))  # stale: 1 ns after the epoch
    assert refs.state(MAIN).target == C1
    store.write(cas.refs.claim_key(MAIN, 2), b"not json", if_absent=True)
    monkeypatch.setattr(cas.refs, "CLAIM_STALE_NS", 10**30)
    with pytest.raises(RefConflictError):
        refs.update(MAIN, target=C2, expected=refs.state(MAIN))


def test_a_withdrawn_claim_frees_the_step_and_a_published_one_stays() -> None:
    store = MemoryBackend()
    alice = RefStore(store, LocalCache(None), "alice")
    bob = RefStore(store, LocalCache(None), "bob")
    update = alice.prepare(MAIN, target=C1, expected=alice.state(MAIN))
    alice.claim(update)
    assert update.claimed and cas.refs.claim_key(MAIN, 1) in _keys(store)
    alice.release(update)  # the update is given up: bob need not wait for it to go stale
    assert not update.claimed and cas.refs.claim_key(MAIN, 1) not in _keys(store)
    bob.update(MAIN, target=C2, expected=bob.state(MAIN))
    assert bob.state(MAIN).target == C2
    again = alice.prepare(MAIN, target=C3, expected=alice.state(MAIN))
    alice.claim(again)
    alice.publish(again)
    alice.release(again)  # spent by the entry: nothing withdrawn
    assert cas.refs.claim_key(MAIN, 2) in _keys(store) and alice.state(MAIN).target == C3


def test_this_processs_own_abandoned_claim_does_not_block_it() -> None:
    """A claim this process wrote and could not withdraw (the store was unreachable) is
    stale at once for it, as a dead process's is: a notebook retrying a failed commit is
    not refused for ten minutes."""
    store = MemoryBackend()
    refs = RefStore(store, LocalCache(None), "alice")
    abandoned = refs.prepare(MAIN, target=C1, expected=refs.state(MAIN))
    refs.claim(abandoned)  # then the commit failed and the withdrawal too
    refs.update(MAIN, target=C2, expected=refs.state(MAIN))
    assert refs.state(MAIN).target == C2
    someone = RefStore(store, LocalCache(None), "bob")
    other = someone.prepare(MAIN, target=C3, expected=someone.state(MAIN))
    store.write(
        cas.refs.claim_key(MAIN, other.seq),
        json.dumps(
            {"entry": other.key, "time_ns": time.time_ns(), "writer": "bob", "host": "elsewhere"}
        ).encode(),
        if_absent=True,
    )
    with pytest.raises(RefConflictError):  # a live writer's claim on another host holds
        refs.update(MAIN, target=C1, expected=refs.state(MAIN))


def test_claims_are_not_ref_entries() -> None:
    assert parse_ref_entry_key(cas.refs.claim_key(MAIN, 3)) is None
    assert parse_ref_entry_key(cas.refs.claim_key("HEAD", 3)) is None


def test_one_refs_state_and_history_list_only_its_own_folder(
    refs: RefStore, backend: MemoryBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a Drive mount each folder and entry listed is a round trip: reading a branch
    does not walk the tags, the claims or the other branches."""
    c1, c2 = ObjectId(hash_bytes(b"1")), ObjectId(hash_bytes(b"2"))
    for ref in ("heads/main", "heads/main/x", "heads/mainline", "tags/v1", "tags/v2"):
        refs.update(ref, target=c1, expected=refs.state(ref))
    refs.update("heads/main", target=c2, expected=refs.state("heads/main"))
    listed: list[str] = []
    real = backend.list

    def listing(prefix: str):  # type: ignore[no-untyped-def]
        listed.append(prefix)
        return real(prefix)

    monkeypatch.setattr(backend, "list", listing)
    state = refs.state("heads/main")
    assert state.target == c2 and not state.diverged
    assert [e.target for e in refs.history("heads/main")] == [c1, c2]
    assert refs.state("heads/main/x").target == c1
    assert refs.state("tags/v2").target == c1
    assert refs.state("heads/nothing").exists is False
    assert all(
        p.startswith(REFS + "heads/main") or p.startswith(REFS + "tags/v2") for p in listed[:4]
    )
    assert REFS not in listed and not any("claims" in p for p in listed)
    assert set(refs.all_states()) == {
        "heads/main",
        "heads/main/x",
        "heads/mainline",
        "tags/v1",
        "tags/v2",
    }
