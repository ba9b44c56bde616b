"""Kill a commit or a checkout at each named crash point (as SIGKILL would), then check
that nothing was lost: every earlier version restores byte for byte, verify finds no
damage, a rerun completes and is correct, and what is left behind is only unreferenced.
"""

from __future__ import annotations

import json
import shutil
import signal

import pytest

import cas

from .conftest import Scene, digest

pytestmark = pytest.mark.crash

COMMIT_POINTS = [
    "after-pack-upload@1",
    "after-pack-upload@6",
    "after-index-write@1",
    "after-commit-write",
    "before-ref-update",
    "after-ref-update",
]


def _full_commit_bytes(scene: Scene) -> int:
    """What an uninterrupted commit of the same change uploads (measured on a copy)."""
    other = scene.tmp / "measure"
    store = scene.store.copy(other / "store")
    shutil.copytree(scene.wt, other / "wt", symlinks=True)
    (other / "wt" / ".cas" / "worktree.json").write_text(
        json.dumps({"format": 1, "store": store.location})
    )
    with cas.open(other / "wt", progress=False, cache_dir=other / "cache") as repo:
        return repo.commit("v2").stored_bytes


@pytest.mark.parametrize("point", COMMIT_POINTS)
def test_commit_killed_at_a_crash_point(scene: Scene, point: str) -> None:
    full = _full_commit_bytes(scene)
    r = scene.cas("commit", "-m", "v2", crash=point)
    assert r.returncode == -signal.SIGKILL, r.stderr
    # Every earlier version is intact and nothing the refs reach is damaged.
    assert scene.clone_digest("v1", "after-kill") == scene.v1
    assert scene.verify_problems() == []
    # A rerun completes, and the result is exactly the worktree.
    r = scene.cas("--json", "commit", "-m", "v2")
    assert r.returncode == 0, r.stderr
    rerun = json.loads(r.stdout)
    assert scene.clone_digest("main", "after-rerun") == scene.v2
    assert scene.verify_problems() == []
    # Packs that were completely uploaded (checkpointed, or recorded in the journal)
    # are not uploaded again: after the N-th pack, the rerun uploads only the rest.
    if point.startswith("after-pack-upload@"):
        assert (
            rerun["bytes_resumed"] > 0
            and rerun["bytes_stored"] + rerun["bytes_resumed"] <= full + 1024
        )
        assert rerun["bytes_stored"] < full
    if point in ("after-index-write@1", "after-commit-write", "before-ref-update"):
        assert rerun["bytes_stored"] < full
    if point == "after-ref-update":
        assert rerun["bytes_new"] == 0  # the killed commit had landed; nothing is new
    log = json.loads(scene.cas("--json", "log").stdout)["commits"]
    assert log[-1]["refs"] == ["tag: v1"]


DRIVE_POINTS = ["after-pack-upload@1", "after-pack-upload@6", "after-index-write@1"]


# A Drive mount is a folder store: this test runs on that kind only (never on S3).
@pytest.mark.parametrize("store_kind", ["folder"])
@pytest.mark.parametrize("point", DRIVE_POINTS)
def test_commit_to_a_drive_mount_killed_at_a_crash_point(
    scene: Scene, point: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a Drive mount each pack is spooled in an anonymous local file and several are
    on their way at once: a kill leaves no spool file (it has no name), at most temp names
    on the store, and a rerun reuses the checkpointed packs."""
    assert scene.store.kind == "folder"
    spool = scene.tmp / "spool"
    spool.mkdir()
    monkeypatch.setenv("CAS_TEST_FSTYPE", "fuse.drive")  # read by driver.py
    monkeypatch.setenv("TMPDIR", str(spool))
    full = _full_commit_bytes(scene)
    r = scene.cas("commit", "-m", "v2", crash=point)
    assert r.returncode == -signal.SIGKILL, r.stderr
    assert list(spool.iterdir()) == []
    assert scene.clone_digest("v1", "after-kill") == scene.v1
    assert scene.verify_problems() == []
    r = scene.cas("--json", "commit", "-m", "v2")
    assert r.returncode == 0, r.stderr
    if point == "after-index-write@1":
        assert json.loads(r.stdout)["bytes_stored"] < full
    assert scene.clone_digest("main", "after-rerun") == scene.v2
    assert scene.verify_problems() == []
    assert list(spool.iterdir()) == []


@pytest.mark.parametrize("point", ["mid-checkout", "before-checkout-delete", "mid-checkout-rename"])
def test_checkout_killed_leaves_old_or_new_files(scene: Scene, point: str) -> None:
    assert scene.cas("commit", "-m", "v2", "--tag", "v2").returncode == 0
    r = scene.cas("checkout", "v1", crash=point)
    assert r.returncode == -signal.SIGKILL, r.stderr
    for path, value in digest(scene.wt).items():
        assert value in (scene.v1.get(path), scene.v2.get(path)), f"half-written {path}"
    r = scene.cas("checkout", "v1")
    assert r.returncode == 0, r.stderr
    assert digest(scene.wt) == scene.v1
    assert not (scene.wt / ".cas" / "tmp").exists() or not any(
        (scene.wt / ".cas" / "tmp").iterdir()
    )
