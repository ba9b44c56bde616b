"""A commit claims its branch's next step (and its new tag's) beside the commit object's
write, where the store enforces create-only writes; a commit that fails gives its claims
back, so that a retry is not refused, and a commit that loses the race changes nothing."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest

import cas
from cas.errors import BackendUnavailableError, RefConflictError
from cas.refs import claim_key
from cas.repository import Repository
from tests.stores import StoreUnderTest


def _claims(store: StoreUnderTest) -> list[str]:
    return sorted(k for k in store.objects() if k.startswith("refs/claims/"))


def _worktree(tmp_path: Path) -> Path:
    wt = tmp_path / "wt"
    wt.mkdir()
    (wt / "a.txt").write_bytes(b"first\n")
    return wt


def test_a_commit_that_fails_gives_its_claims_back(
    new_store: StoreUnderTest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wt = _worktree(tmp_path)
    with cas.init(new_store.location, wt, cache_dir=tmp_path / "c", progress=False) as repo:
        repo.commit("v1", tag="v1")
        before = _claims(new_store)
        (wt / "a.txt").write_bytes(b"second\n")
        real = Repository.save_commit

        def lost_mount(self: Repository, commit):  # type: ignore[no-untyped-def]
            raise BackendUnavailableError("the store went away while writing the commit")

        monkeypatch.setattr(Repository, "save_commit", lost_mount)
        with pytest.raises(BackendUnavailableError):
            repo.commit("v2", tag="v2")
        assert _claims(new_store) == before  # no claim left on main's step 2 or on v2
        assert repo.log()[0].commit.message == "v1"
        monkeypatch.setattr(Repository, "save_commit", real)
        done = repo.commit("v2", tag="v2")  # the retry is not refused
        assert repo.show("v2").commit_id == done.commit_id == repo.head.commit


def test_a_tag_claimed_by_another_writer_stops_the_commit_before_the_branch_moves(
    new_store: StoreUnderTest, tmp_path: Path
) -> None:
    wt = _worktree(tmp_path)
    with cas.init(new_store.location, wt, cache_dir=tmp_path / "c", progress=False) as repo:
        first = repo.commit("v1")
        conditional = repo.repository.backend.capabilities.conditional_write
        # Another machine, committing at this moment, has just claimed the new tag.
        new_store.write(
            claim_key("tags/v2", 1),
            json.dumps(
                {
                    "entry": "refs/tags/v2/0000000001-" + "0" * 64,
                    "time_ns": time.time_ns(),
                    "writer": "bob",
                    "host": socket.gethostname() + "-elsewhere",
                }
            ).encode(),
        )
        (wt / "a.txt").write_bytes(b"second\n")
        if not conditional:  # no create-only writes: nothing is claimed, the tag is made
            repo.commit("v2", tag="v2")
            return
        with pytest.raises(RefConflictError, match="tag v2 was updated by another writer"):
            repo.commit("v2", tag="v2")
        assert repo.head.commit == first.commit_id
        assert [e.commit.message for e in repo.log("main")] == ["v1"]
        assert claim_key("heads/main", 2) not in _claims(new_store)  # given back
        assert not repo.status().clean  # the change is still there, to commit again
