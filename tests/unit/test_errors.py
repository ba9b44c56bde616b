"""The error hierarchy: the tree in the module docstring is the truth, and is complete.

Every class has a docstring and a readable message; the tree drawn in ``cas/errors.py``
lists every :class:`CasError` subclass with its real parent, so the picture the CLI's
exit-code table and the docs are built from cannot drift from the code.
"""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest

import cas.errors as errors_module
from cas.errors import BackendError, CasError, NotFoundError

# One way to build each class, as library code would. A new class must be added here.
SAMPLES: dict[str, CasError] = {
    "CasError": CasError("something failed"),
    "RepositoryError": errors_module.RepositoryError("store unusable"),
    "RepositoryNotFoundError": errors_module.RepositoryNotFoundError("/data/store"),
    "WorktreeNotFoundError": errors_module.WorktreeNotFoundError("/home/u/x"),
    "UnsupportedFormatError": errors_module.UnsupportedFormatError("format 9", hint="upgrade"),
    "DetachedHeadError": errors_module.DetachedHeadError("HEAD is detached"),
    "LockedError": errors_module.LockedError("worktree is locked"),
    "NotFoundError": NotFoundError("nothing"),
    "ObjectNotFoundError": errors_module.ObjectNotFoundError("packs/ab/abcd"),
    "RefNotFoundError": errors_module.RefNotFoundError("v9"),
    "PathNotFoundError": errors_module.PathNotFoundError("a/b", "v1"),
    "ConflictError": errors_module.ConflictError("conflict"),
    "AlreadyExistsError": errors_module.AlreadyExistsError("tag v1"),
    "PreconditionFailedError": errors_module.PreconditionFailedError("version token moved"),
    "RefConflictError": errors_module.RefConflictError("main moved"),
    "AmbiguousRefError": errors_module.AmbiguousRefError("abc matches 2 commits"),
    "DirtyWorktreeError": errors_module.DirtyWorktreeError([f"f{i}" for i in range(7)]),
    "IntegrityError": errors_module.IntegrityError("damaged"),
    "CorruptObjectError": errors_module.CorruptObjectError("pack ab", "footer checksum"),
    "HashMismatchError": errors_module.HashMismatchError("chunk x", "aa", "bb"),
    "MissingDataError": errors_module.MissingDataError("chunk x is in no indexed pack"),
    "ShortReadError": errors_module.ShortReadError("packs/ab/abcd", 10, 3),
    "InvalidNameError": errors_module.InvalidNameError("invalid branch name 'a b'"),
    "UnsafePathError": errors_module.UnsafePathError("../x", "parent directory"),
    "WorktreeReadError": errors_module.WorktreeReadError(
        "imgs/a.png", PermissionError(13, "Permission denied")
    ),
    "BackendError": BackendError("failed to read x"),
    "BackendUnavailableError": errors_module.BackendUnavailableError("mount gone"),
    "PermissionDeniedError": errors_module.PermissionDeniedError("read-only"),
    "NoSpaceError": errors_module.NoSpaceError("disk full"),
}


def _classes() -> dict[str, type[CasError]]:
    return {
        name: obj
        for name, obj in vars(errors_module).items()
        if inspect.isclass(obj) and issubclass(obj, CasError)
    }


def _docstring_tree() -> list[tuple[int, str]]:
    """(depth, class name) for every line of the drawn tree, in order.

    The root is the line that is just ``CasError``; a class's depth is given by the
    column of its ``├──``/``└──`` branch, four columns per level.
    """
    doc = errors_module.__doc__ or ""
    rows: list[tuple[int, str]] = []
    root_col = None
    for line in doc.splitlines():
        if root_col is None:
            if line.strip() == "CasError":
                root_col = line.index("CasError")
                rows.append((0, "CasError"))
            continue
        m = re.search(r"[├└]── (\w+)", line)
        if m is None:
            if line.strip() and not set(line.strip()) <= set("│ "):
                break  # the end of the drawing
            continue
        rows.append(((m.start() - root_col) // 4 + 1, m.group(1)))
    return rows


def test_docstring_tree_parses() -> None:
    rows = _docstring_tree()
    assert rows[0] == (0, "CasError")
    assert len(rows) > 20


def test_docstring_tree_lists_every_class_once() -> None:
    names = [name for _, name in _docstring_tree()]
    assert len(names) == len(set(names)), "a class is drawn twice"
    assert set(names) == set(_classes())


def test_docstring_tree_matches_the_real_parents() -> None:
    classes = _classes()
    stack: list[str] = []
    for depth, name in _docstring_tree():
        del stack[depth:]
        if stack:
            parent = stack[-1]
            cas_bases = [b for b in classes[name].__bases__ if issubclass(b, CasError)]
            assert cas_bases == [classes[parent]], f"{name} is drawn under {parent}"
        stack.append(name)


def test_no_cas_error_is_defined_outside_errors_py() -> None:
    """Read every module's source (importing them all would pull in the whole stack)."""
    names = set(_classes())
    package = Path(errors_module.__file__).parent
    offenders = []
    for path in sorted(package.rglob("*.py")):
        if path.name == "errors.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                bases = {
                    b.attr if isinstance(b, ast.Attribute) else getattr(b, "id", "")
                    for b in node.bases
                }
                if bases & names:
                    offenders.append(f"{path.name}: {node.name}")
    assert offenders == []


def test_samples_cover_every_class() -> None:
    assert set(SAMPLES) == set(_classes())
    for name, exc in SAMPLES.items():
        assert type(exc).__name__ == name


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_every_class_has_a_docstring_and_a_message(name: str) -> None:
    exc = SAMPLES[name]
    assert (type(exc).__doc__ or "").strip(), f"{name} has no docstring"
    assert str(exc).strip()
    assert exc.message == str(exc)
    assert isinstance(exc.hint, str)
    assert "{" not in str(exc), "an unformatted placeholder in the message"


def test_messages_name_the_object() -> None:
    assert "packs/ab/abcd" in str(SAMPLES["ObjectNotFoundError"])
    assert "'v9'" in str(SAMPLES["RefNotFoundError"])
    assert str(SAMPLES["CorruptObjectError"]) == "corrupt pack ab: footer checksum"
    assert str(SAMPLES["HashMismatchError"]) == "hash mismatch in chunk x: expected aa, got bb"
    assert str(SAMPLES["ShortReadError"]) == (
        "short read of packs/ab/abcd: expected 10 bytes, got 3"
    )
    assert str(SAMPLES["UnsafePathError"]) == "unsafe path '../x': parent directory"
    assert str(SAMPLES["AlreadyExistsError"]) == "tag v1 already exists"
    assert str(SAMPLES["RepositoryNotFoundError"]) == "no cas store at /data/store"
    assert str(SAMPLES["WorktreeReadError"]) == "cannot read imgs/a.png: Permission denied"
    gone = errors_module.WorktreeReadError("x.bin", FileNotFoundError(2, "No such file"))
    assert str(gone) == "x.bin disappeared while the commit was reading it"
    assert "commit again" in gone.hint and ".casignore" in SAMPLES["WorktreeReadError"].hint


def test_facts_are_kept_as_attributes() -> None:
    e = SAMPLES["ShortReadError"]
    assert (e.key, e.expected, e.actual) == ("packs/ab/abcd", 10, 3)  # type: ignore[attr-defined]
    d = SAMPLES["DirtyWorktreeError"]
    assert d.paths == [f"f{i}" for i in range(7)]  # type: ignore[attr-defined]
    assert "and 2 more" in str(d)
    assert SAMPLES["CorruptObjectError"].reason == "footer checksum"  # type: ignore[attr-defined]


def test_hints() -> None:
    assert SAMPLES["UnsupportedFormatError"].hint == "upgrade"
    assert "cas init" in SAMPLES["RepositoryNotFoundError"].hint
    assert errors_module.RepositoryNotFoundError("x", hint="h").hint == "h"
    assert CasError("x").hint == ""
    assert CasError("x", hint="do y").hint == "do y"
    assert SAMPLES["IntegrityError"].hint  # class-level hint inherited


def test_not_found_errors_are_lookup_errors() -> None:
    for name in ("NotFoundError", "ObjectNotFoundError", "RefNotFoundError", "PathNotFoundError"):
        assert isinstance(SAMPLES[name], LookupError)


def test_invalid_names_are_value_errors() -> None:
    assert isinstance(SAMPLES["InvalidNameError"], ValueError)
    assert SAMPLES["InvalidNameError"].hint


def test_only_unavailable_backends_are_transient() -> None:
    for name, exc in SAMPLES.items():
        if isinstance(exc, BackendError):
            assert exc.transient is (name == "BackendUnavailableError"), name
