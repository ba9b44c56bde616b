"""Every error class maps to a documented exit code, and each code is produced once."""

from __future__ import annotations

import errno
import inspect
import json
import os
import threading
from pathlib import Path

import pytest

import cas
import cas.errors
import cas.store.local
from cas.layout import PACKS
from cas.packs import KIND_CHUNK, KIND_TREE, read_pack_entries
from cas.worktree import Worktree
from cas_cli import errors as codes
from cas_cli.errors import exit_code_for

from .conftest import Run

DOCUMENTED = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 130}


def _error_classes() -> list[type[cas.errors.CasError]]:
    return [
        c
        for _n, c in inspect.getmembers(cas.errors, inspect.isclass)
        if issubclass(c, cas.errors.CasError)
    ]


@pytest.mark.parametrize("cls", _error_classes(), ids=lambda c: c.__name__)
def test_every_error_class_has_a_documented_code(cls: type[BaseException]) -> None:
    exc = cls.__new__(cls)
    assert exit_code_for(exc) in DOCUMENTED


def test_codes_of_the_main_families() -> None:
    e = cas.errors
    assert exit_code_for(e.RefNotFoundError("x")) == codes.NOT_FOUND
    assert exit_code_for(e.DirtyWorktreeError(["a"])) == codes.CONFLICT
    assert exit_code_for(e.HashMismatchError("x", "a", "b")) == codes.INTEGRITY
    assert exit_code_for(e.UnsafePathError("../x", "no")) == codes.INTEGRITY
    assert exit_code_for(e.NoSpaceError("full")) == codes.BACKEND
    assert exit_code_for(e.UnsupportedFormatError("new")) == codes.UNSUPPORTED
    assert exit_code_for(e.WorktreeNotFoundError("/x")) == codes.NOT_A_REPOSITORY
    assert exit_code_for(e.LockedError("busy")) == codes.LOCKED
    assert exit_code_for(KeyboardInterrupt()) == codes.INTERRUPTED
    assert exit_code_for(RuntimeError("bug")) == codes.FAILURE


def test_usage_error_is_2(run: Run) -> None:
    r = run("commit", "--no-such-option")
    assert r.code == 2
    assert "No such option" in r.err


def test_missing_required_option_is_2(worktree: Path, run: Run) -> None:
    r = run("-C", str(worktree), "commit")
    assert r.code == 2 and "Missing option" in r.err


def test_commit_that_left_something_out_is_3(worktree: Path, run: Run) -> None:
    os.mkfifo(worktree / "pipe")
    r = run("-C", str(worktree), "commit", "-m", "x")
    assert r.code == codes.WARNINGS == 3
    assert len(r.out.strip()) == 64  # finished: the commit is made
    assert "left out of the commit" in r.err and "pipe" in r.err


def test_not_a_worktree_is_4(tmp_path: Path, run: Run) -> None:
    r = run("-C", str(tmp_path), "status")
    assert r.code == 4
    assert r.err.splitlines()[0] == (
        f"error: not inside a cas worktree: no .cas folder in {tmp_path.resolve()} or any parent"
    )
    assert "Traceback" not in r.err


def test_missing_store_is_4(tmp_path: Path, run: Run) -> None:
    r = run("clone", str(tmp_path / "nothing"), str(tmp_path / "b"))
    assert r.code == 4
    assert "no cas store at" in r.err
    assert not (tmp_path / "b" / ".cas").exists()


def test_unknown_ref_is_5(worktree: Path, run: Run) -> None:
    r = run("-C", str(worktree), "checkout", "v9")
    assert r.code == 5
    assert r.err.startswith("error: unknown ref 'v9'")
    assert "hint: list versions with `cas log`" in r.err


def test_unknown_path_is_5(worktree: Path, run: Run) -> None:
    r = run("-C", str(worktree), "ls", "v1", "no/such/dir")
    assert r.code == 5
    assert "path 'no/such/dir' does not exist" in r.err


def test_dirty_checkout_is_6_and_changes_nothing(worktree: Path, run: Run) -> None:
    (worktree / "x").write_text("x")
    run("-C", str(worktree), "commit", "-m", "x")
    (worktree / "config.json").write_text("my edit")
    r = run("-C", str(worktree), "checkout", "v1")
    assert r.code == 6
    assert "uncommitted changes would be lost: config.json" in r.err
    assert "--force" in r.err
    assert (worktree / "config.json").read_text() == "my edit"
    assert (worktree / "x").exists()


def test_locked_worktree_is_7(worktree: Path, run: Run) -> None:
    held = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with Worktree(worktree).lock():
            held.set()
            release.wait(10)

    t = threading.Thread(target=hold)
    t.start()
    held.wait(10)
    try:
        r = run("-C", str(worktree), "commit", "-m", "x")
    finally:
        release.set()
        t.join()
    assert r.code == 7
    assert "is busy: another cas command is running in it" in r.err


def test_disk_full_on_the_store_is_8(
    worktree: Path, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_space(*_a: object, **_k: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cas.store.local, "open_temp", no_space)
    (worktree / "new.bin").write_bytes(b"new content" * 1000)
    r = run("-C", str(worktree), "commit", "-m", "x")
    assert r.code == 8
    assert "no space left on device" in r.err
    assert "free space and rerun" in r.err


def test_corrupt_pack_is_9_and_writes_nothing(worktree: Path, tmp_path: Path, run: Run) -> None:
    store = tmp_path / "store"
    packs = sorted(p for p in (store / PACKS).rglob("*") if p.is_file())
    for p in packs:
        data = bytearray(p.read_bytes())
        entries = read_pack_entries(lambda n, d=bytes(data): d[-n:], len(data), "pack")
        if entries[0].kind != KIND_CHUNK:
            continue  # damage file data, not trees (trees fail earlier, see below)
        data[60] ^= 0xFF  # inside the first blob's stored bytes (header is 8 + 44 bytes)
        p.write_bytes(bytes(data))
    r = run("--cache-dir", str(tmp_path / "fresh-cache"), "clone", str(store), str(tmp_path / "b"))
    assert r.code == 9
    assert "in pack" in r.err and "nothing in the worktree was changed" in r.err
    leftovers = [p for p in (tmp_path / "b").rglob("*") if ".cas" not in p.parts]
    assert leftovers == []


def test_corrupt_tree_is_9(worktree: Path, tmp_path: Path, run: Run) -> None:
    store = tmp_path / "store"
    for p in (p for p in (store / PACKS).rglob("*") if p.is_file()):
        data = bytearray(p.read_bytes())
        entries = read_pack_entries(lambda n, d=bytes(data): d[-n:], len(data), "pack")
        if entries[0].kind == KIND_TREE:
            data[entries[0].offset + 2] ^= 0xFF
            p.write_bytes(bytes(data))
    r = run("--cache-dir", str(tmp_path / "fresh-cache"), "clone", str(store), str(tmp_path / "b"))
    assert r.code == 9
    assert "in pack" in r.err


def test_newer_format_is_10(worktree: Path, tmp_path: Path, run: Run) -> None:
    import msgpack

    cfg = tmp_path / "store" / "config"
    m = msgpack.unpackb(cfg.read_bytes())
    m["format"] = 99
    cfg.write_bytes(msgpack.packb(m))
    r = run("-C", str(worktree), "status")
    assert r.code == 10
    assert "format version 99" in r.err and "upgrade cas" in r.err


def test_internal_error_is_1_with_a_report_line(
    worktree: Path, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*_a: object, **_k: object) -> None:
        raise RuntimeError("kaboom")

    monkeypatch.setattr(cas.api.Repo, "status", boom)
    r = run("-C", str(worktree), "status")
    assert r.code == 1
    assert r.err.startswith("error: internal error: RuntimeError: kaboom")
    assert "please report this" in r.err
    assert "Traceback" not in r.err
    r = run("--debug", "-C", str(worktree), "status")
    assert "Traceback" in r.err


def test_json_errors_are_one_object_on_stderr(worktree: Path, run: Run) -> None:
    r = run("--json", "-C", str(worktree), "checkout", "nope")
    assert r.code == 5
    assert r.out == ""
    err = json.loads(r.err)
    assert err == {
        "message_type": "error",
        "code": 5,
        "message": "unknown ref 'nope': no tag, branch or commit id matches it",
        "hint": "list versions with `cas log`, `cas tag` or `cas branch`",
    }
