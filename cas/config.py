"""The store's config: format version, feature flags, chunking and compression.

The config is the one object written at ``init`` and never changed. A reader refuses a
store whose format version is newer than :data:`FORMAT_VERSION` or that lists a mandatory
feature it does not know (:class:`~cas.errors.UnsupportedFormatError`); optional features
may be ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cas.chunking import ChunkerParams
from cas.codec import decode_guarded, pack_canonical, unpack_untrusted
from cas.compression import FEATURE_PLANES2
from cas.errors import UPGRADE_HINT, CorruptObjectError, UnsupportedFormatError

FORMAT_VERSION = 1
KNOWN_FEATURES: frozenset[str] = frozenset({FEATURE_PLANES2})
# What a new store declares. A store created before a feature existed keeps its config
# (it is never rewritten), and writers use only what that config declares.
NEW_STORE_FEATURES: tuple[str, ...] = (FEATURE_PLANES2,)
DEFAULT_PACK_SIZE = 32 << 20
DEFAULT_ZSTD_LEVEL = 1


@dataclass(frozen=True, slots=True)
class StoreConfig:
    """Everything a writer must agree on to produce compatible objects."""

    store_id: str
    created_ns: int
    chunker: ChunkerParams = field(default_factory=ChunkerParams)
    zstd_level: int = DEFAULT_ZSTD_LEVEL
    pack_size: int = DEFAULT_PACK_SIZE
    format_version: int = FORMAT_VERSION
    mandatory_features: tuple[str, ...] = ()
    optional_features: tuple[str, ...] = ()

    @property
    def planes(self) -> bool:
        """Writers may store chunks as codec 2 (grouped byte planes)."""
        return FEATURE_PLANES2 in self.mandatory_features


def encode_config(c: StoreConfig) -> bytes:
    """Encode the config canonically."""
    ch = c.chunker
    return pack_canonical(
        {
            "type": "config",
            "format": c.format_version,
            "mandatory_features": list(c.mandatory_features),
            "optional_features": list(c.optional_features),
            "store_id": c.store_id,
            "created_ns": c.created_ns,
            "chunker": {
                "algorithm": ch.algorithm,
                "min": ch.min,
                "avg": ch.avg,
                "max": ch.max,
                "normalization": ch.normalization,
                "seed": ch.seed,
            },
            "compression": {"codec": "zstd", "level": c.zstd_level},
            "pack_size": c.pack_size,
        }
    )


def decode_config(data: bytes, what: str = "config") -> StoreConfig:
    """Decode, validate and check compatibility of a config.

    Raises:
        CorruptObjectError: malformed.
        UnsupportedFormatError: newer format or unknown mandatory feature.
    """
    return decode_guarded(_decode_config, data, what)


def _decode_config(data: bytes, what: str) -> StoreConfig:
    m = unpack_untrusted(data, what)
    if not isinstance(m, dict) or m.get("type") != "config":
        raise CorruptObjectError(what, "not a cas config")
    version = m["format"]
    if type(version) is not int or version < 1:
        raise CorruptObjectError(what, "bad format version")
    if version > FORMAT_VERSION:
        raise UnsupportedFormatError(
            f"the store uses format version {version}; this cas reads up to {FORMAT_VERSION}",
            hint=UPGRADE_HINT,
        )
    mandatory = tuple(str(f) for f in m["mandatory_features"])
    unknown = sorted(set(mandatory) - KNOWN_FEATURES)
    if unknown:
        raise UnsupportedFormatError(
            f"the store needs features this cas does not know: {', '.join(unknown)}",
            hint=UPGRADE_HINT,
        )
    ch = m["chunker"]
    comp = m["compression"]
    if comp["codec"] != "zstd":
        raise UnsupportedFormatError(f"unknown compression {comp['codec']!r}", hint=UPGRADE_HINT)
    params = ChunkerParams(
        min=int(ch["min"]),
        avg=int(ch["avg"]),
        max=int(ch["max"]),
        normalization=int(ch["normalization"]),
        seed=int(ch["seed"]),
        algorithm=str(ch["algorithm"]),
    )
    try:
        params.validate()
    except ValueError as exc:
        raise UnsupportedFormatError(f"chunker parameters not supported: {exc}") from exc
    pack_size = int(m["pack_size"])
    if not (1 <= pack_size <= 1 << 31):
        raise CorruptObjectError(what, "pack size out of range")
    return StoreConfig(
        store_id=str(m["store_id"]),
        created_ns=int(m["created_ns"]),
        chunker=params,
        zstd_level=int(comp["level"]),
        pack_size=pack_size,
        format_version=version,
        mandatory_features=mandatory,
        optional_features=tuple(str(f) for f in m.get("optional_features", [])),
    )
