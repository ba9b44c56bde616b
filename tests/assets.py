"""A seeded generator of ML asset folders, and a tree comparison helper.

Reusable by any test or benchmark: nothing here imports cas. The same ``seed`` and
:class:`AssetSpec` always give the same bytes, names, modes and mtimes.

::

    info = generate_assets(root, AssetSpec(small_files=300, large_bytes=2 << 20), seed=1)
    m = mutate_assets(root, info, seed=2)          # +5 % files, -1 % files, 10 % of the
    print(m.changed_bytes)                         # large file rewritten in place
    assert_same_tree(root, other_root)             # lstat walk, ignores .cas

The folder looks like a Colab ``/content/_assets``::

    data/train/class_07/img_00042.jpg     small files in class sub-folders (≈90 %)
    data/val/class_03/img_00007.jpg       (≈10 %)
    data/corpus/part-0000.jsonl           jsonl text
    data/corpus/_SUCCESS                  an empty file
    data/labels/übersicht 2024.csv        a name with a space and non-ASCII letters
    models/base/model.safetensors         8-byte LE header length + JSON header + f16 bytes
    models/base/config.json, tokenizer.json
    models/current -> base                relative symlink to a folder inside the tree
    configs/train.yaml, configs/eval.yaml
    configs/latest.yaml -> train.yaml     relative symlink to a file
    models/previous -> base-old           dangling relative symlink
    configs/nested/deep/er/params.toml    nested folders
    scripts/run.sh                        mode 0o755
    secrets/token.txt                     mode 0o600
    outputs/empty_run/                    an empty folder
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import stat
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "AssetInfo",
    "AssetSpec",
    "Mutation",
    "Node",
    "age_tree",
    "assert_same_tree",
    "compare_snapshots",
    "f16_bytes",
    "generate_assets",
    "insert_bytes",
    "mutate_assets",
    "mutate_metadata",
    "snapshot_tree",
    "wait_out_racy_window",
]

# Every generated mtime is "now - 1 day + a seeded offset", with nanoseconds that are
# never a whole millisecond, so that a lost or rounded mtime shows up in a comparison.
_DAY_NS = 86_400 * 1_000_000_000
_BLOCK = 8 << 20  # the large file is generated in blocks of this size (memory stays small)


@dataclass(frozen=True)
class AssetSpec:
    """Shape of a generated folder."""

    small_files: int = 300
    classes: int = 10
    val_share: float = 0.1
    small_min: int = 1024
    small_max: int = 12 * 1024
    large_bytes: int = 2 << 20
    jsonl_files: int = 2
    jsonl_lines: int = 200


@dataclass
class AssetInfo:
    """What :func:`generate_assets` wrote (paths are relative, ``/``-separated)."""

    root: Path
    small: list[str]
    large: str
    large_data_offset: int
    symlinks: dict[str, str]
    executables: list[str]
    empty_dirs: list[str]
    files: dict[str, int] = field(default_factory=dict)  # every regular file → size

    @property
    def total_bytes(self) -> int:
        """Bytes of all regular files."""
        return sum(self.files.values())


@dataclass
class Mutation:
    """What :func:`mutate_assets` changed."""

    added: dict[str, int]
    deleted: dict[str, int]
    rewritten: tuple[str, int, int]  # (path, offset, length) rewritten in place

    @property
    def changed_bytes(self) -> int:
        """New content: bytes of the added files plus the rewritten region."""
        return sum(self.added.values()) + self.rewritten[2]


# ---------------------------------------------------------------------------- content


def f16_bytes(rng: random.Random, n: int) -> bytes:
    """``n`` bytes that look like little-endian float16 weights.

    Low bytes are uniform; high bytes carry a random sign and an exponent in a narrow
    band around 1e-2 (like trained weights), so zstd shrinks them only a little.
    """
    half = (n + 1) // 2
    low = rng.randbytes(half)
    table = bytes((i & 0x80) | (0x1C + (i % 16)) for i in range(256))
    high = rng.randbytes(half).translate(table)
    out = bytearray(2 * half)
    out[0::2] = low
    out[1::2] = high
    return bytes(out[:n])


def _jpeg_like(rng: random.Random, size: int) -> bytes:
    head = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    body = rng.randbytes(max(0, size - len(head) - 2))
    return (head + body + b"\xff\xd9")[:size]


_WORDS = (
    "the",
    "a",
    "model",
    "data",
    "train",
    "loss",
    "token",
    "image",
    "cat",
    "dog",
    "gradient",
    "step",
    "batch",
    "learning",
    "rate",
    "weights",
    "layer",
    "attention",
    "epoch",
    "sample",
    "label",
    "class",
    "vision",
    "text",
    "corpus",
)


def _jsonl(rng: random.Random, lines: int) -> bytes:
    out = []
    for i in range(lines):
        text = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(5, 40)))
        out.append(json.dumps({"id": i, "text": text, "score": round(rng.random(), 4)}))
    return ("\n".join(out) + "\n").encode()


def _safetensors_header(total: int) -> tuple[bytes, int]:
    """(header incl. its 8-byte length, length of the tensor data) for a ~``total`` file."""
    n_tensors = 8
    data_len = max(64, total - 1024) // 2 * 2
    per = data_len // n_tensors // 2 * 2
    meta: dict[str, object] = {"__metadata__": {"format": "pt"}}
    start = 0
    for i in range(n_tensors):
        end = data_len if i == n_tensors - 1 else start + per
        count = (end - start) // 2
        meta[f"layers.{i}.weight"] = {
            "dtype": "F16",
            "shape": [count],
            "data_offsets": [start, end],
        }
        start = end
    header = json.dumps(meta, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)
    return struct.pack("<Q", len(header)) + header, data_len


# ---------------------------------------------------------------------------- writing


def _mtime(rng: random.Random, base_ns: int) -> int:
    t = base_ns + rng.randrange(0, 3_600) * 1_000_000_000 + rng.randrange(1, 999_999_999)
    if t % 1_000_000 == 0:
        t += 1
    return t


def _write(root: Path, rel: str, data: bytes, info: AssetInfo, mode: int = 0o644) -> None:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    os.chmod(p, mode)
    info.files[rel] = len(data)


def generate_assets(root: str | os.PathLike[str], spec: AssetSpec, *, seed: int) -> AssetInfo:
    """Write a deterministic asset folder under ``root`` (created if missing).

    Every file, symlink and folder gets a seeded mtime about a day in the past (so a
    stat cache trusts them at once; see :func:`wait_out_racy_window`).
    """
    rng = random.Random(seed)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    info = AssetInfo(root, [], "", 0, {}, [], [])

    n_val = int(spec.small_files * spec.val_share)
    for i in range(spec.small_files):
        split = "val" if i < n_val else "train"
        rel = f"data/{split}/class_{i % spec.classes:02d}/img_{i:05d}.jpg"
        _write(root, rel, _jpeg_like(rng, rng.randint(spec.small_min, spec.small_max)), info)
        info.small.append(rel)
    for i in range(spec.jsonl_files):
        _write(root, f"data/corpus/part-{i:04d}.jsonl", _jsonl(rng, spec.jsonl_lines), info)

    head, data_len = _safetensors_header(spec.large_bytes)
    info.large = "models/base/model.safetensors"
    p = root / info.large
    p.parent.mkdir(parents=True, exist_ok=True)
    with open(p, "wb") as f:
        f.write(head)
        for pos in range(0, data_len, _BLOCK):
            f.write(f16_bytes(rng, min(_BLOCK, data_len - pos)))
    info.files[info.large] = len(head) + data_len
    info.large_data_offset = len(head)

    config = {"hidden_size": 512, "layers": 8, "vocab": 32000, "seed": seed}
    _write(root, "models/base/config.json", json.dumps(config, indent=2).encode(), info)
    vocab = {f"tok{i}": i for i in range(500)}
    _write(root, "models/base/tokenizer.json", json.dumps({"vocab": vocab}).encode(), info)
    _write(root, "configs/train.yaml", b"lr: 3e-4\nbatch: 64\nepochs: 10\n", info)
    _write(root, "configs/eval.yaml", b"batch: 256\nmetrics: [acc, f1]\n", info)
    _write(root, "configs/nested/deep/er/params.toml", b"[opt]\nbeta1 = 0.9\n", info)
    _write(root, "README.md", b"# assets\n\nGenerated for tests.\n", info)
    _write(root, "scripts/run.sh", b'#!/bin/sh\nexec python train.py "$@"\n', info, 0o755)
    _write(root, "secrets/token.txt", b"not-a-real-token\n", info, 0o600)
    info.executables.append("scripts/run.sh")

    _write(root, "data/corpus/_SUCCESS", b"", info)  # an empty file
    _write(root, "data/labels/übersicht 2024.csv", b"class,count\ncat,3\n", info)
    links = (
        ("models/current", "base"),  # to a folder inside the tree
        ("configs/latest.yaml", "train.yaml"),  # to a file
        ("models/previous", "base-old"),  # dangling
    )
    for rel, target in links:
        os.symlink(target, root / rel)
        info.symlinks[rel] = target
    (root / "outputs/empty_run").mkdir(parents=True)
    info.empty_dirs.append("outputs/empty_run")

    base_ns = time.time_ns() - _DAY_NS
    _set_mtimes(root, rng, base_ns)
    return info


def _set_mtimes(root: Path, rng: random.Random, base_ns: int) -> None:
    """Seeded past mtimes for every entry; folders last, deepest first."""
    dirs: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not (Path(dirpath) == root and d == ".cas"))
        for name in sorted(filenames) + [d for d in dirnames if (Path(dirpath) / d).is_symlink()]:
            t = _mtime(rng, base_ns)
            os.utime(Path(dirpath) / name, ns=(t, t), follow_symlinks=False)
        dirs.extend(Path(dirpath) / d for d in dirnames if not (Path(dirpath) / d).is_symlink())
    for d in sorted(dirs, key=lambda p: len(p.parts), reverse=True):
        t = _mtime(rng, base_ns)
        os.utime(d, ns=(t, t))


# ---------------------------------------------------------------------------- changes


def mutate_assets(
    root: str | os.PathLike[str],
    info: AssetInfo,
    *,
    seed: int,
    add_share: float = 0.05,
    delete_share: float = 0.01,
    rewrite_share: float = 0.10,
    spec: AssetSpec | None = None,
) -> Mutation:
    """The "v2" edit: add 5 % new small files, delete 1 %, rewrite 10 % of the large file.

    The rewrite is one contiguous region inside the tensor data, overwritten in place
    (same file size). New and changed entries get past mtimes too. ``info`` is updated.
    """
    spec = spec or AssetSpec()
    rng = random.Random(seed)
    root = Path(root)
    base_ns = time.time_ns() - _DAY_NS // 2

    deleted: dict[str, int] = {}
    for rel in rng.sample(sorted(info.small), math.ceil(len(info.small) * delete_share)):
        deleted[rel] = info.files.pop(rel)
        info.small.remove(rel)
        (root / rel).unlink()

    added: dict[str, int] = {}
    start = len(info.small) + len(deleted)
    for i in range(math.ceil(start * add_share)):
        rel = f"data/train/class_{rng.randrange(spec.classes):02d}/new_{start + i:05d}.jpg"
        data = _jpeg_like(rng, rng.randint(spec.small_min, spec.small_max))
        _write(root, rel, data, info)
        info.small.append(rel)
        added[rel] = len(data)
        t = _mtime(rng, base_ns)
        os.utime(root / rel, ns=(t, t))

    size = info.files[info.large]
    length = int((size - info.large_data_offset) * rewrite_share)
    offset = rng.randrange(info.large_data_offset, size - length)
    with open(root / info.large, "r+b") as f:
        f.seek(offset)
        for pos in range(0, length, _BLOCK):
            f.write(f16_bytes(rng, min(_BLOCK, length - pos)))
    t = _mtime(rng, base_ns)
    os.utime(root / info.large, ns=(t, t))
    return Mutation(added, deleted, (info.large, offset, length))


def mutate_metadata(root: str | os.PathLike[str], info: AssetInfo) -> list[str]:
    """Changes that hold no new bytes; returns the paths touched.

    Re-points ``configs/latest.yaml``, makes ``scripts/run.sh`` 0o700, replaces the
    empty folder ``outputs/empty_run`` by ``outputs/empty_next`` and edits the config.
    """
    root = Path(root)
    os.unlink(root / "configs/latest.yaml")
    os.symlink("eval.yaml", root / "configs/latest.yaml")
    info.symlinks["configs/latest.yaml"] = "eval.yaml"
    os.chmod(root / "scripts/run.sh", 0o700)
    os.rmdir(root / "outputs/empty_run")
    (root / "outputs/empty_next").mkdir()
    info.empty_dirs = ["outputs/empty_next"]
    cfg = root / "models/base/config.json"
    data = cfg.read_bytes().replace(b'"layers": 8', b'"layers": 12')
    cfg.write_bytes(data)
    info.files["models/base/config.json"] = len(data)
    return [
        "configs/latest.yaml",
        "scripts/run.sh",
        "outputs/empty_run",
        "outputs/empty_next",
        "models/base/config.json",
    ]


def insert_bytes(path: str | os.PathLike[str], offset: int, data: bytes) -> None:
    """Insert ``data`` at ``offset`` of a file (the rest shifts right), streaming."""
    path = Path(path)
    tmp = path.with_name(path.name + ".insert-tmp")
    with open(path, "rb") as src, open(tmp, "wb") as dst:
        dst.write(src.read(offset))
        dst.write(data)
        while block := src.read(8 << 20):
            dst.write(block)
    st = os.stat(path)
    os.chmod(tmp, stat.S_IMODE(st.st_mode))
    os.replace(tmp, path)


def age_tree(root: str | os.PathLike[str], *, seed: int = 0) -> None:
    """Give every entry under ``root`` (except ``.cas``) a seeded mtime in the past."""
    _set_mtimes(Path(root), random.Random(seed), time.time_ns() - _DAY_NS)


def wait_out_racy_window(root: str | os.PathLike[str]) -> None:
    """Sleep past the stat cache's "racy clean" window (changed ctimes are 'now').

    50 ms on filesystems with fine timestamps, 1 s where they look whole-millisecond.
    """
    probe = Path(root) / ".racy-probe"
    probe.write_bytes(b"")
    st = os.lstat(probe)
    probe.unlink()
    coarse = st.st_mtime_ns % 1_000_000 == 0 and st.st_ctime_ns % 1_000_000 == 0
    time.sleep(1.05 if coarse else 0.08)


# ---------------------------------------------------------------------------- comparing


@dataclass(frozen=True)
class Node:
    """One entry of a folder as ``lstat`` sees it."""

    kind: str  # "file", "dir" or "symlink"
    mode: int
    size: int
    mtime_ns: int
    content: str  # BLAKE2b of a file's bytes, a symlink's target, "" for a folder
    ino: int = field(compare=False, default=0)


def _digest(path: Path) -> str:
    h = hashlib.blake2b(digest_size=32)
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def snapshot_tree(
    root: str | os.PathLike[str], *, ignore: tuple[str, ...] = (".cas",)
) -> dict[str, Node]:
    """path → :class:`Node` for every entry below ``root`` (not ``root`` itself).

    Walks with ``lstat`` (symlinks are never followed). Top-level names in ``ignore``
    are skipped with everything below them.
    """
    root = Path(root)
    out: dict[str, Node] = {}
    stack = [""]
    while stack:
        rel = stack.pop()
        for name in sorted(os.listdir(root / rel if rel else root)):
            if not rel and name in ignore:
                continue
            path = f"{rel}/{name}" if rel else name
            full = root / path
            st = os.lstat(full)
            mode = stat.S_IMODE(st.st_mode)
            if stat.S_ISLNK(st.st_mode):
                node = Node("symlink", mode, 0, st.st_mtime_ns, os.readlink(full), st.st_ino)
            elif stat.S_ISDIR(st.st_mode):
                node = Node("dir", mode, 0, st.st_mtime_ns, "", st.st_ino)
                stack.append(path)
            elif stat.S_ISREG(st.st_mode):
                node = Node("file", mode, st.st_size, st.st_mtime_ns, _digest(full), st.st_ino)
            else:
                node = Node(f"other:{stat.S_IFMT(st.st_mode)}", mode, 0, st.st_mtime_ns, "")
            out[path] = node
    return out


def compare_snapshots(
    a: dict[str, Node],
    b: dict[str, Node],
    *,
    mtimes: bool = True,
    dir_mtimes: bool = True,
    symlink_modes: bool = False,
) -> list[str]:
    """Human-readable differences between two snapshots (empty when equal).

    ``mtimes`` compares files' and symlinks' mtimes, ``dir_mtimes`` folders'. Symlink
    permission bits are meaningless on Linux and ignored unless ``symlink_modes``.
    """
    problems = []
    for path in sorted(a.keys() | b.keys()):
        x, y = a.get(path), b.get(path)
        if x is None or y is None:
            problems.append(f"{path}: only in {'second' if x is None else 'first'}")
            continue
        if x.kind != y.kind:
            problems.append(f"{path}: {x.kind} vs {y.kind}")
            continue
        if x.content != y.content or x.size != y.size:
            problems.append(f"{path}: content differs ({x.size} vs {y.size} bytes)")
        if x.mode != y.mode and (x.kind != "symlink" or symlink_modes):
            problems.append(f"{path}: mode {x.mode:o} vs {y.mode:o}")
        check_time = dir_mtimes if x.kind == "dir" else mtimes
        if check_time and x.mtime_ns != y.mtime_ns:
            problems.append(f"{path}: mtime {x.mtime_ns} vs {y.mtime_ns}")
    return problems


def assert_same_tree(
    a: str | os.PathLike[str] | dict[str, Node],
    b: str | os.PathLike[str] | dict[str, Node],
    **options: bool,
) -> None:
    """Assert two folders (or snapshots) are equal: bytes, kinds, modes, links, mtimes."""
    sa = a if isinstance(a, dict) else snapshot_tree(a)
    sb = b if isinstance(b, dict) else snapshot_tree(b)
    problems = compare_snapshots(sa, sb, **options)
    assert not problems, f"{len(problems)} differences:\n" + "\n".join(problems[:30])
