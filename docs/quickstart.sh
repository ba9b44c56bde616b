#!/usr/bin/env bash
# cas quickstart: sample assets → commit v1 → change → commit v2 → clone v1 → cas du.
# Usage: bash docs/quickstart.sh [WORKDIR]   (default: a new temporary folder)
set -euo pipefail
work=${1:-$(mktemp -d /tmp/cas-quickstart.XXXXXX)}
mkdir -p "$work"
cd "$work"
export CAS_CACHE_DIR="$work/cache"   # keep the demo's local cache inside WORKDIR
echo "== working in $work"

echo "== 1. sample assets: 600 images in 3 classes, 64 MB weights, a jsonl corpus, configs"
python - <<'PY'
import json, os, random, struct
rng = random.Random(7)
root = "_assets"
for cls in ("cat", "dog", "bird"):
    os.makedirs(f"{root}/images/{cls}", exist_ok=True)
    for i in range(200):
        with open(f"{root}/images/{cls}/{i:04d}.jpg", "wb") as f:
            f.write(rng.randbytes(rng.randint(20_000, 60_000)))
os.makedirs(f"{root}/models", exist_ok=True)
header = json.dumps({"w": {"dtype": "F16", "shape": [32 * 1024 * 1024], "data_offsets": [0, 64 << 20]}}).encode()
with open(f"{root}/models/base.safetensors", "wb") as f:
    f.write(struct.pack("<Q", len(header)) + header)
    for _ in range(64):
        f.write(rng.randbytes(1 << 20))
with open(f"{root}/corpus.jsonl", "w") as f:
    for i in range(50_000):
        f.write(json.dumps({"id": i, "text": f"caption {i} of a {rng.choice(['cat','dog','bird'])}"}) + "\n")
os.makedirs(f"{root}/tokenizer", exist_ok=True)
json.dump({"vocab_size": 32000, "model": "bpe"}, open(f"{root}/tokenizer/config.json", "w"))
json.dump({"lr": 3e-4, "epochs": 10}, open(f"{root}/train.json", "w"))
os.makedirs(f"{root}/outputs", exist_ok=True)  # an empty folder is kept too
PY

echo "== 2. cas init + commit v1"
cas init store _assets
cas -C _assets commit -m "raw data + base weights" --tag v1

echo "== 3. change: new images, one deleted, 10% of the weights rewritten, config edited"
python - <<'PY'
import json, os, random
rng = random.Random(8)
for i in range(200, 230):
    with open(f"_assets/images/cat/{i:04d}.jpg", "wb") as f:
        f.write(rng.randbytes(40_000))
os.remove("_assets/images/dog/0000.jpg")
with open("_assets/models/base.safetensors", "r+b") as f:
    f.seek(20 << 20)
    f.write(rng.randbytes(6 << 20))
json.dump({"lr": 1e-4, "epochs": 20}, open("_assets/train.json", "w"))
PY
cas -C _assets status
cas -C _assets commit -m "more cats, fine-tuned weights" --tag v2

echo "== 4. a fresh folder with v1 (as a new Colab runtime would)"
rm -rf "$CAS_CACHE_DIR"
cas clone store restored --ref v1
cas -C restored log --oneline
cas -C restored diff v1 v2 --stat

echo "== 5. what the store holds"
cas -C _assets du
echo "== done: store in $work/store, worktrees $work/_assets and $work/restored"
