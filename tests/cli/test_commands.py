"""Every command through the real ``main()``: output, JSON and exit codes."""

from __future__ import annotations

import json
import os
import stat
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
    mode = stat.S_IMODE((worktree / "config.json").stat().st_mode)
    assert rows == [
        {
            "path": "config.json",
            "status": "modified",
            "old_size": 14,
            "new_size": 13,
            "old_mode": mode,
            "new_mode": mode,
        }
    ]
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
    # It says what happened: files restored, the worktree still on its branch.
    commit = json.loads(run("-C", str(worktree), "--json", "show", "v1").out)["commit"]
    assert r.out == f"Restored 1 path from v1 ({commit[:12]}); still on branch main\n"
    assert json.loads(run("-C", str(worktree), "--json", "status").out)["branch"] == "main"
    r = run("-C", str(worktree), "checkout", "--force", "v1", "weights.bin", "images", "--json")
    data = json.loads(r.out)
    assert data["paths"] == ["weights.bin", "images"]
    assert data["head_branch"] == "main"


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
    assert r.code == 6 and "the worktree is on it" in r.err
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


def test_log_max_count_like_git(worktree: Path, run: Run) -> None:
    (worktree / "x").write_text("x")
    run("-C", str(worktree), "commit", "-m", "two")
    r = run("-C", str(worktree), "log", "-n", "1", "--oneline")
    assert r.code == 0 and len(r.out.splitlines()) == 1
    r = run("-C", str(worktree), "log", "-n", "0")
    assert (r.code, r.out) == (0, "")  # git log -n 0 shows nothing
    assert json.loads(run("-C", str(worktree), "log", "-n", "0", "--json").out) == {"commits": []}
    r = run("-C", str(worktree), "log", "-n", "0", "nope")
    assert r.code == 5  # the ref is still checked
    r = run("-C", str(worktree), "log", "-n", "-1")
    assert r.code == 2 and "-1 is not in the range" in r.err


@pytest.mark.parametrize("message", ["", "  \n"])
def test_empty_commit_message_is_refused(worktree: Path, run: Run, message: str) -> None:
    (worktree / "x").write_text("x")
    r = run("-C", str(worktree), "commit", "-m", message)
    assert r.code == 2
    assert "the commit message is empty" in r.err
    assert len(json.loads(run("-C", str(worktree), "--json", "log").out)["commits"]) == 1


def test_counts_are_pluralised(worktree: Path, run: Run) -> None:
    (worktree / "config.json").write_text("one change")
    r = run("-C", str(worktree), "status")
    assert r.out.splitlines()[-1] == "1 change; commit it with `cas commit -m MESSAGE`."
    (worktree / "x").write_text("x")
    r = run("-C", str(worktree), "status")
    assert r.out.splitlines()[-1] == "2 changes; commit them with `cas commit -m MESSAGE`."
    (worktree / "weights.bin").unlink()
    (worktree / "train.sh").unlink()
    for p in [*(worktree / "images").rglob("*.jpg")][:-1]:
        p.unlink()
    r = run("-C", str(worktree), "commit", "-m", "small")
    assert "] 3 files, " in r.err  # config.json, x, the last image
    (worktree / "config.json").unlink()
    (worktree / "x").unlink()
    r = run("-C", str(worktree), "commit", "-m", "one")
    assert "] 1 file, " in r.err
    r = run("-C", str(worktree), "show")
    assert "Files:  1 file, 4 folders, 1 symlink, " in r.out


def test_diff_shows_a_mode_change(worktree: Path, run: Run) -> None:
    cfg = stat.S_IMODE((worktree / "config.json").stat().st_mode)  # 644 with umask 022
    (worktree / "config.json").chmod(0o700)
    (worktree / "train.sh").chmod(0o600)  # was 755
    r = run("-C", str(worktree), "diff")
    assert f"M config.json  (14 B -> 14 B, mode {cfg:o} -> 700)" in r.out
    assert "M train.sh  (21 B -> 21 B, mode 755 -> 600)" in r.out
    run("-C", str(worktree), "commit", "-m", "modes", "--tag", "v2")
    r = run("-C", str(worktree), "diff", "v1", "v2")
    assert f"M config.json  (14 B -> 14 B, mode {cfg:o} -> 700)" in r.out
    rows = json.loads(run("-C", str(worktree), "diff", "v1", "v2", "--json").out)["changes"]
    assert {(c["path"], c["old_mode"], c["new_mode"]) for c in rows} == {
        ("config.json", cfg, 0o700),
        ("train.sh", 0o755, 0o600),
    }
    (worktree / "weights.bin").write_bytes(b"smaller")
    r = run("-C", str(worktree), "diff")
    assert "M weights.bin  (293.0 KiB -> 7 B)\n" in r.out  # no mode when it is the same


@pytest.mark.parametrize("kind", ["tag", "branch"])
def test_delete_takes_one_name(worktree: Path, run: Run, kind: str) -> None:
    run("-C", str(worktree), kind, "x")
    r = run("-C", str(worktree), kind, "-d", "x", "extra")
    assert r.code == 2
    assert f"cas {kind} -d takes one NAME, not also 'extra'" in r.err
    r = run("-C", str(worktree), kind, "-d")
    assert r.code == 2 and f"cas {kind} -d needs a NAME" in r.err
    r = run("-C", str(worktree), "--json", kind)
    names = [t["name"] for t in json.loads(r.out)["tags" if kind == "tag" else "branches"]]
    assert "x" in names  # nothing was deleted
