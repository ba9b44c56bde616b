"""The stat cache (``cas.worktree.StatCache``) and the folder walk it is keyed on."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import msgpack
import pytest

import cas.worktree
from cas.hashing import hash_bytes
from cas.ids import ObjectId
from cas.objects import ChunkRef, EntryKind
from cas.worktree import (
    RACY_FINE_NS,
    STAT_CACHE_VERSION,
    FileContent,
    LocalEntry,
    StatCache,
    Worktree,
    listing_digest,
)

OLD_NS = 1_600_000_000_123_456_789  # long before any seen_ns below: never racy
SEEN_NS = OLD_NS + 10**12


def _content(*parts: bytes) -> FileContent:
    data = b"".join(parts)
    return FileContent(hash_bytes(data), tuple(ChunkRef(hash_bytes(p), len(p)) for p in parts))


def _entry(path: str, content: FileContent, *, ino: int = 7, seen: int = SEEN_NS) -> LocalEntry:
    size = sum(c.size for c in content.chunks)
    return LocalEntry(path, EntryKind.FILE, 0o644, size, OLD_NS, ino, OLD_NS + 5, "", seen)


def _roundtrip(cache: StatCache) -> StatCache:
    return StatCache.decode(cache.encode())


def _file_row(name: bytes, content: FileContent, *, seen: int = SEEN_NS, ino: int = 7):
    size = sum(c.size for c in content.chunks)
    return (name, size, OLD_NS, ino, OLD_NS + 5, seen, content)


class Index(set[bytes]):
    """Stands in for the chunk index: a set of blob ids."""


# ---------------------------------------------------------------------------- file rows


def test_file_rows_round_trip_including_multi_chunk_empty_and_odd_names():
    one, many, empty = _content(b"x" * 10), _content(b"a" * 5, b"b" * 7, b"c"), _content()
    odd = os.fsdecode(b"dir/caf\xe9")  # not UTF-8
    cache = StatCache()
    for path, c in [("a", one), ("dir/sub/many", many), ("dir/empty", empty), (odd, one)]:
        cache.record(_entry(path, c), c)
    back = _roundtrip(cache)
    assert back.lookup(_entry("a", one)) == one
    assert back.lookup(_entry("dir/sub/many", many)) == many
    assert back.lookup(_entry("dir/empty", empty)) == empty
    assert back.lookup(_entry(odd, one)) == one
    assert back.find(b"dir/sub", b"many", 13, OLD_NS, 7, OLD_NS + 5) == (many, SEEN_NS)
    assert not back.changed  # nothing to save again


def test_lookup_needs_every_field_of_the_fingerprint():
    c = _content(b"hello")
    e = _entry("f", c)
    cache = _roundtrip(_cache_with(e, c))
    assert cache.lookup(e) == c
    for changed in (
        LocalEntry("f", e.kind, e.mode, e.size + 1, e.mtime_ns, e.ino, e.ctime_ns),
        LocalEntry("f", e.kind, e.mode, e.size, e.mtime_ns + 1, e.ino, e.ctime_ns),
        LocalEntry("f", e.kind, e.mode, e.size, e.mtime_ns, e.ino + 1, e.ctime_ns),
        LocalEntry("f", e.kind, e.mode, e.size, e.mtime_ns, e.ino, e.ctime_ns + 1),
        LocalEntry("g", e.kind, e.mode, e.size, e.mtime_ns, e.ino, e.ctime_ns),
    ):
        assert cache.lookup(changed) is None
        assert cache.known_id(changed) is None
    assert cache.known_id(e) == c.oid


def test_holding_finds_the_files_with_a_chunk_saved_or_recorded_since():
    a, b = _content(b"aa", b"bb"), _content(b"cc")
    recorded = _content(b"dd", b"aa")
    cache = StatCache()
    cache.record(_entry("x/a", a), a)
    cache.record(_entry("y/b", b), b)
    cache = _roundtrip(cache)
    cache.record(_entry("z/new", recorded), recorded)  # a change not saved yet
    wanted = {hash_bytes(b"aa")}
    assert dict(cache.holding(wanted)) == {"x/a": a, "z/new": recorded}
    assert dict(cache.holding({hash_bytes(b"cc"), hash_bytes(b"dd")})) == {
        "y/b": b,
        "z/new": recorded,
    }
    assert list(cache.holding({hash_bytes(b"nowhere")})) == []
    cache.forget("x/a")
    assert dict(cache.holding(wanted)) == {"z/new": recorded}


def _cache_with(e: LocalEntry, c: FileContent) -> StatCache:
    cache = StatCache()
    cache.record(e, c)
    return cache


def test_racily_clean_rows_are_not_saved():
    c = _content(b"fresh")
    fresh = _entry("d/fresh", c, seen=OLD_NS + RACY_FINE_NS // 2)  # changed just before seen
    safe = _entry("d/safe", c, ino=8)
    cache = StatCache()
    cache.record(fresh, c)
    cache.record(safe, c)
    assert cache.lookup(fresh) == c  # usable in this process …
    back = _roundtrip(cache)
    assert back.lookup(fresh) is None  # … but not trusted by the next one
    assert back.lookup(safe) == c


def test_a_row_keeps_its_seen_time_across_saves():
    c = _content(b"x")
    cache = _cache_with(_entry("f", c, seen=SEEN_NS), c)
    assert _roundtrip(_roundtrip(cache)).find(b"", b"f", 1, OLD_NS, 7, OLD_NS + 5) == (c, SEEN_NS)


def test_forget_and_the_older_rows_pop():
    c = _content(b"x")
    cache = _roundtrip(_cache_with(_entry("d/f", c), c))
    cache.rows.pop("d/f", None)
    assert cache.changed
    assert cache.lookup(_entry("d/f", c)) is None
    assert _roundtrip(cache).lookup(_entry("d/f", c)) is None
    cache.forget("no/such/file")  # nothing to forget: fine


# ---------------------------------------------------------------------------- folder records


def _folder(cache: StatCache, files: dict[bytes, FileContent], *, seen: int = SEEN_NS):
    """Record folder b"d" with ``files``; return (digest, tree id, index with everything)."""
    rows = [_file_row(n, c, seen=seen, ino=i) for i, (n, c) in enumerate(sorted(files.items()))]
    digest = listing_digest([(r[0], 0o100644, r[1], r[2], r[3], r[4], b"") for r in rows], [])
    tree = hash_bytes(b"tree of d")
    cache.set_dir(b"d", rows, tree, digest)
    index = Index({tree, *(ch.chunk_id for c in files.values() for ch in c.chunks)})
    return digest, tree, index


def test_folder_tree_is_reused_only_for_the_same_digest_with_everything_indexed():
    files = {b"a": _content(b"a" * 3), b"b": _content(b"b1", b"b2")}
    cache = StatCache()
    digest, tree, index = _folder(cache, files)
    back = _roundtrip(cache)
    assert back.reuse_tree(b"d", digest, index) == tree
    assert isinstance(back.reuse_tree(b"d", digest, index), ObjectId)
    assert back.reuse_tree(b"d", hash_bytes(b"another listing"), index) is None
    assert back.reuse_tree(b"elsewhere", digest, index) is None
    assert back.reuse_tree(b"d", digest, index - {tree}) is None  # tree not in the store
    lost = files[b"b"].chunks[1].chunk_id
    assert back.reuse_tree(b"d", digest, index - {lost}) is None  # a chunk not in the store
    # Vouched for by the index mark, the chunks are not looked up (the tree still is).
    assert back.reuse_tree(b"d", digest, index - {lost}, vouched=True) == tree
    assert back.reuse_tree(b"d", digest, index - {tree}, vouched=True) is None
    # The folder's file rows are there for a partial rebuild.
    assert back.lookup(_entry("d/b", files[b"b"], ino=1)) == files[b"b"]


def test_the_index_mark_vouches_only_while_every_segment_it_names_is_there():
    segments = [hash_bytes(b"segment %d" % i) for i in range(3)]
    cache = StatCache()
    assert not cache.index_vouched(set(segments))  # no mark yet: chunks are looked up
    cache.set_index_mark(segments[:2])
    assert cache.changed
    back = _roundtrip(cache)
    assert back.index_vouched(set(segments)) and back.index_vouched(set(segments[:2]))
    assert not back.index_vouched({segments[0], segments[2]})  # one lost (say, a repair)
    back.changed = False
    back.set_index_mark(reversed(segments[:2]))
    assert not back.changed  # the same mark: nothing to save


def test_folder_with_a_racy_file_is_not_vouched_for():
    files = {b"a": _content(b"a"), b"b": _content(b"b")}
    cache = StatCache()
    digest, _tree, index = _folder(cache, files, seen=OLD_NS + 1)  # every row racy
    back = _roundtrip(cache)
    assert back.reuse_tree(b"d", digest, index) is None
    assert back.lookup(_entry("d/a", files[b"a"], ino=0)) is None


def test_recording_a_file_drops_its_folders_tree():
    files = {b"a": _content(b"a")}
    cache = StatCache()
    digest, _tree, index = _folder(cache, files)
    cache = _roundtrip(cache)
    other = _content(b"other")
    cache.record(_entry("d/new", other), other)  # as checkout or status would
    assert cache.reuse_tree(b"d", digest, index) is None
    assert _roundtrip(cache).reuse_tree(b"d", digest, index) is None
    # … and forgetting one does too.
    cache2 = StatCache()
    digest2, _t, index2 = _folder(cache2, files)
    cache2 = _roundtrip(cache2)
    cache2.forget("d/a")
    assert _roundtrip(cache2).reuse_tree(b"d", digest2, index2) is None


def test_keep_dirs_drops_folders_that_are_gone():
    cache = StatCache()
    digest, _tree, index = _folder(cache, {b"a": _content(b"a")})
    cache = _roundtrip(cache)
    cache.keep_dirs({b"d"})
    assert not cache.changed
    cache.keep_dirs({b"", b"other"})
    assert cache.changed
    assert _roundtrip(cache).reuse_tree(b"d", digest, index) is None


def test_listing_digest_covers_every_field_and_the_subtrees():
    base = (b"f", 0o100644, 3, OLD_NS, 7, OLD_NS + 5, b"")
    d0 = listing_digest([base], [])
    for i in range(1, 6):
        changed = list(base)
        changed[i] += 1
        assert listing_digest([tuple(changed)], []) != d0
    assert listing_digest([(b"g", *base[1:])], []) != d0
    link = (b"l", 0o120777, 1, OLD_NS, 8, OLD_NS, b"a")
    assert listing_digest([link], []) != listing_digest([(*link[:6], b"b")], [])
    sub = (b"s", 0o040755, 0, OLD_NS, 9, OLD_NS, b"")
    assert listing_digest([sub], [hash_bytes(b"1")]) != listing_digest([sub], [hash_bytes(b"2")])


# ---------------------------------------------------------------------------- old or damaged


def _old_v3_statcache() -> bytes:
    c = _content(b"x")
    row = [1, OLD_NS, 7, OLD_NS + 5, SEEN_NS, bytes(c.oid), bytes(c.oid), [1]]
    return msgpack.packb({"v": 3, "rows": {b"f": row}}, use_bin_type=True)


@pytest.mark.parametrize(
    "data",
    [
        _old_v3_statcache(),
        msgpack.packb({"v": 2, "rows": {}}, use_bin_type=True),
        msgpack.packb({"v": STAT_CACHE_VERSION + 1, "dirs": {}}, use_bin_type=True),
    ],
    ids=["v3", "v2", "newer"],
)
def test_a_stat_cache_of_another_version_is_ignored_quietly(data: bytes, caplog):
    with caplog.at_level(logging.WARNING):
        cache = StatCache.decode(data)
    assert cache.lookup(_entry("f", _content(b"x"))) is None
    assert not caplog.records
    assert StatCache.decode(cache.encode()).lookup(_entry("f", _content(b"x"))) is None


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc1garbage",
        msgpack.packb([1, 2, 3]),
        msgpack.packb({"v": STAT_CACHE_VERSION}),
        msgpack.packb({"v": STAT_CACHE_VERSION, "dirs": []}),
        msgpack.packb({"v": STAT_CACHE_VERSION, "dirs": {b"d": [None, None, b"", b""]}})[:-3],
        msgpack.packb({"v": STAT_CACHE_VERSION, "dirs": {b"d": [b"short", b"x" * 32, b"", b""]}}),
        msgpack.packb({"v": STAT_CACHE_VERSION, "dirs": {b"d": [None, b"x" * 32, b"", b""]}}),
        msgpack.packb({"v": STAT_CACHE_VERSION, "dirs": {b"d": [None, None, b"odd", b""]}}),
        msgpack.packb({"v": STAT_CACHE_VERSION, "dirs": {"d": [None, None, b"", b""]}}),
        msgpack.packb({"v": STAT_CACHE_VERSION, "dirs": {b"d": [None, None]}}),
    ],
)
def test_an_unreadable_stat_cache_is_an_empty_one(data: bytes, caplog):
    with caplog.at_level(logging.WARNING):
        cache = StatCache.decode(data)
    assert cache.lookup(_entry("d/f", _content(b"x"))) is None
    assert caplog.records  # said once, then carry on


def test_a_damaged_folder_drops_only_that_folders_rows(caplog):
    c = _content(b"x")
    cache = StatCache()
    cache.record(_entry("good/f", c), c)
    cache.record(_entry("bad/f", c), c)
    m = msgpack.unpackb(cache.encode(), raw=False, strict_map_key=False)
    m["dirs"][b"bad"][3] = m["dirs"][b"bad"][3][:-2]  # truncated columns
    back = StatCache.decode(msgpack.packb(m, use_bin_type=True))
    with caplog.at_level(logging.WARNING):
        assert back.lookup(_entry("bad/f", c)) is None
    assert "bad" in caplog.text
    assert back.lookup(_entry("good/f", c)) == c
    assert back.changed  # the damaged record is rewritten at the next save
    assert _roundtrip(back).lookup(_entry("good/f", c)) == c


def test_rows_that_do_not_add_up_are_misses():
    c = _content(b"abc")
    cache = _cache_with(_entry("f", c), c)
    m = msgpack.unpackb(cache.encode(), raw=False, strict_map_key=False)
    cols = msgpack.unpackb(m["dirs"][b""][3], raw=False)
    cols[8] = [4]  # chunk sizes no longer add up to the file size
    m["dirs"][b""][3] = msgpack.packb(cols, use_bin_type=True)
    damaged = StatCache.decode(msgpack.packb(m, use_bin_type=True))
    assert damaged.lookup(_entry("f", c)) is None
    assert damaged.known_id(_entry("f", c)) is None


# ---------------------------------------------------------------------------- saving


def test_an_unchanged_cache_is_not_written_again(tmp_path: Path):
    wt = Worktree.create(tmp_path / "wt", "somewhere")
    c = _content(b"x")
    cache = _cache_with(_entry("f", c), c)
    wt.save_stat_cache(cache)
    assert not cache.changed
    path = wt.meta / "statcache"
    before = path.stat()
    loaded = wt.load_stat_cache()
    assert loaded.lookup(_entry("f", c)) == c
    wt.save_stat_cache(loaded)
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    loaded.forget("f")
    wt.save_stat_cache(loaded)
    assert path.stat().st_ino != before.st_ino  # replaced (temp file, then os.replace)
    assert wt.load_stat_cache().lookup(_entry("f", c)) is None


def test_a_missing_or_old_stat_cache_file_loads_empty(tmp_path: Path):
    wt = Worktree.create(tmp_path / "wt", "somewhere")
    assert wt.load_stat_cache().lookup(_entry("f", _content(b"x"))) is None
    (wt.meta / "statcache").write_bytes(_old_v3_statcache())
    assert wt.load_stat_cache().lookup(_entry("f", _content(b"x"))) is None


# ---------------------------------------------------------------------------- the walk


def _tree(root: Path) -> None:
    (root / "b" / "deep" / "er").mkdir(parents=True)
    (root / "a").mkdir()
    (root / "a" / "f.txt").write_bytes(b"f")
    (root / "b" / "deep" / "er" / "x").write_bytes(b"xx")
    (root / "b" / "z").write_bytes(b"")
    (root / "b" / ".cas").mkdir()  # only the root's .cas is cas's own
    (root / "b" / ".cas" / "kept").write_bytes(b"k")
    (root / "top").write_bytes(b"top")
    (root / "ignored.tmp").write_bytes(b"i")
    (root / "top.cas-tmp-123").write_bytes(b"t")
    (root / "store").mkdir()
    (root / "store" / "pack").write_bytes(b"p")
    (root / ".casignore").write_text("*.tmp\n")
    os.symlink("a", root / "link")
    os.chmod(root / "top", 0o600)


def test_walk_lists_children_before_parents_sorted_by_name_bytes(tmp_path: Path):
    wt = Worktree.create(tmp_path / "wt", "somewhere")
    _tree(wt.root)
    wt.exclude(wt.root / "store")
    walked = list(wt.walk())
    order = [rel for rel, _ in walked]
    assert order[-1] == b""
    assert sorted(order) == sorted([b"", b"a", b"b", b"b/.cas", b"b/deep", b"b/deep/er"])
    for i, rel in enumerate(order):
        for earlier in order[:i]:
            assert not (earlier and rel.startswith(earlier + b"/"))  # no parent before a child
    listings = dict(walked)
    names = [e[0] for e in listings[b""]]
    assert names == [b".casignore", b"a", b"b", b"link", b"top"]
    assert names == sorted(names)
    link = next(e for e in listings[b""] if e[0] == b"link")
    assert stat.S_ISLNK(link[1]) and link[2] == 1 and link[6] == b"a"
    top = next(e for e in listings[b""] if e[0] == b"top")
    st = os.lstat(wt.root / "top")
    assert top == (b"top", st.st_mode, 3, st.st_mtime_ns, st.st_ino, st.st_ctime_ns, b"")
    assert all(e[2] == 0 for e in listings[b""] if stat.S_ISDIR(e[1]))


def test_walk_and_scan_see_the_same_entries(tmp_path: Path):
    wt = Worktree.create(tmp_path / "wt", "somewhere")
    _tree(wt.root)
    wt.exclude(wt.root / "store")
    scanned = wt.scan()
    walked = {
        os.fsdecode(rel + b"/" + e[0] if rel else e[0]): e
        for rel, listing in wt.walk()
        for e in listing
    }
    assert set(scanned) == set(walked)
    for path, e in scanned.items():
        w = walked[path]
        assert (e.mode, e.size, e.mtime_ns, e.ino, e.ctime_ns) == (
            stat.S_IMODE(w[1]),
            w[2],
            w[3],
            w[4],
            w[5],
        )
        assert e.target == os.fsdecode(w[6])
    assert scanned["link"].kind == EntryKind.SYMLINK
    assert scanned["b/deep"].kind == EntryKind.DIR
    assert set(wt.scan(under="b")) == {p for p in scanned if p.startswith("b/")}


# ---------------------------------------------------------------------------- changes in memory


def test_many_changes_in_one_folder_fold_and_keep_every_row_right():
    """Past _FOLD_CHANGES rows recorded in one folder, the changes are folded into its
    encoded rows: recorded rows (racy ones too) stay visible, forgotten ones stay gone,
    and a save still drops the racy ones."""
    n = cas.worktree._FOLD_CHANGES * 2 + 3
    contents = [_content(b"f%d" % i, b"tail") for i in range(n)]
    cache = StatCache()
    racy_seen = OLD_NS + RACY_FINE_NS // 2
    for i, c in enumerate(contents):
        cache.record(_entry(f"d/f{i:04d}", c, ino=i, seen=racy_seen if i % 7 == 0 else SEEN_NS), c)
    for i in range(0, n, 5):
        cache.forget(f"d/f{i:04d}")
    other = _content(b"elsewhere")
    cache.record(_entry("e/g", other), other)

    def expected(i: int, *, saved: bool) -> FileContent | None:
        if i % 5 == 0 or (saved and i % 7 == 0):
            return None
        return contents[i]

    for i, c in enumerate(contents):  # in this process: racy rows included
        assert cache.lookup(_entry(f"d/f{i:04d}", c, ino=i)) == expected(i, saved=False)
    back = _roundtrip(cache)
    for i, c in enumerate(contents):
        assert back.lookup(_entry(f"d/f{i:04d}", c, ino=i)) == expected(i, saved=True)
    assert back.lookup(_entry("e/g", other)) == other


def test_lookups_that_alternate_between_folders_see_each_folders_rows():
    """Only one folder is decoded at a time; going back and forth changes nothing."""
    a, b = _content(b"in a"), _content(b"in bb")
    cache = StatCache()
    cache.record(_entry("a/f", a), a)
    cache.record(_entry("b/f", b), b)
    back = _roundtrip(cache)
    for _ in range(3):
        assert back.lookup(_entry("a/f", a)) == a
        assert back.lookup(_entry("b/f", a)) is None  # b/f has b's size, not a's
        assert back.lookup(_entry("b/f", b)) == b
    back.record(_entry("a/g", b), b)  # a change beside the encoded rows of a
    assert back.lookup(_entry("a/f", a)) == a
    assert back.lookup(_entry("a/g", b)) == b
    again = _roundtrip(back)
    assert again.lookup(_entry("a/f", a)) == a
    assert again.lookup(_entry("a/g", b)) == b
    assert again.lookup(_entry("b/f", b)) == b


def test_the_file_written_folder_by_folder_is_the_one_msgpack_would_write(tmp_path: Path):
    """``save_stat_cache`` writes the encoding in pieces; the bytes are the format's."""
    cache = StatCache()
    for d in range(20):
        for f in range(30):
            c = _content(b"%d-%d" % (d, f))
            cache.record(_entry(f"d{d}/sub/f{f}", c), c)
    cache.record(_entry("top", _content(b"t")), _content(b"t"))
    parts = list(cache.encode_parts())
    assert len(parts) == 1 + 21
    whole = b"".join(parts)
    decoded = msgpack.unpackb(whole, raw=False, strict_map_key=False)
    assert whole == msgpack.packb(decoded, use_bin_type=True)
    assert sorted(decoded["dirs"]) == sorted([b""] + [b"d%d/sub" % d for d in range(20)])
    wt = Worktree.create(tmp_path / "wt", str(tmp_path / "store"))
    wt.save_stat_cache(cache)
    assert (wt.meta / "statcache").read_bytes() == whole
    c = _content(b"3-4")
    assert (
        StatCache.decode((wt.meta / "statcache").read_bytes()).lookup(_entry("d3/sub/f4", c)) == c
    )
