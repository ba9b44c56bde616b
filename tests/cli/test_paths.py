"""PATH arguments are read as git reads them: from the current folder (or -C DIR)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click
import pytest

from cas_cli.paths import to_worktree_path

from .conftest import Run


@pytest.fixture
def nested(worktree: Path, run: Run) -> Path:
    """``worktree`` with ``a/b/c/f.txt`` committed as v2 ("two"); v1 lacks it."""
    (worktree / "a" / "b" / "c").mkdir(parents=True)
    (worktree / "a" / "b" / "c" / "f.txt").write_text("two\n")
    r = run("-C", str(worktree), "commit", "-m", "nested", "--tag", "v2")
    assert r.code == 0, r.err
    return worktree


def test_checkout_paths_from_a_subdirectory(nested: Path, run: Run) -> None:
    sub = nested / "a" / "b"
    (sub / "c" / "f.txt").write_text("edited\n")
    (nested / "config.json").write_text("edited too")
    r = run("checkout", "--force", "v2", "c/f.txt", cwd=sub)
    assert r.code == 0, r.err
    assert r.out.startswith("Restored 1 path from v2 (")
    assert (sub / "c" / "f.txt").read_text() == "two\n"
    assert (nested / "config.json").read_text() == "edited too"  # only the path given
    # `.` is the current folder; `..` steps out of it, still inside the worktree.
    (sub / "c" / "f.txt").write_text("edited\n")
    r = run("checkout", "--force", "v2", ".", cwd=sub / "c")
    assert r.code == 0, r.err
    assert (sub / "c" / "f.txt").read_text() == "two\n"
    r = run("checkout", "--force", "v1", "../../config.json", cwd=sub)
    assert r.code == 0, r.err
    assert (nested / "config.json").read_text() == '{"lr": 0.001}\n'


def test_absolute_paths_inside_the_worktree_are_accepted(nested: Path, run: Run) -> None:
    target = nested / "a" / "b" / "c" / "f.txt"
    target.write_text("edited\n")
    r = run("checkout", "--force", "v2", str(target), cwd=nested / "a")
    assert r.code == 0, r.err
    assert target.read_text() == "two\n"
    r = run("-C", str(nested), "--json", "ls", "v2", str(nested / "a" / "b"))
    assert [e["path"] for e in json.loads(r.out)["entries"]] == ["a/b/c"]


def test_paths_outside_the_worktree_are_usage_errors(
    nested: Path, tmp_path: Path, run: Run
) -> None:
    for path in ("../../../x", str(tmp_path / "elsewhere"), "/"):
        r = run("checkout", "--force", "v2", path, cwd=nested / "a" / "b")
        assert r.code == 2, (path, r.err)
        assert f"{path!r} is outside the worktree {nested.resolve()}" in r.err
        assert "unsafe path" not in r.err
    r = run("--json", "-C", str(nested), "ls", "v2", "..")
    assert r.code == 2
    assert json.loads(r.err)["message"].startswith("Invalid value for PATH: '..' is outside")


def test_ls_from_a_subdirectory(nested: Path, run: Run) -> None:
    sub = nested / "a" / "b"
    r = run("--json", "ls", "v2", "c", cwd=sub)
    assert r.code == 0, r.err
    assert [e["path"] for e in json.loads(r.out)["entries"]] == ["a/b/c/f.txt"]
    r = run("ls", "v2", ".", cwd=sub)
    assert r.code == 0, r.err
    assert r.out.rstrip().endswith(" a/b/c/")  # worktree-relative, no "./"
    # From the root, `.` and `./x` are the root and x (the library once printed "./").
    root_listing = run("-C", str(nested), "ls", "v2").out
    assert run("-C", str(nested), "ls", "v2", ".").out == root_listing
    assert "./" not in root_listing
    r = run("-C", str(nested), "--json", "ls", "v2", "./images/cat/")
    paths = [e["path"] for e in json.loads(r.out)["entries"]]
    assert len(paths) == 10 and all(p.startswith("images/cat/") for p in paths)
    # Without PATH: the whole version, wherever the command runs.
    assert run("ls", "v2", cwd=sub).out == root_listing
    r = run("ls", "v1", "c", cwd=sub)
    assert r.code == 5 and "path 'a/b/c' does not exist" in r.err


def test_minus_c_is_the_starting_folder(nested: Path, run: Run) -> None:
    (nested / "a" / "b" / "c" / "f.txt").write_text("edited\n")
    r = run("-C", str(nested / "a"), "checkout", "--force", "v2", "b/c/f.txt")
    assert r.code == 0, r.err
    assert (nested / "a" / "b" / "c" / "f.txt").read_text() == "two\n"


def test_init_and_clone_paths_start_from_minus_c(tmp_path: Path, run: Run) -> None:
    base = tmp_path / "base"
    (base / "wt").mkdir(parents=True)
    (base / "wt" / "f.txt").write_text("f\n")
    r = run("-C", str(base), "init", "store", "wt", cwd=tmp_path)
    assert r.code == 0, r.err
    assert (base / "store" / "config").is_file() and (base / "wt" / ".cas").is_dir()
    assert run("-C", str(base / "wt"), "commit", "-m", "one").code == 0
    r = run("-C", str(base), "clone", "store", "copy", cwd=tmp_path)
    assert r.code == 0, r.err
    assert (base / "copy" / "f.txt").read_text() == "f\n"
    assert not (tmp_path / "copy").exists() and not (tmp_path / "store").exists()
    # A file: URL is a location, not a path to put under -C DIR (file:/abs, file:///abs).
    for n, url in enumerate((f"file:{tmp_path}/u1", f"file://{tmp_path}/u2")):
        r = run("-C", str(base), "init", url, f"wt-url{n}", cwd=tmp_path)
        assert r.code == 0, r.err
        assert (tmp_path / f"u{n + 1}" / "config").is_file()
    assert not any(p.name.startswith("file:") for p in base.iterdir())


def test_worktree_path_conversion(tmp_path: Path) -> None:
    root = tmp_path / "wt"
    (root / "a" / "b").mkdir(parents=True)
    root = root.resolve()
    sub = root / "a" / "b"
    assert to_worktree_path("c/f.txt", base=sub, root=root) == "a/b/c/f.txt"
    assert to_worktree_path(".", base=sub, root=root) == "a/b"
    assert to_worktree_path("", base=sub, root=root) == "a/b"
    assert to_worktree_path("..", base=sub, root=root) == "a"
    assert to_worktree_path("../..", base=sub, root=root) == ""
    assert to_worktree_path("./c//d/", base=sub, root=root) == "a/b/c/d"
    assert to_worktree_path(str(root / "x"), base=sub, root=root) == "x"
    with pytest.raises(click.BadParameter, match="outside the worktree"):
        to_worktree_path("../../..", base=sub, root=root)
    with pytest.raises(click.BadParameter, match="outside the worktree"):
        to_worktree_path(str(tmp_path), base=sub, root=root)


def test_paths_through_a_symlinked_folder(tmp_path: Path) -> None:
    """The worktree reached through a link (/tmp -> /private/tmp on macOS, say)."""
    root = tmp_path / "wt"
    (root / "a").mkdir(parents=True)
    link = tmp_path / "link"
    os.symlink(root, link)
    real = root.resolve()
    # Started in the linked folder: relative paths start from where it leads.
    assert to_worktree_path("f", base=link / "a", root=real) == "a/f"
    # An absolute path typed through the link.
    assert to_worktree_path(str(link / "a" / "f"), base=real, root=real) == "a/f"
    # A symlink inside the worktree is named, not followed.
    os.symlink(tmp_path, root / "out")
    assert to_worktree_path("out", base=real, root=real) == "out"
