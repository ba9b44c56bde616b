"""Key names on the remote; the only place that maps object kinds to keys.

::

    config                                   the store's config (written once)
    packs/<h2>/<pack id>                     packs (data chunks and tree blobs)
    index/<segment id>                       index segments
    journal/<segment id>                     one uploaded pack not in a segment yet (a
                                             commit in progress, or one killed)
    commits/<h2>/<commit id>                 commits
    refs/heads/<name>/<seq>-<entry id>       branch history entries
    refs/tags/<name>/<seq>-<entry id>        tag history entries
    refs/store-head/<seq>-<entry id>         the store's HEAD (its default branch)

``<h2>`` is the first two hex digits of the id (a fan-out that keeps folders small on
Drive). Ids are 64 lower-case hex digits. Ref names are escaped so that any branch or tag
name maps to one key component: ``[a-z0-9._-]`` stay, every other byte of the UTF-8 name
becomes ``%xx``.
"""

from __future__ import annotations

import re

from cas.ids import HEX_SIZE, ObjectId

CONFIG_KEY = "config"
PACKS = "packs/"
INDEX = "index/"
JOURNAL = "journal/"
COMMITS = "commits/"
REFS = "refs/"
STORE_HEAD = "store-head"

_SAFE = frozenset(b"abcdefghijklmnopqrstuvwxyz0123456789._-")
_ID_RE = re.compile(rf"^[0-9a-f]{{{HEX_SIZE}}}$")
_ENTRY_RE = re.compile(rf"^(\d{{10}})-([0-9a-f]{{{HEX_SIZE}}})$")


def pack_key(pack_id: ObjectId) -> str:
    """Key of a pack."""
    h = pack_id.hex()
    return f"{PACKS}{h[:2]}/{h}"


def index_key(segment_id: ObjectId) -> str:
    """Key of an index segment."""
    return f"{INDEX}{segment_id.hex()}"


def journal_key(entry_id: ObjectId) -> str:
    """Key of a journal entry (encoded as an index segment of one pack)."""
    return f"{JOURNAL}{entry_id.hex()}"


def commit_key(commit_id: ObjectId) -> str:
    """Key of a commit."""
    h = commit_id.hex()
    return f"{COMMITS}{h[:2]}/{h}"


def parse_object_key(key: str, prefix: str) -> ObjectId | None:
    """The id at the end of a pack, index or commit key, or None if it is not one."""
    if not key.startswith(prefix):
        return None
    name = key.rsplit("/", 1)[-1]
    if not _ID_RE.match(name):
        return None
    if prefix not in (INDEX, JOURNAL) and key != f"{prefix}{name[:2]}/{name}":
        return None
    return ObjectId(bytes.fromhex(name))


def escape_ref_name(name: str) -> str:
    """Escape a ref name (``heads/x`` style without the kind) into one key component."""
    return "".join(chr(b) if b in _SAFE else f"%{b:02x}" for b in name.encode("utf-8"))


def unescape_ref_name(text: str) -> str:
    """Undo :func:`escape_ref_name` (``ValueError`` on malformed input)."""
    out = bytearray()
    i = 0
    while i < len(text):
        if text[i] == "%":
            out.append(int(text[i + 1 : i + 3], 16))
            i += 3
        else:
            out.append(ord(text[i]))
            i += 1
    name = out.decode("utf-8")
    # One ref, one folder: "%2", "%+1" or "%61" (for "a") are not what escape_ref_name
    # writes, and accepting them would give one ref several folders.
    if escape_ref_name(name) != text:
        raise ValueError(f"not an escaped ref name: {text!r}")
    return name


def ref_folder(ref: str) -> str:
    """Folder of a ref's entries; ``ref`` is ``heads/<n>``, ``tags/<n>`` or ``HEAD``."""
    if ref == "HEAD":
        return f"{REFS}{STORE_HEAD}/"
    kind, _, name = ref.partition("/")
    if kind not in ("heads", "tags") or not name:
        raise ValueError(f"not a ref: {ref!r}")
    return f"{REFS}{kind}/{escape_ref_name(name)}/"


def ref_entry_key(ref: str, seq: int, entry_id: ObjectId) -> str:
    """Key of one ref entry."""
    return f"{ref_folder(ref)}{seq:010d}-{entry_id.hex()}"


def parse_ref_entry_key(key: str) -> tuple[str, int, ObjectId] | None:
    """``(ref, seq, entry id)`` for a ref entry key, or None if it is not one."""
    parts = key.split("/")
    if len(parts) == 3 and parts[:2] == ["refs", STORE_HEAD]:
        ref, leaf = "HEAD", parts[2]
    elif len(parts) == 4 and parts[0] == "refs" and parts[1] in ("heads", "tags"):
        try:
            ref, leaf = f"{parts[1]}/{unescape_ref_name(parts[2])}", parts[3]
        except (ValueError, IndexError):
            return None
    else:
        return None
    m = _ENTRY_RE.match(leaf)
    if not m:
        return None
    return ref, int(m.group(1)), ObjectId(bytes.fromhex(m.group(2)))
