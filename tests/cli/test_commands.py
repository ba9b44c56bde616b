"""Every command through the real ``main()``: output, JSON and exit codes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from cas_cli.commands import COMMANDS

from .conftest import Run, make_assets


@pytest.mark.parametrize("name", [c.name for c in COMMANDS])
def test_every_command_has_help(run: Run, name: str) -> None:
    r = run(name, "--help")
    assert r.code == 0
    assert "Usage: cas " + name in r.out
    assert len(r.out.splitlines()) > 4


def test_group_help_lists_commands_and_exit_codes(run: Run) -> None:
    r = run("--help")
    assert r.code == 0
    for c in COMMANDS:
        assert c.name in r.out
    assert "Exit codes" in r.out


def test_init_commit_status_log(tmp_path: Path, run: Run) -> None:
    wt = tmp_path / "a"
    wt.mkdir()
    make_assets(wt)
    r = run("init", str(tmp_path / "store"), str(wt))
    assert r.code == 0, r.err
    assert "Initialized cas store" in r.out
    r = run("-C", str(wt), "--json", "commit", "-m", "one", "--tag", "v1")
    assert r.code == 0, r.err
    data = json.loads(r.out)
    assert len(data["commit"]) == 64
    assert data["tag"] == "v1"
    assert data["files"] == 23  # 20 images, weights, config, script
    assert data["bytes_scanned"] == data["bytes"] > 300_000
    assert data["bytes_stored"] > 0
    r = run("-C", str(wt), "status")
    assert r.code == 0 and "Nothing changed." in r.out
    (wt / "new.txt").write_text("hello")
    (wt / "images" / "cat" / "0.jpg").unlink()
    r = run("-C", str(wt), "--json", "status")
    st = json.loads(r.out)
    assert st["added"] == [{"path": "new.txt", "size": 5}]
    assert st["deleted"][0]["path"] == "images/cat/0.jpg"
    assert not st["clean"]
    r = run("-C", str(wt), "commit", "-m", "two")
    assert r.code == 0
    commit2 = r.out.strip()
    r = run("-C", str(wt), "log", "--oneline")
    lines = r.out.splitlines()
    assert lines[0].startswith(commit2[:12]) and "(main)" in lines[0]
    assert "(tag: v1)" in lines[1]
    r = run("-C", str(wt), "--json", "log")
    assert [c["message"] for c in json.loads(r.out)["commits"]] == ["two", "one"]


def test_commit_human_output_goes_to_the_right_streams(worktree: Path, run: Run) -> None:
    (worktree / "x").write_text("x")
    r = run("-C", str(worktree), "commit", "-m", "m")
    assert r.code == 0
    assert len(r.out.strip()) == 64  # stdout: the commit id only
    assert "files" in r.err and "uploaded" in r.err


def test_diff_between_versions_and_worktree(worktree: Path, run: Run) -> None:
    (worktree / "config.json").write_text('{"lr": 0.01}\n')
    r = run("-C", str(worktree), "diff")
    assert r.code == 0
    assert "M config.json" in r.out
    assert "0 added, 1 modified, 0 deleted" in r.out
    run("-C", str(worktree), "commit", "-m", "lr", "--tag", "v2")
    r = run("-C", str(worktree), "--json", "diff", "v1", "v2")
    rows = json.loads(r.out)["changes"]
    assert rows == [{"path": "config.json", "status": "modified", "old_size": 14, "new_size": 13}]
    r = run("-C", str(worktree), "diff", "v1")
    assert "M config.json" in r.out


def test_checkout_round_trip_and_json(worktree: Path, run: Run) -> None:
    original = (worktree / "weights.bin").read_bytes()
    (worktree / "weights.bin").write_bytes(os.urandom(1000))
    run("-C", str(worktree), "commit", "-m", "small weights")
    r = run("-C", str(worktree), "--json", "checkout", "v1")
    assert r.code == 0, r.err
    data = json.loads(r.out)
    assert data["files_written"] == 1
    assert data["branch"] is None
    assert (worktree / "weights.bin").read_bytes() == original
    r = run("-C", str(worktree), "checkout", "main")
    assert r.code == 0
    assert "Checked out branch main" in r.out
    assert len((worktree / "weights.bin").read_bytes()) == 1000


def test_checkout_paths_only(worktree: Path, run: Run) -> None:
    (worktree / "config.json").write_text("changed")
    (worktree / "weights.bin").write_bytes(b"changed")
    r = run("-C", str(worktree), "checkout", "--force", "v1", "config.json")
    assert r.code == 0, r.err
    assert (worktree / "config.json").read_text() == '{"lr": 0.001}\n'
    assert (worktree / "weights.bin").read_bytes() == b"changed"


def test_clone_ls_show(worktree: Path, tmp_path: Path, run: Run) -> None:
    store = tmp_path / "store"
    r = run("clone", str(store), str(tmp_path / "b"), "--ref", "v1")
    assert r.code == 0, r.err
    assert (tmp_path / "b" / "weights.bin").read_bytes() == (worktree / "weights.bin").read_bytes()
    assert os.readlink(tmp_path / "b" / "current.json") == "config.json"
    r = run("-C", str(tmp_path / "b"), "ls", "v1")
    assert "drwx" in r.out and "images/" in r.out
    assert "current.json -> config.json" in r.out
    assert "-rwxr-xr-x" in r.out  # train.sh keeps its mode
    r = run("-C", str(tmp_path / "b"), "--json", "ls", "v1", "images/cat")
    paths = [e["path"] for e in json.loads(r.out)["entries"]]
    assert paths[0].startswith("images/cat/") and len(paths) == 10
    r = run("-C", str(tmp_path / "b"), "show", "v1")
    assert "tag: v1" in r.out and "first" in r.out
    r = run("-C", str(tmp_path / "b"), "--json", "show", "v1")
    assert json.loads(r.out)["stats"]["files"] == 23


def test_tags_and_branches(worktree: Path, run: Run) -> None:
    r = run("-C", str(worktree), "tag", "v1")
    assert r.code == 0  # same name, same commit: a no-op
    (worktree / "x").write_text("x")
    run("-C", str(worktree), "commit", "-m", "x")
    r = run("-C", str(worktree), "tag", "v1")
    assert r.code == 6
    assert "tag 'v1'" in r.err and "already exists" in r.err and "--force" in r.err
    r = run("-C", str(worktree), "tag", "--force", "v1")
    assert r.code == 0
    r = run("-C", str(worktree), "--json", "tag")
    assert [t["name"] for t in json.loads(r.out)["tags"]] == ["v1"]
    r = run("-C", str(worktree), "tag", "-d", "v1")
    assert r.code == 0 and "Deleted tag v1" in r.out
    r = run("-C", str(worktree), "tag")
    assert r.out == ""
    r = run("-C", str(worktree), "branch", "exp")
    assert r.code == 0 and "Branch exp" in r.out
    r = run("-C", str(worktree), "branch")
    assert "* main" in r.out and "  exp" in r.out
    r = run("-C", str(worktree), "checkout", "exp")
    assert r.code == 0
    r = run("-C", str(worktree), "branch", "-d", "exp")
    assert r.code == 1 and "the worktree is on it" in r.err
    run("-C", str(worktree), "checkout", "main")
    r = run("-C", str(worktree), "branch", "-d", "exp")
    assert r.code == 0
    r = run("-C", str(worktree), "branch", "bad name")
    assert r.code == 2 and "invalid branch name" in r.err


def test_du(worktree: Path, run: Run) -> None:
    (worktree / "more.bin").write_bytes(os.urandom(50_000))
    run("-C", str(worktree), "commit", "-m", "more", "--tag", "v2")
    r = run("-C", str(worktree), "du")
    assert r.code == 0
    assert "dedup ratio" in r.out and "v1" in r.out and "v2" in r.out
    data = json.loads(run("-C", str(worktree), "--json", "du").out)
    assert len(data["versions"]) == 2
    assert data["dedup_ratio"] > 1.5
    by_ref = {tuple(v["refs"]): v for v in data["versions"]}
    assert by_ref[("main", "v2")]["unique_stored_bytes"] >= 50_000


def test_commit_on_detached_head_is_refused(worktree: Path, run: Run) -> None:
    run("-C", str(worktree), "checkout", "v1")
    r = run("-C", str(worktree), "commit", "-m", "x")
    assert r.code == 6
    assert r.err.startswith("error: the worktree is not on a branch")
    assert "cas branch NAME" in r.err
