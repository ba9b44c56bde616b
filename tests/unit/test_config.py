"""The store config: round trip, and refusal of what this cas cannot read."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest

from cas.chunking import ChunkerParams
from cas.config import (
    DEFAULT_PACK_SIZE,
    DEFAULT_ZSTD_LEVEL,
    FORMAT_VERSION,
    KNOWN_FEATURES,
    StoreConfig,
    decode_config,
    encode_config,
)
from cas.errors import CorruptObjectError, UnsupportedFormatError

SMALL = ChunkerParams(min=1024, avg=4096, max=16384)


def _config(**kw: Any) -> StoreConfig:
    base: dict[str, Any] = {"store_id": "0123abcd", "created_ns": 1_700_000_000_000_000_000}
    base.update(kw)
    return StoreConfig(**base)


def _map(**kw: Any) -> dict[str, Any]:
    m: dict[str, Any] = msgpack.unpackb(encode_config(_config()), raw=False)
    m.update(kw)
    return m


def _decode(m: dict[str, Any]) -> StoreConfig:
    return decode_config(msgpack.packb(m, use_bin_type=True))


def test_defaults() -> None:
    c = _config()
    assert c.chunker == ChunkerParams()
    assert c.zstd_level == DEFAULT_ZSTD_LEVEL
    assert c.pack_size == DEFAULT_PACK_SIZE
    assert c.format_version == FORMAT_VERSION == 1
    assert c.mandatory_features == c.optional_features == ()


@pytest.mark.parametrize(
    "config",
    [
        _config(),
        _config(chunker=SMALL, zstd_level=19, pack_size=64 * 1024),
        _config(chunker=ChunkerParams(min=2048, avg=8192, max=65536, normalization=3, seed=9)),
        _config(optional_features=("pretty-logs", "future-thing")),
        _config(zstd_level=0),
    ],
)
def test_round_trip(config: StoreConfig) -> None:
    data = encode_config(config)
    assert decode_config(data) == config
    assert encode_config(decode_config(data)) == data


def test_encoding_is_canonical() -> None:
    m = msgpack.unpackb(encode_config(_config()), raw=False)
    assert list(m) == sorted(m)
    assert list(m["chunker"]) == sorted(m["chunker"])
    assert m["type"] == "config"
    assert m["format"] == FORMAT_VERSION


def test_newer_format_version_is_refused() -> None:
    with pytest.raises(UnsupportedFormatError, match="format version 2") as ei:
        decode_config(encode_config(_config(format_version=FORMAT_VERSION + 1)))
    assert "upgrade" in ei.value.hint


def test_unknown_mandatory_feature_is_refused() -> None:
    assert "zeta-chunks" not in KNOWN_FEATURES
    data = encode_config(_config(mandatory_features=("zeta-chunks", "alpha-packs")))
    with pytest.raises(UnsupportedFormatError, match="alpha-packs, zeta-chunks") as ei:
        decode_config(data)
    assert "upgrade" in ei.value.hint


def test_unknown_optional_features_are_ignored_and_kept() -> None:
    c = decode_config(encode_config(_config(optional_features=("whatever",))))
    assert c.optional_features == ("whatever",)


def test_missing_optional_features_field_is_fine() -> None:
    m = _map()
    del m["optional_features"]
    assert _decode(m).optional_features == ()


def test_unknown_compression_is_refused() -> None:
    with pytest.raises(UnsupportedFormatError, match="unknown compression 'lz4'"):
        _decode(_map(compression={"codec": "lz4", "level": 1}))


@pytest.mark.parametrize(
    "chunker",
    [
        {"algorithm": "rabin"},
        {"min": 10},
        {"min": 65536, "avg": 4096},
        {"normalization": 7},
    ],
)
def test_unsupported_chunker_params_are_refused(chunker: dict[str, Any]) -> None:
    m = _map()
    m["chunker"] = {**m["chunker"], **chunker}
    with pytest.raises(UnsupportedFormatError, match="chunker parameters not supported"):
        _decode(m)


@pytest.mark.parametrize(
    ("m", "reason"),
    [
        (_map(type="commit"), "not a cas config"),
        ([1, 2, 3], "not a cas config"),
        (_map(format=0), "bad format version"),
        (_map(format="1"), "bad format version"),
        (_map(format=True), "bad format version"),
        (_map(pack_size=0), "pack size out of range"),
        (_map(pack_size=(1 << 31) + 1), "pack size out of range"),
        (_map(pack_size="big"), "malformed"),
        (_map(pack_size=float("inf")), "malformed"),
        (_map(created_ns=float("nan")), "malformed"),
        (_map(chunker=None), "malformed"),
        (_map(chunker={"min": 1024}), "malformed"),
        (_map(compression="zstd"), "malformed"),
        (_map(mandatory_features=3), "malformed"),
        (_map(optional_features=3), "malformed"),
    ],
)
def test_malformed_config_is_corrupt(m: Any, reason: str) -> None:
    with pytest.raises(CorruptObjectError, match=reason) as ei:
        _decode(m)
    assert ei.value.what == "config"


@pytest.mark.parametrize(
    "field",
    [
        "format",
        "mandatory_features",
        "chunker",
        "compression",
        "pack_size",
        "store_id",
        "created_ns",
    ],
)
def test_missing_field_is_corrupt(field: str) -> None:
    m = _map()
    del m[field]
    with pytest.raises(CorruptObjectError):
        _decode(m)


@pytest.mark.parametrize("data", [b"", b"\xc1", b"config", encode_config(_config())[:-1]])
def test_garbage_is_corrupt(data: bytes) -> None:
    with pytest.raises(CorruptObjectError):
        decode_config(data, "config of /x")
