"""Hypothesis strategies for the stored objects of cas.

Only valid objects are generated: names are single path components (no ``/``, NUL,
``.`` or ``..``), file entries have chunk sizes that add up, and entries are sorted by
the bytes of their names, as ``encode_tree`` requires.
"""

from __future__ import annotations

import os

from hypothesis import strategies as st

from cas.ids import ID_SIZE, ObjectId
from cas.objects import ChunkRef, Commit, CommitStats, EntryKind, RefEntry, Tree, TreeEntry

I64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
U63 = st.integers(min_value=0, max_value=2**63 - 1)

object_ids = st.binary(min_size=ID_SIZE, max_size=ID_SIZE).map(ObjectId)

# Text that msgpack can carry (UTF-8, so no lone surrogates).
utf8_text = st.text(alphabet=st.characters(codec="utf-8"), max_size=40)

_text_names = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="/\x00"), min_size=1, max_size=30
)
# Names read from a POSIX directory need not be UTF-8: os.fsdecode maps the other bytes
# to lone surrogates, and the tree encoding must carry them unchanged.
_byte_names = st.binary(min_size=1, max_size=30).filter(lambda b: b"/" not in b and 0 not in b)
names = st.one_of(_text_names, _byte_names.map(os.fsdecode)).filter(
    lambda n: n not in (".", "..") and len(os.fsencode(n)) <= 255
)
link_targets = st.one_of(
    st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1),
    st.binary(min_size=1, max_size=60).filter(lambda b: 0 not in b).map(os.fsdecode),
)
modes = st.integers(min_value=0, max_value=0o7777)
sizes = st.integers(min_value=1, max_value=2**40)


@st.composite
def file_entries(draw: st.DrawFn, name: str) -> TreeEntry:
    """A file: empty, one chunk whose id is the file id (implied), or several chunks."""
    shape = draw(st.sampled_from(["empty", "implied", "chunks"]))
    oid = draw(object_ids)
    if shape == "empty":
        return TreeEntry(name, EntryKind.FILE, draw(modes), draw(I64), 0, oid)
    if shape == "implied":
        size = draw(sizes)
        return TreeEntry(
            name, EntryKind.FILE, draw(modes), draw(I64), size, oid, (ChunkRef(oid, size),)
        )
    chunks = tuple(
        draw(
            st.lists(st.builds(ChunkRef, object_ids, sizes), min_size=1, max_size=6).filter(
                lambda cs: not (len(cs) == 1 and cs[0].chunk_id == oid)
            )
        )
    )
    size = sum(c.size for c in chunks)
    return TreeEntry(name, EntryKind.FILE, draw(modes), draw(I64), size, oid, chunks)


@st.composite
def tree_entries(draw: st.DrawFn, name: str) -> TreeEntry:
    """One entry of any kind under ``name``."""
    kind = draw(st.sampled_from(list(EntryKind)))
    if kind == EntryKind.FILE:
        return draw(file_entries(name))
    if kind == EntryKind.DIR:
        return TreeEntry(name, kind, draw(modes), draw(I64), draw(U63), draw(object_ids))
    target = draw(link_targets)
    return TreeEntry(
        name, kind, draw(modes), draw(I64), len(os.fsencode(target)), draw(object_ids), (), target
    )


@st.composite
def trees(draw: st.DrawFn, max_entries: int = 8) -> Tree:
    """A tree with unique names sorted by their bytes."""
    entry_names = draw(st.lists(names, max_size=max_entries, unique_by=os.fsencode))
    entry_names.sort(key=os.fsencode)
    return Tree(tuple(draw(tree_entries(n)) for n in entry_names))


commit_stats = st.builds(CommitStats, *(U63 for _ in CommitStats.__dataclass_fields__))

commits = st.builds(
    Commit,
    tree=object_ids,
    parents=st.lists(object_ids, max_size=4).map(tuple),
    message=st.text(alphabet=st.characters(codec="utf-8"), max_size=200),
    author=utf8_text,
    time_ns=I64,
    stats=commit_stats,
)


@st.composite
def ref_entries(draw: st.DrawFn) -> RefEntry:
    """A ref entry: a commit pointer, a symbolic HEAD, or a deletion."""
    shape = draw(st.sampled_from(["target", "symbolic", "deletion"]))
    return RefEntry(
        name=draw(st.sampled_from(["HEAD", "heads/main", "tags/v1"]) | utf8_text),
        target=draw(object_ids) if shape == "target" else None,
        symbolic=draw(utf8_text.filter(bool)) if shape == "symbolic" else "",
        prev=tuple(draw(st.lists(utf8_text, max_size=3))),
        time_ns=draw(I64),
        writer=draw(utf8_text),
    )
