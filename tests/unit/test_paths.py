"""Names and paths from trees or users: single components only, nothing that escapes."""

from __future__ import annotations

import pytest

from cas.errors import UnsafePathError
from cas.paths import MAX_NAME_BYTES, RESERVED_ROOT_NAMES, check_name, join_path, split_path


@pytest.mark.parametrize(
    "name", ["a", "...", ".hidden", "a b", "ünïcødé", "x" * MAX_NAME_BYTES, ".cas2", "\\"]
)
def test_plain_names_pass(name: str) -> None:
    assert check_name(name) == name
    assert check_name(name, at_root=True) == name


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("", "empty"),
        (".", "'.'"),
        ("..", "'..'"),
        ("a/b", "'/'"),
        ("/", "'/'"),
        ("/etc", "'/'"),
        ("a/", "'/'"),
        ("a\x00b", "NUL"),
        ("\x00", "NUL"),
        ("x" * (MAX_NAME_BYTES + 1), "too long"),
        ("é" * (MAX_NAME_BYTES // 2 + 1), "too long"),  # counted in UTF-8 bytes
    ],
)
def test_unsafe_names_are_refused(name: str, reason: str) -> None:
    with pytest.raises(UnsafePathError, match=reason) as ei:
        check_name(name)
    assert ei.value.reason
    assert "unsafe path" in str(ei.value)


def test_long_name_message_is_shortened() -> None:
    with pytest.raises(UnsafePathError) as ei:
        check_name("y" * 10_000)
    assert len(ei.value.path) < 50


def test_dot_cas_is_reserved_at_the_root_only() -> None:
    assert ".cas" in RESERVED_ROOT_NAMES
    assert check_name(".cas") == ".cas"
    with pytest.raises(UnsafePathError, match="reserved"):
        check_name(".cas", at_root=True)


@pytest.mark.parametrize(
    ("path", "parts"),
    [
        ("", ()),
        (".", ()),
        ("a", ("a",)),
        ("a/b/c", ("a", "b", "c")),
        ("./a//b/", ("a", "b")),
        ("a/./b", ("a", "b")),
        ("sub/.cas", ("sub", ".cas")),
        ("...", ("...",)),
    ],
)
def test_split_path(path: str, parts: tuple[str, ...]) -> None:
    assert split_path(path) == parts


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/etc/passwd",
        "//server/share",
        "..",
        "../a",
        "a/..",
        "a/../b",
        "a/b/..",
        ".cas",
        ".cas/objects",
        "./.cas/x",
        "a/\x00/b",
        "a\x00",
    ],
)
def test_split_path_refuses(path: str) -> None:
    with pytest.raises(UnsafePathError):
        split_path(path)


def test_join_path() -> None:
    assert join_path("", "a") == "a"
    assert join_path("a/b", "c") == "a/b/c"
    assert split_path(join_path("a/b", "c")) == ("a", "b", "c")
