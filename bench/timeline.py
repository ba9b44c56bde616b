"""Where the wall time of a first commit and a first restore goes on a slow remote.

    python -m bench.timeline --preset medium [--remote drive|local]

Runs, on the benchmark's generated data and its Drive-like FUSE mount (30 ms per metadata
operation, 100 MB/s), ``cas commit`` of v1 into a fresh store and ``cas clone --ref v1``
into an empty folder with an empty cache (page cache dropped before each), with every
call into the folder backend timed (bench/traced_cas.py). It sums the runs up as phases —
before the first store call, before the first pack byte moves, the pack transfer itself
against the bandwidth floor, and what comes after the last pack byte, call by call — in
bench/profiles/summary-timeline-REMOTE-PRESET.md, which ``bench.run --write-docs``
includes in docs/performance.md. Where py-spy shows where CPU goes, this shows the round
trips that a profile of a process waiting on a mount cannot.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import generate
from bench.drive import DriveMount
from bench.measure import drop_caches, loadavg
from bench.tools import BENCH_PKG_PARENT, TOOLS, Place

OUT = Path(__file__).resolve().parent / "profiles"
LATENCY_MS = 30
BANDWIDTH_MBPS = 100

Call = tuple[float, float, str, str, str]  # start, duration, op, key, thread


def traced(argv: list[str], log: Path, env: dict[str, str]) -> tuple[float, float, list[Call]]:
    """Run a cas command traced; (start, end, calls) in wall-clock seconds."""
    env = {**env, "CAS_TIMELINE": str(log)}
    env["PYTHONPATH"] = f"{BENCH_PKG_PARENT}:{env.get('PYTHONPATH', '')}".rstrip(":")
    start = time.time()
    subprocess.run(
        [sys.executable, "-m", "bench.traced_cas", *argv[1:]], env=env, check=True,
        capture_output=True,
    )  # fmt: skip
    end = time.time()
    lines = log.read_text().splitlines()
    calls = [tuple(json.loads(line)) for line in lines[1:]]
    return start, end, calls  # type: ignore[return-value]


def _is_pack(call: Call) -> bool:
    return call[3].startswith("packs/")


def phases(start: float, end: float, calls: list[Call], transfer_ops: set[str]) -> dict[str, Any]:
    """Time from ``start`` to the first store call, to the first and past the last pack
    transfer, and the calls after it."""
    packs = [c for c in calls if _is_pack(c) and c[2] in transfer_ops]
    first = min(c[0] for c in calls)
    # A restore reads its folder listings' pack whole before it plans; the data moves
    # from its first range read on.
    ranges = [c for c in packs if c[2] == "read_range"]
    first_pack = min(c[0] for c in (ranges or packs))
    last_pack_end = max(c[0] + c[1] for c in packs)
    after = [c for c in calls if c[0] + c[1] > last_pack_end and not _is_pack(c)]
    index = [c for c in calls if c[3].startswith("index/")]
    return {
        "wall": end - start,
        "first_call": first - start,
        "first_pack": first_pack - start,
        "last_pack_end": last_pack_end - start,
        "tail": end - last_pack_end,
        "after": [(c[0] - start, c[1], c[2], c[3], c[4]) for c in after],
        "index": (
            (min(c[0] for c in index) - start, max(c[0] + c[1] for c in index) - start, len(index))
            if index
            else None
        ),
        "before_first_pack": [
            (c[0] - start, c[1], c[2], c[3], c[4]) for c in calls if c[0] < first_pack
        ],
    }


def _short(key: str) -> str:
    head, _, name = key.rpartition("/")
    return f"{head}/{name[:12]}…" if len(name) > 16 else key


def _call_rows(rows: list[tuple[float, float, str, str, str]]) -> list[str]:
    out = ["| start s | took s | call | key | thread |", "|---|---|---|---|---|"]
    for t, d, op, key, thread in rows:
        out.append(f"| {t:.3f} | {d:.3f} | {op} | `{_short(key)}` | {thread} |")
    return out


def section(title: str, ph: dict[str, Any], moved_mb: float, bandwidth: float | None) -> str:
    floor = moved_mb / bandwidth if bandwidth else None
    transfer = ph["last_pack_end"] - ph["first_pack"]
    lines = [
        f"### {title}: {ph['wall']:.2f} s",
        "",
        "| phase | seconds |",
        "|---|---|",
        f"| process start → first store call (interpreter, imports, worktree) | "
        f"{ph['first_call']:.2f} |",
        f"| first store call → first pack byte | {ph['first_pack'] - ph['first_call']:.2f} |",
        f"| pack transfer ({moved_mb:.0f} MB"
        + (f"; at the bandwidth limit {floor:.2f} s" if floor else "")
        + f") | {transfer:.2f} |",
        f"| after the last pack byte | {ph['tail']:.2f} |",
    ]
    if ph["index"]:
        s, e, n = ph["index"]
        lines += ["", f"Index: {n} calls on `index/` between {s:.2f} s and {e:.2f} s."]
    lines += ["", "Store calls before the first pack byte:", ""]
    lines += _call_rows(ph["before_first_pack"][:40])
    lines += ["", "Store calls after the last pack byte:", ""]
    lines += _call_rows(ph["after"])
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.timeline", description=__doc__)
    ap.add_argument("--preset", choices=sorted(generate.PRESETS), default="medium")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--remote", choices=["local", "drive"], default="drive")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/cas-bench"))
    args = ap.parse_args(argv)
    dataset = generate.ensure_dataset(args.workdir / "data", args.preset, args.seed)
    cas = TOOLS["cas"]
    load_start = loadavg()
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp_s:
        tmp = Path(tmp_s)
        mount = None
        store_root = tmp / "remote"
        if args.remote == "drive":
            mount = DriveMount(
                tmp / "backing", tmp / "mnt", args.workdir / "bin", LATENCY_MS, BANDWIDTH_MBPS
            )
            mount.__enter__()
            store_root = mount.mountpoint
        try:
            p = Place(
                store=store_root / "store",
                work=tmp / "work",
                restore=tmp / "restore",
                cache=tmp / "cache",
                fresh_cache=tmp / "fresh",
                scratch=tmp,
            )
            generate.copy_tree(dataset / "v1", p.work)
            env = cas.env(p)
            for step in cas.setup(p):
                subprocess.run(step, env=env, check=True, capture_output=True)
            drop_caches()
            commit = traced(cas.commit(p, "v1"), tmp / "commit.jsonl", env)
            drop_caches()
            restore = traced(cas.restore_v1(p), tmp / "restore.jsonl", env)
            pack_mb = sum(f.stat().st_size for f in (p.store / "packs").rglob("*") if f.is_file())
            pack_mb /= 1e6
        finally:
            if mount:
                mount.__exit__(None, None, None)
    bandwidth = BANDWIDTH_MBPS if args.remote == "drive" else None
    date = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    remote = (
        f"Drive-like remote, {LATENCY_MS} ms per metadata operation, {BANDWIDTH_MBPS} MB/s"
        if args.remote == "drive"
        else "local remote"
    )
    md = [
        f"## Where the time goes on the {remote.split(',')[0]}: a timeline, {args.preset}",
        "",
        f"Generated by `python -m bench.timeline --preset {args.preset} --remote "
        f"{args.remote}` on {date} ({remote}; {cas.version()}; load average at start "
        f"{load_start}). Every call into the folder backend is timed in the cas process "
        "(a call is several metadata operations of the mount: a lookup per path component "
        "not yet known, open, read, release…); times are from the process start.",
        "",
        section(
            "`cas commit` of v1",
            phases(*commit, transfer_ops={"write", "write_spool"}),
            pack_mb,
            bandwidth,
        ),
        "",
        section(
            "`cas clone --ref v1` (restore, empty cache)",
            phases(*restore, transfer_ops={"read", "read_range"}),
            pack_mb,
            bandwidth,
        ),
    ]
    OUT.mkdir(parents=True, exist_ok=True)
    target = OUT / f"summary-timeline-{args.remote}-{args.preset}.md"
    target.write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
