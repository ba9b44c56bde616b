"""LocalCache: best-effort, immutable, content-named files; LRU trimming of packs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cas.cache import DEFAULT_PACK_LIMIT, LocalCache


def _pack_key(n: int) -> str:
    h = f"{n:064x}"
    return f"packs/{h[:2]}/{h}"


def _files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_disabled_cache_does_nothing(tmp_path: Path) -> None:
    cache = LocalCache(None)
    assert not cache.enabled
    assert cache.path("index/x") is None
    cache.put("index/x", b"data")
    assert cache.get("index/x") is None
    assert cache.read_range("index/x", 0, 1) is None
    assert not cache.has("index/x")
    cache.evict("index/x")
    cache.trim_packs()


def test_put_get_round_trip(tmp_path: Path) -> None:
    cache = LocalCache(tmp_path / "c")
    assert cache.enabled
    assert cache.pack_limit == DEFAULT_PACK_LIMIT
    assert cache.get("commits/ab/abcd") is None
    assert not cache.has("commits/ab/abcd")
    cache.put("commits/ab/abcd", b"commit bytes")
    cache.put("config", b"")
    assert cache.get("commits/ab/abcd") == b"commit bytes"
    assert cache.get("config") == b""
    assert cache.has("commits/ab/abcd")
    assert cache.path("commits/ab/abcd") == tmp_path / "c" / "commits" / "ab" / "abcd"
    assert _files(tmp_path / "c") == ["commits/ab/abcd", "config"]  # no temp files left


def test_put_replaces(tmp_path: Path) -> None:
    cache = LocalCache(tmp_path)
    cache.put("index/x", b"old")
    cache.put("index/x", b"new")
    assert cache.get("index/x") == b"new"


def test_read_range(tmp_path: Path) -> None:
    cache = LocalCache(tmp_path)
    cache.put(_pack_key(1), b"0123456789")
    assert cache.read_range(_pack_key(1), 2, 3) == b"234"
    assert cache.read_range(_pack_key(1), 7, 3) == b"789"
    assert cache.read_range(_pack_key(1), 8, 3) is None  # short: not trusted
    assert cache.read_range(_pack_key(2), 0, 1) is None


def test_evict(tmp_path: Path) -> None:
    cache = LocalCache(tmp_path)
    cache.put("index/x", b"damaged")
    cache.evict("index/x")
    assert cache.get("index/x") is None
    cache.evict("index/x")  # missing is fine


def test_put_is_best_effort(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    cache = LocalCache(blocker)  # a file where the folder should be
    cache.put("index/x", b"data")
    assert cache.get("index/x") is None
    assert not cache.has("index/x")


def test_get_of_a_folder_is_a_miss(tmp_path: Path) -> None:
    cache = LocalCache(tmp_path)
    cache.put("packs/ab/cd", b"x")
    assert cache.get("packs/ab") is None
    assert not cache.has("packs/ab")


def _age(cache: LocalCache, key: str, seconds: int) -> None:
    p = cache.path(key)
    assert p is not None
    os.utime(p, ns=(seconds * 10**9, seconds * 10**9))


def test_trim_packs_drops_least_recently_used(tmp_path: Path) -> None:
    cache = LocalCache(tmp_path, pack_limit=250)
    for n in (1, 2):
        cache.put(_pack_key(n), bytes(100))
        _age(cache, _pack_key(n), 1000 * n)
    assert cache.get(_pack_key(1)) is not None  # now the most recently used
    cache.put(_pack_key(3), bytes(100))  # 300 > 250: one must go
    assert cache.has(_pack_key(1))
    assert not cache.has(_pack_key(2))
    assert cache.has(_pack_key(3))


def test_touch_marks_a_pack_as_recently_used(tmp_path: Path) -> None:
    cache = LocalCache(tmp_path, pack_limit=250)
    for n in (1, 2):
        cache.put(_pack_key(n), bytes(100))
        _age(cache, _pack_key(n), 1000 * n)
    cache.touch(_pack_key(1))
    cache.touch(_pack_key(9))  # not cached: nothing happens
    cache.put(_pack_key(3), bytes(100))
    assert [cache.has(_pack_key(n)) for n in (1, 2, 3)] == [True, False, True]
    LocalCache(None).touch(_pack_key(1))


def test_trim_packs_removes_until_under_the_limit(tmp_path: Path) -> None:
    cache = LocalCache(tmp_path, pack_limit=10**9)
    for n in range(5):
        cache.put(_pack_key(n), bytes(100))
        _age(cache, _pack_key(n), 1000 + n)
    cache.pack_limit = 250
    cache.trim_packs()
    assert [cache.has(_pack_key(n)) for n in range(5)] == [False, False, False, True, True]


def test_trim_packs_leaves_other_keys_alone(tmp_path: Path) -> None:
    cache = LocalCache(tmp_path, pack_limit=0)
    cache.put("index/x", bytes(1000))
    cache.put("trees/ab/cd", bytes(1000))
    cache.put(_pack_key(1), bytes(10))
    assert cache.has("index/x")
    assert cache.has("trees/ab/cd")
    assert not cache.has(_pack_key(1))


def test_get_of_a_non_pack_does_not_touch_mtime(tmp_path: Path) -> None:
    cache = LocalCache(tmp_path)
    cache.put("index/x", b"x")
    _age(cache, "index/x", 1000)
    cache.get("index/x")
    assert os.stat(tmp_path / "index" / "x").st_mtime_ns == 1000 * 10**9


@pytest.mark.parametrize("key", ["index/x", _pack_key(7)])
def test_deleting_the_folder_loses_nothing_but_speed(tmp_path: Path, key: str) -> None:
    cache = LocalCache(tmp_path / "c")
    cache.put(key, b"x")
    for p in sorted((tmp_path / "c").rglob("*"), reverse=True):
        p.unlink() if p.is_file() else p.rmdir()
    assert cache.get(key) is None
    cache.put(key, b"x")
    assert cache.get(key) == b"x"
