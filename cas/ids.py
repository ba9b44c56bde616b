"""Object ids: 32-byte BLAKE3 digests.

An :class:`ObjectId` names every immutable object cas stores (chunks, trees, packs,
index segments, commits). It is a ``bytes`` subclass of exactly 32 bytes, so it sorts,
hashes and serialises like bytes, and ``str(oid)`` is the full lower-case hex form.
"""

from __future__ import annotations

ID_SIZE = 32
HEX_SIZE = 2 * ID_SIZE
SHORT_HEX = 12


class ObjectId(bytes):
    """A 32-byte BLAKE3 digest naming an immutable object."""

    __slots__ = ()

    def __new__(cls, raw: bytes) -> ObjectId:
        """Wrap a 32-byte digest; anything else is a ``ValueError``."""
        if len(raw) != ID_SIZE:
            raise ValueError(f"an object id has {ID_SIZE} bytes, not {len(raw)}")
        return super().__new__(cls, raw)

    @classmethod
    def parse(cls, text: str) -> ObjectId:
        """Parse the full 64-character hex form (``ValueError`` otherwise)."""
        if len(text) != HEX_SIZE:
            raise ValueError(f"an object id has {HEX_SIZE} hex digits, not {len(text)}")
        return cls(bytes.fromhex(text))

    @property
    def hex_(self) -> str:
        """The full hex form."""
        return self.hex()

    @property
    def short(self) -> str:
        """The first 12 hex digits, as shown in logs."""
        return self.hex()[:SHORT_HEX]

    def __str__(self) -> str:
        return self.hex()

    def __repr__(self) -> str:
        return f"ObjectId({self.short})"


def is_hex_prefix(text: str) -> bool:
    """True when ``text`` could be (a prefix of) an id's hex form."""
    return 0 < len(text) <= HEX_SIZE and all(c in "0123456789abcdef" for c in text)
