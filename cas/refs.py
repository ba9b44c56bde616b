"""Refs: branches, tags and the store's HEAD, as append-only histories of entries.

Nothing on the remote is overwritten, not even refs (invariant 4). Each update of a ref
writes a new, uniquely named, create-only **entry** (``refs/heads/main/<seq>-<id>``)
that lists the entries it supersedes (``prev``). The ref's value is given by its
**heads**: the entries no other entry supersedes.

* one head → the ref points at that head's commit (or does not exist, if the head is a
  deletion);
* several heads → two writers updated the ref from the same state: the ref has
  **diverged**. Both commits stay reachable; :class:`RefState` reports it and the user
  resolves it by choosing one (``cas branch -f`` style update naming both heads as prev).

On a Drive mount two machines can race without noticing, and this scheme still loses
nothing. Entries that cannot be read or decoded (a zero-byte "ghost" of a Drive upload
still in flight) are skipped and reported in :attr:`RefState.unreadable`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import time
from collections import defaultdict
from dataclasses import dataclass, field

from cas.cache import LocalCache
from cas.codec import decode_ref_entry, encode_ref_entry
from cas.errors import (
    AlreadyExistsError,
    CasError,
    CorruptObjectError,
    InvalidNameError,
    ObjectNotFoundError,
    RefConflictError,
)
from cas.hashing import hash_bytes
from cas.ids import ObjectId, is_hex_prefix
from cas.layout import REFS, parse_ref_entry_key, ref_entry_key, ref_folder
from cas.objects import RefEntry
from cas.store.base import Backend

log = logging.getLogger(__name__)

# A claim older than this whose ref entry never appeared is taken to be a dead writer's.
CLAIM_STALE_NS = 10 * 60 * 10**9

_BAD_REF_CHARS = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")


def check_ref_name(name: str, kind: str) -> str:
    """Return a valid branch or tag name, or raise :class:`InvalidNameError`."""
    if not name or name.startswith(("-", ".", "/")) or name.endswith(("/", ".", ".lock")):
        raise InvalidNameError(f"invalid {kind} name {name!r}")
    if ".." in name or "//" in name or "@{" in name or _BAD_REF_CHARS.search(name):
        raise InvalidNameError(f"invalid {kind} name {name!r}: no spaces, '..', or ~^:?*[\\")
    if name == "HEAD" or (len(name) >= 7 and is_hex_prefix(name)):
        raise InvalidNameError(f"invalid {kind} name {name!r}: it looks like HEAD or a commit id")
    return name


@dataclass(frozen=True, slots=True)
class Head:
    """One head entry of a ref: its key and its decoded content."""

    key: str
    seq: int
    entry: RefEntry


@dataclass(frozen=True, slots=True)
class RefState:
    """What a ref looks like right now."""

    ref: str
    heads: tuple[Head, ...]
    entries: int
    unreadable: tuple[str, ...] = ()
    by_key: dict[str, Head] = field(default_factory=dict, compare=False, repr=False)

    def candidates(self) -> list[Head]:
        """Every entry, newest first along the history: heads, then what they superseded.

        A reader that cannot see all of a head's objects yet (Drive uploads in its own
        order) falls back along this list to the newest entry that it can see.
        """
        out: list[Head] = []
        seen: set[str] = set()
        frontier = sorted(self.heads, key=lambda h: (h.entry.time_ns, h.seq), reverse=True)
        while frontier:
            h = frontier.pop(0)
            if h.key in seen:
                continue
            seen.add(h.key)
            out.append(h)
            older = [self.by_key[k] for k in h.entry.prev if k in self.by_key]
            frontier = sorted(
                [*frontier, *older], key=lambda x: (x.entry.time_ns, x.seq), reverse=True
            )
        return out

    @property
    def exists(self) -> bool:
        """True when at least one head points somewhere."""
        return any(not h.entry.is_deletion for h in self.heads)

    @property
    def diverged(self) -> bool:
        """True when several live heads point at different targets."""
        return len({(h.entry.target, h.entry.symbolic) for h in self.live_heads}) > 1

    @property
    def live_heads(self) -> tuple[Head, ...]:
        """Heads that are not deletions, newest first."""
        return tuple(
            sorted(
                (h for h in self.heads if not h.entry.is_deletion),
                key=lambda h: (h.entry.time_ns, h.seq),
                reverse=True,
            )
        )

    @property
    def target(self) -> ObjectId | None:
        """The commit the ref points at (the newest head's, if diverged)."""
        live = self.live_heads
        return live[0].entry.target if live else None

    @property
    def symbolic(self) -> str:
        """The branch a symbolic ref (HEAD) names, or ``""``."""
        live = self.live_heads
        return live[0].entry.symbolic if live else ""

    @property
    def head_keys(self) -> tuple[str, ...]:
        """Keys of every head, for the ``prev`` of the next update."""
        return tuple(sorted(h.key for h in self.heads))


@dataclass
class _Snapshot:
    by_ref: dict[str, list[tuple[str, int]]] = field(default_factory=lambda: defaultdict(list))


@dataclass
class RefUpdate:
    """An entry about to be written (:meth:`RefStore.prepare`): its ref, step, key and
    bytes, and whether a claim of ours holds its step."""

    ref: str
    seq: int
    key: str
    data: bytes
    claimed: bool = False


class RefStore:
    """Reads and appends ref entries on a backend."""

    def __init__(self, backend: Backend, cache: LocalCache, writer: str) -> None:
        self._backend = backend
        self._cache = cache
        self._writer = writer

    def _list(self, prefix: str = REFS) -> dict[str, list[tuple[str, int]]]:
        by_ref: dict[str, list[tuple[str, int]]] = defaultdict(list)
        for key in self._backend.list_keys(prefix):
            parsed = parse_ref_entry_key(key)
            if parsed is None:
                continue
            ref, seq, _eid = parsed
            by_ref[ref].append((key, seq))
        return by_ref

    def _read_entry(self, key: str) -> RefEntry | None:
        parsed = parse_ref_entry_key(key)
        assert parsed is not None
        data = self._cache.get(key)
        if data is None or hash_bytes(data) != parsed[2]:
            try:
                data = self._backend.read(key)
            except ObjectNotFoundError:
                return None
            if hash_bytes(data) != parsed[2]:
                log.warning("ref entry %s does not match its name (incomplete upload?)", key)
                return None
            self._cache.put(key, data)
        try:
            entry = decode_ref_entry(data, key)
        except CasError:
            log.warning("ref entry %s cannot be decoded; ignored", key)
            return None
        if entry.name != parsed[0]:
            log.warning("ref entry %s names %s; ignored", key, entry.name)
            return None
        return entry

    def _state(self, ref: str, keys: list[tuple[str, int]]) -> RefState:
        entries: dict[str, tuple[int, RefEntry]] = {}
        unreadable = []
        for key, seq in keys:
            e = self._read_entry(key)
            if e is None:
                unreadable.append(key)
            else:
                entries[key] = (seq, e)
        superseded = {p for _s, e in entries.values() for p in e.prev}
        by_key = {k: Head(k, s, e) for k, (s, e) in sorted(entries.items())}
        heads = tuple(h for k, h in by_key.items() if k not in superseded)
        return RefState(ref, heads, len(entries), tuple(unreadable), by_key)

    def _keys(self, ref: str) -> list[tuple[str, int]]:
        """The entry keys of one ref, from a listing of its own folder only: on a Drive
        mount every folder and entry listed is a round trip, and the other refs (tags,
        claims, other branches) grow with the store's history."""
        try:
            folder = ref_folder(ref)
        except ValueError:
            return []  # not a ref name: it has no entries
        return self._list(folder).get(ref, [])

    def state(self, ref: str) -> RefState:
        """The current state of one ref (``heads/x``, ``tags/x`` or ``HEAD``)."""
        return self._state(ref, self._keys(ref))

    def all_states(self) -> dict[str, RefState]:
        """Every ref that has at least one entry."""
        return {ref: self._state(ref, keys) for ref, keys in sorted(self._list().items())}

    def history(self, ref: str) -> list[RefEntry]:
        """Every readable entry of a ref, oldest first (the ref's log)."""
        keys = sorted(self._keys(ref), key=lambda ks: (ks[1], ks[0]))
        return [e for k, _s in keys if (e := self._read_entry(k)) is not None]

    def update(
        self,
        ref: str,
        *,
        target: ObjectId | None,
        symbolic: str = "",
        expected: RefState,
    ) -> RefState:
        """Append an entry moving ``ref`` to ``target`` (None with no symbolic: delete).

        ``expected`` is the state the caller based its decision on; its heads become
        the new entry's ``prev``. After writing, the ref is read again: if another
        writer raced us, the returned state has ``diverged`` set and both commits stay
        reachable. The same as :meth:`prepare`, :meth:`claim` and :meth:`publish`.

        Raises:
            RefConflictError: another writer claimed this step of the ref, or someone
                else's entry took our exact name (never silent).
        """
        update = self.prepare(ref, target=target, symbolic=symbolic, expected=expected)
        self.claim(update)
        self.publish(update)
        return self.state(ref)

    def prepare(
        self,
        ref: str,
        *,
        target: ObjectId | None,
        symbolic: str = "",
        expected: RefState,
    ) -> RefUpdate:
        """The entry that would move ``ref`` to ``target``; nothing is written."""
        seq = max((h.seq for h in expected.heads), default=0) + 1
        entry = RefEntry(
            name=ref,
            target=target,
            symbolic=symbolic,
            prev=expected.head_keys,
            time_ns=time.time_ns(),
            writer=self._writer,
        )
        data = encode_ref_entry(entry)
        return RefUpdate(ref, seq, ref_entry_key(ref, seq, hash_bytes(data)), data)

    def claim(self, update: RefUpdate) -> None:
        """Claim the step of ``update`` where the store enforces create-only writes
        (:meth:`_claim`); elsewhere nothing. A claim names the entry but makes nothing
        visible, so it may be written before what the entry reaches is (a commit writes
        it beside its commit object): the entry alone is the commit point.

        Raises:
            RefConflictError: another writer claimed this step.
        """
        if self._backend.capabilities.conditional_write:
            update.claimed = self._claim(update.ref, update.seq, update.key)

    def release(self, update: RefUpdate) -> None:
        """Withdraw the claim of an update that will not be published (best effort),
        so that a retry by this or another writer does not wait for it to go stale."""
        if update.claimed:
            try:
                self._backend.delete(claim_key(update.ref, update.seq))
            except CasError as exc:
                log.warning("could not withdraw the claim on %s: %s", update.ref, exc)
            update.claimed = False

    def publish(self, update: RefUpdate) -> None:
        """Write the entry of ``update``: the commit point of the ref's change.

        Raises:
            RefConflictError: someone else's entry took our exact name (never silent).
        """
        key, data = update.key, update.data
        try:
            self._backend.write(key, data, if_absent=True)
        except AlreadyExistsError as exc:
            # A retried write whose first attempt did land: the key is named by the hash
            # of these very bytes, so finding them there means the write succeeded.
            try:
                landed = self._backend.read(key) == data
            except ObjectNotFoundError:
                landed = False
            if not landed:
                raise RefConflictError(f"ref {update.ref} entry {key} already exists") from exc
        update.claimed = False  # the entry is there: the claim is spent, never withdrawn
        self._cache.put(key, data)

    def _claim(self, ref: str, seq: int, key: str) -> bool:
        """Claim step ``seq`` of ``ref`` with a create-only write, where the store
        enforces create-only (an object store's ``If-None-Match``, a local filesystem's
        hard link): of two writers updating a ref from the same state, the store itself
        lets exactly one through, and the other gets a clear conflict instead of a
        divergence. A claim whose entry never appeared (its writer died, or this process
        gave up the update without withdrawing it) goes stale: at once for a dead or
        this very process on this host, else after :data:`CLAIM_STALE_NS`; the ref is
        then updated without one (a race is still caught afterwards, as a divergence).
        Returns true when the claim written is ours (false: going on without one).

        Raises:
            RefConflictError: another writer claimed this step.
        """
        claim = claim_key(ref, seq)
        body = json.dumps(
            {
                "entry": key,
                "time_ns": time.time_ns(),
                "writer": self._writer,
                "host": socket.gethostname(),
                "pid": os.getpid(),
            }
        )
        try:
            self._backend.write(claim, body.encode(), if_absent=True)
            return True
        except AlreadyExistsError:
            pass
        other: dict[str, object] = {}
        try:
            other = dict(json.loads(self._backend.read(claim)))
            other_key, other_time = str(other["entry"]), int(str(other["time_ns"]))
        except (ObjectNotFoundError, ValueError, KeyError, TypeError):
            other_key, other_time = "", 0
        if other_key == key:
            return True  # our own claim, from a retried write
        here = other.get("host") == socket.gethostname()
        dead = here and (other.get("pid") == os.getpid() or not _pid_alive(other.get("pid")))
        stale = dead or time.time_ns() - other_time > CLAIM_STALE_NS
        if stale and not self._exists(other_key):
            log.warning(
                "ref %s: claim of step %d is stale (its writer died or gave up); going on", ref, seq
            )
            return False
        raise RefConflictError(
            f"{ref.replace('heads/', 'branch ').replace('tags/', 'tag ')} was updated by "
            f"another writer at the same moment ({other.get('writer', '?') if other_key else '?'})",
            hint="see `cas log`, then commit on a new branch: `cas branch NAME`, `cas "
            "checkout NAME`, `cas commit` (if no other writer runs, a dead one's claim "
            "clears within 10 minutes)",
        )

    def _exists(self, key: str) -> bool:
        if not key:
            return False
        try:
            self._backend.stat(key)
        except ObjectNotFoundError:
            return False
        return True


def _pid_alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def claim_folder(ref: str) -> str:
    """Folder of the claims on steps of ``ref`` (``refs/claims/<kind>/<name>/``)."""
    folder = ref_folder(ref)  # refs/<kind>/<name>/ or refs/store-head/
    return f"{REFS}claims/{folder[len(REFS) :]}"


def claim_key(ref: str, seq: int) -> str:
    """Key of the claim on step ``seq`` of ``ref`` (``refs/claims/...``, never an entry)."""
    return f"{claim_folder(ref)}{seq:010d}"


def check_entry_bytes(data: bytes, key: str) -> RefEntry:
    """Decode a ref entry read by a tool (verify), checking it against its key."""
    parsed = parse_ref_entry_key(key)
    if parsed is None:
        raise CorruptObjectError(key, "not a ref entry key")
    if hash_bytes(data) != parsed[2]:
        raise CorruptObjectError(key, "ref entry does not match its name")
    return decode_ref_entry(data, key)
