"""Codec 2 (byte planes) in a store: new stores declare the feature and store float16
weights with it, a store created before it never gets a codec-2 chunk, every copy of a
weight file comes back byte for byte, and a cas that does not know the feature refuses
the store as a whole."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import pytest

import cas
import cas.config as config_module
from cas.compression import CODEC_PLANES2, CODEC_RAW, CODEC_ZSTD, FEATURE_PLANES2
from cas.config import decode_config, encode_config
from cas.errors import UnsupportedFormatError
from cas.layout import CONFIG_KEY, pack_key
from cas.packs import KIND_CHUNK


def _weights(path: Path, n: int, seed: int) -> bytes:
    """A safetensors-like file: a header, then float16 values of a trained-like spread."""
    rng = random.Random(seed)
    out = bytearray(8 + 64 + 2 * n)
    out[:8] = (64).to_bytes(8, "little")
    out[8:72] = b'{"w":{"dtype":"F16"}}'.ljust(64)
    body = memoryview(out)[72:]
    body[0::2] = rng.randbytes(n)  # mantissa bits: noise
    body[1::2] = bytes(
        rng.choice((0x20, 0x24, 0x28, 0x2C, 0xA0, 0xA4, 0xA8, 0xAC)) for _ in range(n)
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(out))
    return bytes(out)


def _codecs(repo: cas.Repo) -> set[int]:
    index = repo.repository.load_index(refresh=True)
    return {loc.codec for _bid, loc in index.iter_blobs()}


def _worktree(tmp_path: Path) -> Path:
    wt = tmp_path / "wt"
    _weights(wt / "models" / "model.safetensors", 700_000, seed=1)
    _weights(wt / "models" / "adapter.safetensors", 90_000, seed=2)
    (wt / "notes.txt").write_text("epoch 3: loss 0.21\n" * 2000)
    return wt


def test_a_new_store_stores_float16_weights_as_planes(tmp_path: Path) -> None:
    wt = _worktree(tmp_path)
    repo = cas.init(tmp_path / "store", wt, progress=False)
    assert repo.repository.config.mandatory_features == (FEATURE_PLANES2,)
    assert repo.repository.config.planes
    repo.commit("weights")
    assert CODEC_PLANES2 in _codecs(repo)

    # A fresh machine: nothing but the store.
    out = tmp_path / "clone"
    cas.clone(tmp_path / "store", out, cache_dir=tmp_path / "fresh-cache", progress=False)
    for rel in ("models/model.safetensors", "models/adapter.safetensors", "notes.txt"):
        assert (out / rel).read_bytes() == (wt / rel).read_bytes()
    assert cas.open(out, progress=False).verify(read_data=True).ok


def test_a_store_from_before_the_feature_keeps_codecs_0_and_1(tmp_path: Path) -> None:
    """Its config is never rewritten, so its writers never use a codec its older readers
    do not know; its data still round-trips."""
    store = tmp_path / "store"
    wt = _worktree(tmp_path)
    repo = cas.init(store, wt, progress=False)
    old = decode_config((store / CONFIG_KEY).read_bytes())
    legacy = dataclasses.replace(old, mandatory_features=())
    (store / CONFIG_KEY).write_bytes(encode_config(legacy))
    repo = cas.open(wt, progress=False)
    assert not repo.repository.config.planes
    repo.commit("weights")
    assert _codecs(repo) <= {CODEC_RAW, CODEC_ZSTD}
    out = tmp_path / "clone"
    cas.clone(store, out, cache_dir=tmp_path / "fresh-cache", progress=False)
    assert (out / "models/model.safetensors").read_bytes() == (
        wt / "models/model.safetensors"
    ).read_bytes()


def test_a_cas_without_the_feature_refuses_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wt = _worktree(tmp_path)
    cas.init(tmp_path / "store", wt, progress=False).commit("weights")
    monkeypatch.setattr(config_module, "KNOWN_FEATURES", frozenset())
    before = (wt / "models/model.safetensors").read_bytes()
    with pytest.raises(UnsupportedFormatError, match=r"needs features .*zstd-planes2"):
        cas.clone(tmp_path / "store", tmp_path / "clone", progress=False)
    assert (wt / "models/model.safetensors").read_bytes() == before


@pytest.mark.parametrize("planes", [True, False], ids=["new-store", "store-from-before"])
def test_repair_reuploads_with_the_stores_own_codecs(tmp_path: Path, planes: bool) -> None:
    """Chunks that repair uploads again from the worktree follow the store's config like
    a commit's: byte planes only where the store declares them."""
    store = tmp_path / "store"
    wt = _worktree(tmp_path)
    repo = cas.init(store, wt, progress=False)
    if not planes:
        old = decode_config((store / CONFIG_KEY).read_bytes())
        legacy = dataclasses.replace(old, mandatory_features=())
        (store / CONFIG_KEY).write_bytes(encode_config(legacy))
        repo = cas.open(wt, progress=False)
    repo.commit("weights")
    index = repo.repository.load_index(refresh=True)
    data_packs = {loc.pack_id for _bid, loc in index.iter_blobs() if loc.kind == KIND_CHUNK}
    assert data_packs
    for pack_id in data_packs:  # lost; the folder listings stay, the worktree has every file
        (store / pack_key(pack_id)).unlink()
    report = repo.repair()
    assert report.ok and report.reuploaded_chunks > 0
    codecs = _codecs(repo)
    if planes:
        assert CODEC_PLANES2 in codecs
    else:
        assert codecs <= {CODEC_RAW, CODEC_ZSTD}
    out = tmp_path / "clone"
    cas.clone(store, out, cache_dir=tmp_path / "fresh-cache", progress=False)
    for rel in ("models/model.safetensors", "models/adapter.safetensors", "notes.txt"):
        assert (out / rel).read_bytes() == (wt / rel).read_bytes()
