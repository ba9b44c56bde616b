"""Seeded generator of a realistic ML ``_assets`` folder and its next versions.

``v1`` is made from scratch; ``v2`` and ``v3`` are changes applied *in place* to a copy of
the previous version (``apply_v2``, ``apply_v3``), so the benchmark can turn any copy of v1
into v2 exactly as a user's preprocessing or training would. Everything is derived from
the seed, the preset and the path, so a run is reproducible byte for byte (with NumPy;
without it the fallback generators give different, equally deterministic bytes).

Layout of v1::

    images/<class>/<class>_<n>.jpg        incompressible, 20–300 KB (2–12 KB in files100k)
    models/base/model.safetensors         float16 weights (safetensors layout)
    models/base/{config,generation_config,tokenizer_config,special_tokens_map}.json
    models/base/tokenizer.json            BPE-like vocab + merges
    models/adapter/adapter_model.safetensors
    models/latest -> base                 a symlink
    data/corpus.jsonl                     compressible text (Zipf words)
    data/tabular.csv, data/metadata.csv   compressible tables
    scripts/prepare.sh                    mode 0755
    checkpoints/.keep                     empty file
    README.md

v2: +5% images, -1% images, a contiguous 10% region of the largest weight file rewritten
in place, one new checkpoint, +3% appended to the jsonl, config.json edited.
v3: v2 + resized copies of a quarter of the images (every 4th byte of the original) and a
tokenized corpus (``data/tokens.bin``, uint16 Zipf ids).

Command line: ``python -m bench.generate --preset small --out DIR`` writes DIR/v1, v2, v3.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import shutil
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

try:
    import numpy as np
except ImportError:  # pragma: no cover - the fallback is exercised where NumPy is absent
    np = None  # type: ignore[assignment]

GENERATOR_VERSION = 1


@dataclass(frozen=True)
class Preset:
    name: str
    classes: int
    images: int
    image_kb: tuple[int, int]  # log-uniform size range of one image
    model_mb: int  # the largest weight file
    adapter_mb: int
    corpus_mb: int  # corpus.jsonl
    tabular_mb: int  # tabular.csv


PRESETS = {
    "tiny": Preset("tiny", 4, 120, (20, 300), 12, 2, 4, 1),
    "small": Preset("small", 20, 2000, (20, 300), 180, 20, 60, 10),
    "medium": Preset("medium", 60, 12000, (20, 300), 1100, 100, 380, 60),
    "files100k": Preset("files100k", 200, 100_000, (2, 12), 40, 4, 16, 4),
}

MB = 1_000_000


# --- deterministic randomness ---------------------------------------------------------


def _seed_of(*parts: object) -> int:
    text = "\x00".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little")


class Rand:
    """Random bytes, floats and choices from one 64-bit seed, with or without NumPy."""

    def __init__(self, *parts: object) -> None:
        seed = _seed_of(*parts)
        self.py = random.Random(seed)
        self.np = np.random.default_rng(seed) if np is not None else None

    def bytes(self, n: int) -> bytes:
        if self.np is not None:
            return bytes(self.np.bytes(n))
        return self.py.randbytes(n)

    def halves(self, n: int, std: float = 0.02) -> bytes:
        """n float16 values, roughly N(0, std): a few bits of redundancy in the exponents."""
        if self.np is not None:
            out = bytearray()
            step = 4_000_000
            for start in range(0, n, step):
                k = min(step, n - start)
                vals = self.np.standard_normal(k, dtype=np.float32) * np.float32(std)
                out += vals.astype("<f2").tobytes()
            return bytes(out)
        return _halves_fallback(self.py, n, std)


def _halves_fallback(rng: random.Random, n: int, std: float) -> bytes:
    # The high byte of a float16 holds the sign, the 5 exponent bits and 2 mantissa bits.
    # Map uniform random bytes onto high bytes drawn from the distribution a normal
    # variable of this std gives, and keep the low byte (mantissa) uniform.
    samples = [struct.pack("<e", rng.gauss(0.0, std))[1] for _ in range(4096)]
    samples.sort()
    table = bytes(samples[(i * len(samples)) // 256] for i in range(256))
    shuffled = bytearray(table)
    rng.shuffle(shuffled)
    high = rng.randbytes(n).translate(bytes(shuffled))
    low = rng.randbytes(n)
    out = bytearray(2 * n)
    out[0::2] = low
    out[1::2] = high
    return bytes(out)


# --- file kinds -----------------------------------------------------------------------

JPEG_HEAD = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"


def image_bytes(seed: int, rel: str, size: int) -> bytes:
    return JPEG_HEAD + Rand(seed, "image", rel).bytes(max(0, size - len(JPEG_HEAD)))


def image_size(rng: random.Random, kb: tuple[int, int]) -> int:
    lo, hi = math.log(kb[0] * 1000), math.log(kb[1] * 1000)
    return int(math.exp(rng.uniform(lo, hi)))


def tensor_layout(total_bytes: int, d: int = 1024, ff: int = 2816) -> list[tuple[str, list[int]]]:
    """Names and shapes of a Llama-like model whose float16 data is about total_bytes."""
    tensors: list[tuple[str, list[int]]] = []
    vocab = max(256, min(32000, total_bytes // (2 * d) // 4))
    tensors.append(("model.embed_tokens.weight", [vocab, d]))
    used = vocab * d * 2
    layer = 0
    per_layer = (4 * d * d + 3 * d * ff + 2 * d) * 2
    while used + per_layer <= total_bytes - vocab * d * 2 or layer == 0:
        p = f"model.layers.{layer}."
        for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
            tensors.append((p + f"self_attn.{name}.weight", [d, d]))
        tensors.append((p + "mlp.gate_proj.weight", [ff, d]))
        tensors.append((p + "mlp.up_proj.weight", [ff, d]))
        tensors.append((p + "mlp.down_proj.weight", [d, ff]))
        tensors.append((p + "input_layernorm.weight", [d]))
        tensors.append((p + "post_attention_layernorm.weight", [d]))
        used += per_layer
        layer += 1
    tensors.append(("model.norm.weight", [d]))
    tensors.append(("lm_head.weight", [vocab, d]))
    return tensors


def write_safetensors(path: Path, seed: int, total_bytes: int, tag: str) -> None:
    """8-byte LE header length, JSON header (padded to 8), then float16 tensors."""
    layout = tensor_layout(total_bytes)
    header: dict[str, object] = {"__metadata__": {"format": "pt", "generator": tag}}
    offset = 0
    for name, shape in layout:
        n = math.prod(shape) * 2
        header[name] = {"dtype": "F16", "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for name, shape in layout:
            n = math.prod(shape)
            if name.endswith("norm.weight"):
                f.write(b"\x00\x3c" * n)  # float16 1.0: norms start at one
            else:
                f.write(Rand(seed, tag, name).halves(n))


# Words of a pseudo-language with a Zipf distribution: text that compresses like text.
def vocabulary(seed: int, n: int = 30000) -> list[str]:
    rng = random.Random(_seed_of(seed, "vocab"))
    letters = "etaoinshrdlcumwfgypbvkjxqz"
    weights = [12.7, 9.1, 8.2, 7.5, 7.0, 6.7, 6.3, 6.1, 6.0, 4.3, 4.0, 2.8, 2.8, 2.4, 2.4]
    weights += [2.2, 2.0, 2.0, 1.9, 1.5, 1.0, 0.8, 0.2, 0.2, 0.1, 0.1]
    words: set[str] = set()
    while len(words) < n:
        k = max(1, min(14, int(rng.gauss(5.5, 2.5))))
        words.add("".join(rng.choices(letters, weights, k=k)))
    return sorted(words, key=lambda w: (len(w), w))


class TextSource:
    def __init__(self, seed: int) -> None:
        self.vocab = vocabulary(seed)
        ranks = [1.0 / (r + 2.7) ** 1.1 for r in range(len(self.vocab))]
        total = sum(ranks)
        acc = 0.0
        self.cum: list[float] = []
        for w in ranks:
            acc += w / total
            self.cum.append(acc)
        self.cum[-1] = 1.0
        self.np_vocab = np.array(self.vocab, dtype=object) if np is not None else None
        self.np_cum = np.array(self.cum) if np is not None else None

    def word_ids(self, rand: Rand, n: int) -> list[int]:
        if rand.np is not None:
            u = rand.np.random(n)
            return np.searchsorted(self.np_cum, u).tolist()  # type: ignore[no-any-return]
        return [min(len(self.cum) - 1, i) for i in _bisect_many(self.cum, rand.py, n)]

    def words(self, rand: Rand, n: int) -> list[str]:
        return [self.vocab[i] for i in self.word_ids(rand, n)]


def _bisect_many(cum: list[float], rng: random.Random, n: int) -> list[int]:
    import bisect

    return [bisect.bisect_left(cum, rng.random()) for _ in range(n)]


SOURCES = ["web", "books", "wiki", "code", "forum", "news"]


def jsonl_records(seed: int, tag: str, start_id: int, nbytes: int, text: TextSource) -> bytes:
    """Records of the corpus until about nbytes, ids from start_id."""
    out: list[bytes] = []
    size = 0
    block = 0
    rid = start_id
    while size < nbytes:
        rand = Rand(seed, "corpus", tag, block)
        lengths = [rand.py.randint(20, 220) for _ in range(400)]
        words = text.words(rand, sum(lengths))
        pos = 0
        for k in lengths:
            rec = {
                "id": rid,
                "source": SOURCES[rid % len(SOURCES)],
                "lang": "xx",
                "text": " ".join(words[pos : pos + k]).capitalize() + ".",
            }
            pos += k
            line = json.dumps(rec, separators=(", ", ": ")).encode() + b"\n"
            out.append(line)
            size += len(line)
            rid += 1
            if size >= nbytes:
                break
        block += 1
    return b"".join(out)


def tabular_csv(seed: int, nbytes: int) -> bytes:
    rand = Rand(seed, "tabular")
    rng = rand.py
    lines = [b"row,user_id,feature_a,feature_b,feature_c,label,split\n"]
    size = len(lines[0])
    row = 0
    while size < nbytes:
        line = (
            f"{row},{rng.randint(1, 50000)},{rng.gauss(0, 1):.4f},{rng.random():.4f},"
            f"{rng.randint(0, 1000)},{rng.choice('ABCDE')},"
            f"{'train' if rng.random() < 0.9 else 'val'}\n"
        ).encode()
        lines.append(line)
        size += len(line)
        row += 1
    return b"".join(lines)


def tokenizer_json(seed: int, text: TextSource) -> bytes:
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, "<pad>": 3}
    for w in text.vocab:
        vocab.setdefault(w, len(vocab))
    rng = random.Random(_seed_of(seed, "merges"))
    merges = [
        f"{rng.choice(text.vocab[:500])} {rng.choice(text.vocab[:500])}" for _ in range(20000)
    ]
    doc = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {"id": i, "content": t, "special": True} for t, i in list(vocab.items())[:4]
        ],
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {"type": "Whitespace"},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": "<unk>",
            "vocab": vocab,
            "merges": merges,
        },
    }
    return json.dumps(doc, indent=2, ensure_ascii=False).encode()


def model_config(edited: bool = False) -> bytes:
    cfg: dict[str, object] = {
        "architectures": ["LlamaForCausalLM"],
        "hidden_size": 1024,
        "intermediate_size": 2816,
        "num_attention_heads": 16,
        "num_hidden_layers": 8,
        "rms_norm_eps": 1e-06,
        "torch_dtype": "float16",
        "vocab_size": 32000,
        "learning_rate": 0.0003,
    }
    if edited:
        cfg["learning_rate"] = 0.0001
        cfg["fine_tuned_from"] = "base"
    return json.dumps(cfg, indent=2).encode() + b"\n"


# --- versions -------------------------------------------------------------------------


def _write(path: Path, data: bytes, mode: int | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if mode is not None:
        os.chmod(path, mode)


def class_names(p: Preset) -> list[str]:
    return [f"class_{i:03d}" for i in range(p.classes)]


def make_v1(root: Path, preset: Preset, seed: int) -> None:
    rng = random.Random(_seed_of(seed, "v1-images"))
    classes = class_names(preset)
    meta = [b"path,label,width,height,split\n"]
    for i in range(preset.images):
        cls = classes[i % len(classes)]
        rel = f"images/{cls}/{cls}_{i:06d}.jpg"
        _write(root / rel, image_bytes(seed, rel, image_size(rng, preset.image_kb)))
        w, h = rng.choice([(224, 224), (256, 256), (320, 240), (512, 384), (640, 480)])
        split = "train" if rng.random() < 0.9 else "val"
        meta.append(f"{rel},{cls},{w},{h},{split}\n".encode())
    _write(root / "data/metadata.csv", b"".join(meta))
    text = TextSource(seed)
    _write(root / "data/corpus.jsonl", jsonl_records(seed, "v1", 0, preset.corpus_mb * MB, text))
    _write(root / "data/tabular.csv", tabular_csv(seed, preset.tabular_mb * MB))
    base = root / "models/base"
    write_safetensors(base / "model.safetensors", seed, preset.model_mb * MB, "base")
    adapter = root / "models/adapter/adapter_model.safetensors"
    write_safetensors(adapter, seed, preset.adapter_mb * MB, "adapter")
    _write(base / "config.json", model_config())
    _write(base / "tokenizer.json", tokenizer_json(seed, text))
    tok_cfg = {
        "model_max_length": 2048,
        "bos_token": "<s>",
        "eos_token": "</s>",
        "pad_token": "<pad>",
    }
    _write(base / "tokenizer_config.json", json.dumps(tok_cfg, indent=2).encode())
    special = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
    _write(base / "special_tokens_map.json", json.dumps(special, indent=2).encode())
    gen = {"do_sample": True, "temperature": 0.7, "top_p": 0.9, "max_new_tokens": 256}
    _write(base / "generation_config.json", json.dumps(gen, indent=2).encode())
    os.symlink("base", root / "models/latest")
    _write(root / "scripts/prepare.sh", b"#!/bin/sh\nset -e\necho preparing\n", 0o755)
    _write(root / "checkpoints/.keep", b"")
    _write(root / "README.md", f"# assets\n\npreset {preset.name}, seed {seed}\n".encode())


def _images(root: Path) -> list[str]:
    out = []
    for dirpath, _dirs, files in os.walk(root / "images"):
        for name in files:
            out.append(os.path.relpath(os.path.join(dirpath, name), root))
    return sorted(out)


def _largest_weight(root: Path) -> Path:
    weights = sorted(root.rglob("*.safetensors"), key=lambda p: (-p.stat().st_size, str(p)))
    return weights[0]


def apply_v2(root: Path, preset: Preset, seed: int) -> None:
    """Turn a copy of v1 into v2 in place."""
    rng = random.Random(_seed_of(seed, "v2"))
    images = _images(root)
    classes = class_names(preset)
    # +5% images (new names, in existing classes)
    for k in range(len(images) * 5 // 100):
        cls = classes[k % len(classes)]
        rel = f"images/{cls}/{cls}_v2_{k:06d}.jpg"
        _write(root / rel, image_bytes(seed, rel, image_size(rng, preset.image_kb)))
    # -1% images
    for rel in rng.sample(images, len(images) // 100):
        os.unlink(root / rel)
    # a contiguous 10% region of the largest weight file rewritten in place
    weight = _largest_weight(root)
    size = weight.stat().st_size
    start = (size * 4 // 10) & ~1
    length = (size // 10) & ~1
    with open(weight, "r+b") as f:
        f.seek(start)
        step = 8 * MB
        for off in range(0, length, step):
            k = min(step, length - off)
            f.write(Rand(seed, "v2-region", off).halves(k // 2))
    # one new checkpoint file
    ckpt = root / "checkpoints/step_1000/model.safetensors"
    write_safetensors(ckpt, seed, max(1, preset.model_mb // 4) * MB, "step_1000")
    # +3% appended to the jsonl
    corpus = root / "data/corpus.jsonl"
    n_lines = corpus.read_bytes().count(b"\n")
    extra = jsonl_records(seed, "v2", n_lines, corpus.stat().st_size * 3 // 100, TextSource(seed))
    with open(corpus, "ab") as f:
        f.write(extra)
    # one config edited
    _write(root / "models/base/config.json", model_config(edited=True))


def apply_v3(root: Path, preset: Preset, seed: int) -> None:
    """Turn a copy of v2 into v3 in place: derived files only."""
    for rel in _images(root)[::4]:
        data = (root / rel).read_bytes()
        _write(root / rel.replace("images/", "images_resized/", 1), data[::4])
    corpus_size = (root / "data/corpus.jsonl").stat().st_size
    text = TextSource(seed)
    n_tokens = corpus_size // 4
    out = bytearray()
    step = 4_000_000
    for start in range(0, n_tokens, step):
        ids = text.word_ids(Rand(seed, "tokens", start), min(step, n_tokens - start))
        if np is not None:
            out += np.asarray(ids, dtype="<u2").tobytes()
        else:
            out += struct.pack(f"<{len(ids)}H", *ids)
    _write(root / "data/tokens.bin", bytes(out))


# --- the data set on disk ---------------------------------------------------------------


def dataset_dir(base: Path, preset: str, seed: int) -> Path:
    flavour = "np" if np is not None else "py"
    return base / f"{preset}-s{seed}-g{GENERATOR_VERSION}{flavour}"


def copy_tree(src: Path, dst: Path) -> None:
    """cp -a: modes, symlinks and mtimes kept."""
    if dst.exists():
        shutil.rmtree(dst)
    subprocess.run(["cp", "-a", str(src), str(dst)], check=True)


def ensure_dataset(base: Path, preset_name: str, seed: int, log=print) -> Path:
    """Generate DIR/v1, v2, v3 once; later calls reuse them (a stamp marks completion)."""
    preset = PRESETS[preset_name]
    out = dataset_dir(base, preset_name, seed)
    if (out / "complete").exists():
        return out
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    log(f"generating {preset_name} (seed {seed}) in {out} ...")
    make_v1(out / "v1", preset, seed)
    copy_tree(out / "v1", out / "v2")
    apply_v2(out / "v2", preset, seed)
    copy_tree(out / "v2", out / "v3")
    apply_v3(out / "v3", preset, seed)
    (out / "complete").write_text("ok\n")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--preset", choices=sorted(PRESETS), default="small")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("/tmp/cas-bench/data"))
    args = ap.parse_args(argv)
    out = ensure_dataset(args.out, args.preset, args.seed)
    for v in ("v1", "v2", "v3"):
        total = files = 0
        for dirpath, _d, names in os.walk(out / v):
            for n in names:
                st = os.lstat(os.path.join(dirpath, n))
                total += st.st_size
                files += 1
        print(f"{out / v}: {files} files, {total / MB:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
