"""Key names on the remote: object keys, fan-out, and ref-name escaping."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cas.hashing import hash_bytes
from cas.layout import (
    COMMITS,
    CONFIG_KEY,
    INDEX,
    PACKS,
    commit_key,
    escape_ref_name,
    index_key,
    pack_key,
    parse_object_key,
    parse_ref_entry_key,
    ref_entry_key,
    ref_folder,
    unescape_ref_name,
)
from cas.store.base import is_valid_key, validate_key

OID = hash_bytes(b"layout")
H = OID.hex()


def test_object_keys() -> None:
    assert CONFIG_KEY == "config"
    assert pack_key(OID) == f"packs/{H[:2]}/{H}"
    assert index_key(OID) == f"index/{H}"
    assert commit_key(OID) == f"commits/{H[:2]}/{H}"
    for key in (CONFIG_KEY, pack_key(OID), index_key(OID), commit_key(OID)):
        validate_key(key)


@pytest.mark.parametrize(
    ("key", "prefix"), [(pack_key(OID), PACKS), (index_key(OID), INDEX), (commit_key(OID), COMMITS)]
)
def test_parse_object_key_round_trip(key: str, prefix: str) -> None:
    assert parse_object_key(key, prefix) == OID


@pytest.mark.parametrize(
    ("key", "prefix"),
    [
        (pack_key(OID), COMMITS),  # wrong kind
        (f"packs/{H}", PACKS),  # no fan-out
        (f"packs/00/{H}", PACKS if not H.startswith("00") else COMMITS),  # wrong fan-out
        (f"packs/{H[:2]}/{H.upper()}", PACKS),
        (f"packs/{H[:2]}/{H[:-1]}", PACKS),
        (f"packs/{H[:2]}/{H}.tmp", PACKS),
        (f"packs/{H[:2]}/x/{H}", PACKS),
        (f"index/{H[:-2]}", INDEX),
        ("config", INDEX),
    ],
)
def test_parse_object_key_refuses_other_keys(key: str, prefix: str) -> None:
    assert parse_object_key(key, prefix) is None


@pytest.mark.parametrize(
    ("name", "escaped"),
    [
        ("main", "main"),
        ("v1.0_rc-2", "v1.0_rc-2"),
        ("Main", "%4dain"),
        ("feature/x", "feature%2fx"),
        ("a b", "a%20b"),
        ("100%", "100%25"),
        ("ü", "%c3%bc"),
        ("日本", "%e6%97%a5%e6%9c%ac"),
    ],
)
def test_escape_ref_name(name: str, escaped: str) -> None:
    assert escape_ref_name(name) == escaped
    assert unescape_ref_name(escaped) == name


@given(st.text(alphabet=st.characters(codec="utf-8"), min_size=1))
def test_escape_round_trip_gives_one_valid_key_component(name: str) -> None:
    escaped = escape_ref_name(name)
    assert "/" not in escaped
    assert escaped == escaped.lower() or "%" in escaped
    assert unescape_ref_name(escaped) == name
    assert is_valid_key(f"refs/heads/{escaped}/0000000001-{H}") or escaped in (".", "..")


@pytest.mark.parametrize("text", ["%", "%zz", "%c3", "%ff"])
def test_unescape_refuses_malformed_text(text: str) -> None:
    with pytest.raises(ValueError, match=r"escaped|invalid literal|can't decode"):
        unescape_ref_name(text)


def test_ref_folders() -> None:
    assert ref_folder("HEAD") == "refs/store-head/"
    assert ref_folder("heads/main") == "refs/heads/main/"
    assert ref_folder("tags/v1") == "refs/tags/v1/"
    assert ref_folder("heads/team/Feature") == "refs/heads/team%2f%46eature/"


@pytest.mark.parametrize("ref", ["main", "heads/", "tags", "remotes/x", "head", ""])
def test_ref_folder_refuses_non_refs(ref: str) -> None:
    with pytest.raises(ValueError, match="not a ref"):
        ref_folder(ref)


@pytest.mark.parametrize("ref", ["HEAD", "heads/main", "tags/v1.0", "heads/Ünï/cødé", "tags/A B"])
@pytest.mark.parametrize("seq", [1, 42, 9_999_999_999])
def test_ref_entry_key_round_trip(ref: str, seq: int) -> None:
    key = ref_entry_key(ref, seq, OID)
    validate_key(key)
    assert key.startswith(ref_folder(ref))
    assert parse_ref_entry_key(key) == (ref, seq, OID)


def test_ref_entry_key_sequence_is_zero_padded() -> None:
    assert ref_entry_key("heads/main", 7, OID) == f"refs/heads/main/0000000007-{H}"


@pytest.mark.parametrize(
    "key",
    [
        f"refs/heads/main/7-{H}",  # not padded
        f"refs/heads/main/0000000007_{H}",
        f"refs/heads/main/0000000007-{H[:-1]}",
        f"refs/heads/main/0000000007-{H}.cas-tmp",
        f"refs/heads/main/x/0000000007-{H}",
        f"refs/remotes/main/0000000007-{H}",
        f"refs/store-head/x/0000000007-{H}",
        f"refs/heads/%zz/0000000007-{H}",
        f"refs/heads/%/0000000007-{H}",
        f"packs/{H[:2]}/{H}",
        "refs/heads/main",
        "",
    ],
)
def test_parse_ref_entry_key_refuses_other_keys(key: str) -> None:
    assert parse_ref_entry_key(key) is None


@pytest.mark.parametrize("text", ["%2", "%+1", "% 1", "%61", "%2F", "A"])
def test_unescape_accepts_only_what_escape_writes(text: str) -> None:
    """Otherwise ``heads/a`` would have a second folder, ``refs/heads/%61/``."""
    with pytest.raises(ValueError, match=r"escaped|invalid literal|can't decode"):
        unescape_ref_name(text)
    assert parse_ref_entry_key(f"refs/heads/{text}/0000000001-{H}") is None
