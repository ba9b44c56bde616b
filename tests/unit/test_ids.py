"""ObjectId: a 32-byte value type with hex forms; no other sizes, no None."""

from __future__ import annotations

import pytest

from cas.ids import HEX_SIZE, ID_SIZE, SHORT_HEX, ObjectId, is_hex_prefix

RAW = bytes(range(32))
HEX = RAW.hex()


def test_wraps_exactly_32_bytes() -> None:
    oid = ObjectId(RAW)
    assert isinstance(oid, bytes)
    assert oid == RAW
    assert len(oid) == ID_SIZE


@pytest.mark.parametrize("size", [0, 1, 31, 33, 64])
def test_other_sizes_are_refused(size: int) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        ObjectId(b"\x00" * size)


def test_hex_forms() -> None:
    oid = ObjectId(RAW)
    assert str(oid) == HEX == oid.hex_
    assert len(str(oid)) == HEX_SIZE
    assert oid.short == HEX[:SHORT_HEX]
    assert repr(oid) == f"ObjectId({HEX[:SHORT_HEX]})"


def test_parse_round_trip() -> None:
    assert ObjectId.parse(HEX) == RAW
    assert isinstance(ObjectId.parse(HEX), ObjectId)
    assert ObjectId.parse(HEX.upper()) == RAW  # bytes.fromhex accepts either case


@pytest.mark.parametrize("text", ["", HEX[:-1], HEX + "0", "zz" * 32, " " + HEX[1:]])
def test_parse_refuses_malformed_hex(text: str) -> None:
    with pytest.raises(ValueError, match="hex"):
        ObjectId.parse(text)


def test_orders_hashes_and_compares_like_bytes() -> None:
    a, b = ObjectId(b"\x00" * 32), ObjectId(b"\x01" + b"\x00" * 31)
    assert sorted([b, a]) == [a, b]
    assert {a: 1}[b"\x00" * 32] == 1
    assert a != b


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a", True),
        ("0123456789abcdef", True),
        (HEX, True),
        ("", False),
        (HEX + "0", False),
        ("ABC", False),
        ("g", False),
        ("12 3", False),
    ],
)
def test_is_hex_prefix(text: str, expected: bool) -> None:
    assert is_hex_prefix(text) is expected
