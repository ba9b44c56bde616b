"""Tables, ratios and target verdicts from one run's results, and docs/performance.md."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

OPS = [
    ("commit_v1", "initial commit of v1"),
    ("commit_v2", "commit of v2"),
    ("commit_v2_again", "commit of v2 unchanged"),
    ("restore_v1", "restore of v1, empty cache"),
    ("switch_v2", "switch v1 → v2 in place"),
]
OP_LABEL = dict(OPS)

# metric key, column title, format, smaller is better (all are)
METRICS = [
    ("wall", "wall s", "{:.2f}"),
    ("cpu", "CPU s", "{:.2f}"),
    ("rss_mb", "peak RSS MB", "{:.0f}"),
    ("store_bytes", "stored MB", "{:.1f}"),
    ("store_files", "files", "{:.0f}"),
]

MB = 1_000_000
RSS_LIMIT_MB = 200.0
PRESET_ORDER = ["tiny", "small", "medium", "files100k"]


def _fmt_metric(key: str, value: float | None) -> str:
    if value is None:
        return "–"
    if key == "store_bytes":
        return f"{value / MB:.1f}"
    fmt = {k: f for k, _t, f in METRICS}[key]
    return fmt.format(value)


def rows_by(res: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["tool"], r["op"]): r for r in res["rows"]}


def peers(res: dict[str, Any]) -> list[str]:
    return [t for t in res["tools"] if t != "cas"]


def best_peer(res: dict[str, Any], op: str, key: str) -> tuple[str | None, float | None]:
    """The peer with the smallest figure for op among the peers whose op succeeded."""
    rows = rows_by(res)
    best: tuple[str | None, float | None] = (None, None)
    for tool in peers(res):
        r = rows.get((tool, op))
        if not r or not r["ok"] or r.get(key) is None:
            continue
        if best[1] is None or r[key] < best[1]:
            best = (tool, r[key])
    return best


def ratio(value: float | None, ref: float | None) -> str:
    if value is None or ref is None:
        return "–"
    if ref <= 0:
        return "–" if value > 0 else "1.00"
    return f"{value / ref:.2f}"


def drive_bound(res: dict[str, Any], tool: str) -> float | None:
    """wall of restore_v1 ÷ (bytes needed ÷ bandwidth); bytes needed = the store after v1."""
    drive = res.get("drive")
    rows = rows_by(res)
    r, c = rows.get((tool, "restore_v1")), rows.get((tool, "commit_v1"))
    if not drive or not r or not c or not r["ok"] or not c.get("store_bytes"):
        return None
    floor = c["store_bytes"] / (drive["bandwidth_mbps"] * MB)
    return float(r["wall"]) / floor if floor > 0 else None


def remote_kind(res: dict[str, Any]) -> str:
    """local, drive or s3 (results written before the S3 remote have no "s3" key)."""
    if res.get("drive"):
        return "drive"
    if res.get("s3"):
        return "s3"
    return "local"


S3_KINDS = [("get", "GET"), ("put", "PUT"), ("list", "LIST"), ("head", "HEAD"),
            ("post", "POST"), ("delete", "DELETE"), ("other", "other")]  # fmt: skip


def s3_requests(rm: dict[str, Any]) -> str:
    """Requests by kind, the kinds that occurred: '812 GET, 40 PUT, 2 LIST'."""
    parts = [f"{rm.get(k, 0):.0f} {label}" for k, label in S3_KINDS if rm.get(k, 0)]
    return ", ".join(parts) or "0"


def table(res: dict[str, Any]) -> str:
    rows = rows_by(res)
    kind = remote_kind(res)
    is_drive = kind == "drive"
    head = ["operation", "tool"]
    for _k, title, _f in METRICS:
        head += [title, "×best"]
    if is_drive:
        head += ["remote MB read", "remote MB written", "remote ops", "FUSE CPU s"]
    if kind == "s3":
        head += ["S3 MB read", "S3 MB written", "S3 requests", "by kind", "server CPU s"]
    head += ["others' cores", "result"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for op, label in OPS:
        bests = {k: best_peer(res, op, k)[1] for k, _t, _f in METRICS}
        for tool in res["tools"]:
            r = rows.get((tool, op))
            if r is None:
                continue
            cells = [label, f"**{tool}**" if tool == "cas" else tool]
            for k, _t, _f in METRICS:
                v = r.get(k) if r["ok"] else None
                cells += [_fmt_metric(k, r.get(k)), ratio(v, bests[k])]
            if is_drive:
                rm = r.get("remote") or {}
                cells += [
                    f"{rm.get('bytes_read', 0) / MB:.1f}",
                    f"{rm.get('bytes_written', 0) / MB:.1f}",
                    f"{rm.get('meta_ops', 0):.0f}",
                    f"{rm.get('cpu_s', 0):.2f}",
                ]
            if kind == "s3":
                rm = r.get("remote") or {}
                cells += [
                    f"{rm.get('bytes_out', 0) / MB:.1f}",
                    f"{rm.get('bytes_in', 0) / MB:.1f}",
                    f"{rm.get('requests', 0):.0f}",
                    s3_requests(rm),
                    f"{rm.get('cpu_s', 0):.2f}",
                ]
            cells.append(f"{r['others_cores']:.2f}" if "others_cores" in r else "–")
            result = r["verdict"]
            if is_drive and op == "restore_v1":
                b = drive_bound(res, tool)
                if b is not None:
                    result += f"; {b:.2f}× the bandwidth floor"
            cells.append(result)
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def targets(res: dict[str, Any]) -> list[dict[str, str]]:
    """Issue 4's targets, each judged on this run's figures."""
    rows = rows_by(res)
    out: list[dict[str, str]] = []

    def cas(op: str) -> dict[str, Any] | None:
        r = rows.get(("cas", op))
        return r if r and r["ok"] else None

    def vs(op: str, key: str, ref_tool: str | None, limit: float, what: str) -> None:
        c = cas(op)
        if ref_tool == "borg" and "borg" not in res["tools"] and "restic" in res["tools"]:
            # borg has no S3 backend: restic, the other deduplicating backup tool, stands in
            ref_tool = "restic"
            ref_desc = "restic (borg has no S3 backend)"
        else:
            ref_desc = ref_tool or ""
        if ref_tool is None:
            ref_name, ref_val = best_peer(res, op, key)
            ref_desc = f"fastest peer ({ref_name})" if ref_name else "fastest peer"
        else:
            r = rows.get((ref_tool, op))
            ref_name, ref_val = ref_tool, (r[key] if r and r["ok"] else None)
        if c is None:
            verdict, got = "MISS (cas failed)", "–"
        elif ref_val is None:
            verdict, got = f"n/a ({ref_desc} not run)", _fmt_metric(key, c[key])
        else:
            x = c[key] / ref_val if ref_val > 0 else float("inf")
            verdict = "PASS" if x <= limit else "MISS"
            got = f"{_fmt_metric(key, c[key])} vs {_fmt_metric(key, ref_val)} = {x:.2f}×"
        out.append(
            {"target": what, "limit": f"≤ {limit:g}× {ref_desc}", "cas": got, "verdict": verdict}
        )

    vs("commit_v1", "wall", None, 1.0, "initial commit of v1")
    vs("commit_v2", "wall", "borg", 0.8, "commit of v2")
    vs("commit_v2_again", "wall", "borg", 0.8, "commit of v2 unchanged")
    if res["preset"] == "files100k":
        c = cas("commit_v2_again")
        out.append(
            {
                "target": "commit of unchanged v2, 100k files",
                "limit": "< 2 s",
                "cas": f"{c['wall']:.2f} s" if c else "–",
                "verdict": ("PASS" if c["wall"] < 2.0 else "MISS") if c else "MISS (cas failed)",
            }
        )
    vs("restore_v1", "wall", "tarzstd", 1.0, "restore of v1, empty cache")
    vs("switch_v2", "wall", None, 0.5, "switch v1 → v2 in place")
    vs("commit_v2", "store_bytes", "borg", 1.0, "bytes stored after v2")
    cas_rows = [r for r in res["rows"] if r["tool"] == "cas"]
    if cas_rows:
        peak = max(cas_rows, key=lambda r: r["rss_mb"])
        out.append(
            {
                "target": "peak RSS, any operation",
                "limit": f"≤ {RSS_LIMIT_MB:.0f} MB",
                "cas": f"{peak['rss_mb']:.0f} MB ({peak['op']})",
                "verdict": "PASS" if peak["rss_mb"] <= RSS_LIMIT_MB else "MISS",
            }
        )
    if res.get("drive"):
        b = drive_bound(res, "cas")
        out.append(
            {
                "target": "Drive-like remote, restore",
                "limit": "≤ 1.5× (bytes needed ÷ bandwidth)",
                "cas": f"{b:.2f}×" if b is not None else "–",
                "verdict": ("PASS" if b <= 1.5 else "MISS") if b is not None else "MISS",
            }
        )
    return out


def targets_table(res: dict[str, Any]) -> str:
    lines = ["| target | limit | cas | verdict |", "|---|---|---|---|"]
    for t in targets(res):
        lines.append(f"| {t['target']} | {t['limit']} | {t['cas']} | **{t['verdict']}** |")
    return "\n".join(lines)


def header(res: dict[str, Any]) -> str:
    m = res["machine"]
    ds = res["dataset"]
    lines = [
        f"- command: `{res['command']}`",
        f"- date: {res['date']}; preset **{res['preset']}**, seed {res['seed']}"
        + (
            f"; {res['rounds']} rounds, each figure the round with the median wall time"
            if res.get("rounds", 1) > 1
            else "; one round"
        ),
        f"- machine: {m['cpu']}, {m['cores']} cores, {m['ram']} RAM, Linux {m['kernel']}, "
        f"{m['os']}, Python {m['python']}, local disk {m['filesystem']}",
        f"- load average (1/5/15 min) at start {res['load_start']}, at end {res['load_end']}; "
        f"highest 1-min load seen before an operation: {res['load_max']:.2f}",
        "- data: "
        + "; ".join(
            f"{v}: {d['files']} files, {d['bytes'] / MB:.1f} MB" for v, d in sorted(ds.items())
        ),
        "- tools: " + "; ".join(f"{t}: {res['versions'][t]}" for t in res["tools"]),
    ]
    if res.get("drive"):
        d = res["drive"]
        lines.append(
            f"- remote: Drive-like FUSE passthrough (bench/drivefs.c), {d['latency_ms']} ms per "
            f"metadata operation, {d['bandwidth_mbps']} MB/s each way; daemon CPU over the run "
            f"{d.get('daemon_cpu', 0):.1f} s (not included in the tools' CPU)"
        )
    elif res.get("s3"):
        d = res["s3"]
        lines.append(
            f"- remote: S3 protocol on loopback, {d['server']} in its own process (bench/"
            f"s3server.py), one bucket, a prefix per tool; server CPU over the run "
            f"{d.get('server_cpu', 0):.1f} s (not included in the tools' CPU)"
        )
    else:
        lines.append("- remote: a folder on the local disk")
    for note in res.get("notes", []):
        lines.append(f"- note: {note}")
    disturbed = [r for r in res["rows"] if r.get("others_cores", 0) > 0.5]
    if disturbed:
        lines.append(
            "- note: other processes held more than half a core during "
            + ", ".join(f"{r['tool']} {r['op']} ({r['others_cores']:.2f})" for r in disturbed)
            + "; those figures are pessimistic"
        )
    return "\n".join(lines)


def render_run(res: dict[str, Any], level: str = "##") -> str:
    remote = {
        "drive": "Drive-like remote",
        "s3": "S3 remote (moto on loopback)",
        "local": "local remote",
    }[remote_kind(res)]
    title = f"{level} {res['preset']} preset, {remote}"
    if res.get("rounds", 1) > 1:
        title += f", median of {res['rounds']} rounds"
    if res["tools"] != ["cas", "targz", "tarzstd", "restic", "borg"]:
        title += f" ({', '.join(res['tools'])})"
    return "\n\n".join(
        [
            title,
            header(res),
            table(res),
            f"Targets of issue 4 (defined on the medium preset; judged here on {res['preset']}):",
            targets_table(res),
        ]
    )


DOC_INTRO = """\
# Performance

<!-- Generated by `python -m bench.run ... --write-docs` (bench/run.py). Do not edit by
hand: rerun the benchmark. -->

This page is written by the benchmark command; every figure on it comes from a run of
`bench/run.py`, which keeps the raw results in `bench/results/*.json` and rebuilds this page
from all of them.

## How to run it

```bash
pip install -e '.[test]'
apt-get install -y zstd restic borgbackup fuse3 libfuse3-dev pkg-config   # peers, FUSE
python -m bench.run --preset small --remote both --write-docs
python -m bench.run --preset small --remote s3 --write-docs     # moto[server], boto3: test extra
python -m bench.run --preset medium --remote local --write-docs
python -m bench.run --preset files100k --remote local --write-docs
python -m bench.profile --preset small          # py-spy hot spots of one commit, one restore
python -m bench.timeline --preset medium        # store calls of a commit, a restore on Drive
```

Options: `--tools cas,targz,tarzstd,restic,borg` (those not installed are skipped and
said so), `--remote local|drive|s3|both|all` (`both` is local + drive, `all` adds s3),
`--latency-ms 30 --bandwidth-mbps 100` (the Drive-like remote), `--seed`, `--workdir`
(default `/tmp/cas-bench`; the generated data is kept there and reused),
`--drop-caches restore|all|none`, `--rounds N` (every tool's sequence N times,
interleaved; each figure is then the round with the median wall time and the highest peak
RSS).

## What it does

`bench/generate.py` builds, from a seed, an `_assets` folder (v1): class folders of
incompressible 20–300 KB images, safetensors-like float16 weights, a compressible jsonl and
csv corpus, config and tokenizer JSON, a symlink and an executable script; v2 adds 5%
images, deletes 1%, rewrites a contiguous 10% of the largest weight file in place, adds a
checkpoint, appends 3% to the jsonl and edits a config (v3 adds derived files; the
benchmark does not use it yet). Presets: `small` ≈ 0.5 GB, `medium` ≈ 3 GB, `files100k`
= 100 000 images of 2–12 KB.

For each tool, in one run on the same data, each operation is one child process:

1. initial commit of v1 (a fresh worktree copy of v1; the tool's normal cache);
2. commit of v2 (the same worktree turned into v2 in place, untimed);
3. commit of v2 again, unchanged;
4. restore of v1 into an empty folder with an empty local cache, the page cache dropped
   first (`sync; echo 3 > /proc/sys/vm/drop_caches`);
5. switch of that v1 folder to v2 in place (page cache dropped first).

Tools: **cas** (its CLI; `clone --ref v1` with a fresh `--cache-dir`, then `checkout v2`);
**tar.gz (blog)**, the workflow cas replaces (Python `tarfile`, gzip level 6, one archive
per version written into the store folder; restore copies the archive back to local disk
and extracts it; switch deletes the folder and restores v2); **tar | zstd -T0** (level 3,
restore streams `zstd -dc | tar -x` from the store; switch deletes and restores);
**restic** (0.14: restore neither skips nor deletes, so switch empties the folder first)
and **borg** (`--encryption=none`, lz4; switch empties the folder and extracts).
On the S3 remote, cas uses `s3://bucket/cas?endpoint=…&region=us-east-1` as its store and
restic `-r s3:http://127.0.0.1:PORT/bucket/restic`; the two archive baselines upload their
archive as one object with `bench/s3.py` — boto3's managed multipart upload from the pipe
(`upload_fileobj`, 8 MiB parts, up to 10 in flight: what `aws s3 cp -` does) — and read it
back with one streamed GET (moto answers each ranged GET by reading the whole object, so a
parallel ranged download would measure moto): `tar | zstd -T0 | put`,
`get | zstd -dc | tar -x`; the tar.gz workflow streams `tarfile` (gzip 6) into the upload
and, to restore, downloads the archive to local disk and extracts it. borg has no S3
backend and is not run there.

Each restore and switch is checked file by file against the source version (BLAKE3 of
every file, file types, symlink targets, and for cas the file modes too); a wrong result is
reported as FAILED and not counted as a time. Wall time is measured around the child;
CPU time (user + sys) and peak RSS come from `wait4` of the child, which includes every
process it waited for (both sides of a pipeline). Stored MB and files are a walk of the
tool's store folder after the operation (on S3, a listing of the tool's prefix: the sum of
the object sizes and the object count). `×best` is the ratio to the best peer — the
non-cas tool with the smallest figure for that operation in the same run. "others' cores"
is the CPU that every other process on the machine used during the operation (from
`/proc/stat`, less the tool's own and the FUSE daemon's or S3 server's), divided by its
wall time: on this shared machine, a figure near 1 means another job held a whole core
meanwhile.

The Drive-like remote is `bench/drivefs.c`, a libfuse3 passthrough compiled on first use:
every metadata operation (lookup/stat, open, create, opendir, mkdir, unlink, rename, link,
fsync, …) sleeps the latency in its FUSE worker thread (so parallel requests overlap, as on
Drive), reads and writes go through two token buckets capped at the bandwidth, and the
kernel caches attributes for 1 s. Its counters give the remote MB read and written and the
metadata operations of each step. For restores on it, the figure "× the bandwidth floor"
is wall time ÷ (bytes the tool stored for v1 ÷ bandwidth).

The S3 remote is a real S3-protocol server on loopback: moto's S3 app
(`moto[server]`, werkzeug, a thread per connection) in its own process
(`bench/s3server.py`) on 127.0.0.1 and a free port, with one fresh bucket per run and a
prefix per tool. The tools get pinned throwaway credentials (`AWS_ACCESS_KEY_ID=testing`,
`AWS_CONFIG_FILE=/dev/null`, …) in their environment only. The server counts every request
by kind (GET of an object, PUT — multipart parts included —, LIST, HEAD, POST — multipart
start and completion —, DELETE) with the bytes each way; "server CPU s" is its user +
system CPU over the step (from `/proc/PID/stat`), which the tool's own CPU does not
include (moto reads the whole object for every ranged GET, so a ranged read costs it in
proportion to the object, not the range). There is no network in between: no latency, no
bandwidth limit, no per-request price. So this remote measures how many requests a tool
makes and what the tool itself spends (its CPU, its RSS, the server's CPU it causes), not
what a real bucket across a network would cost; there every request also costs a round
trip, which these request counts let one estimate. There is no restore "× the bandwidth
floor" figure here, and the targets set against borg (commits of v2, bytes stored) are
judged against restic, the other deduplicating backup tool. Unless `--keep` is given, each
tool's prefix is deleted after its last step. The server writes a line per request
(`logs/PRESET-s3-server.log` in the work folder, between markers of each step) for a closer
look.

Absolute seconds on a shared 2-core machine are noise; the ratios within one run are the
figures to read.
"""


def load_results(results_dir: Path) -> list[dict[str, Any]]:
    out = []
    for p in sorted(results_dir.glob("*.json")):
        out.append(json.loads(p.read_text()))

    def key(r: dict[str, Any]) -> tuple[int, int, str]:
        pos = PRESET_ORDER.index(r["preset"]) if r["preset"] in PRESET_ORDER else 99
        return (pos, ["local", "drive", "s3"].index(remote_kind(r)), r.get("command", ""))

    return sorted(out, key=key)


def rss_summary(results: list[dict[str, Any]]) -> str:
    lines = [
        "| run | data v2 MB | cas peak RSS MB (operation) | best peer peak RSS MB |",
        "|---|---|---|---|",
    ]
    for res in results:
        cas_rows = [r for r in res["rows"] if r["tool"] == "cas"]
        peer_rows = [r for r in res["rows"] if r["tool"] != "cas" and r["ok"]]
        if not cas_rows:
            continue
        peak = max(cas_rows, key=lambda r: r["rss_mb"])
        peer_peak = min(
            (max(r["rss_mb"] for r in peer_rows if r["tool"] == t) for t in peers(res)
             if any(r["tool"] == t for r in peer_rows)),
            default=None,
        )  # fmt: skip
        lines.append(
            f"| {short_label(res)} | {res['dataset']['v2']['bytes'] / MB:.0f} | "
            f"{peak['rss_mb']:.0f} ({peak['op']}) | "
            f"{'–' if peer_peak is None else f'{peer_peak:.0f}'} |"
        )
    return "\n".join(lines)


def short_label(res: dict[str, Any]) -> str:
    label = f"{res['preset']}, {remote_kind(res)}"
    if res.get("rounds", 1) > 1:
        label += f", {res['rounds']} rounds"
    if res.get("tools") == ["cas"]:
        label += ", cas only"
    return label


def targets_summary(results: list[dict[str, Any]]) -> str:
    """Every target (rows) in every run (columns): verdict and ratio."""
    names: list[str] = []
    cells: dict[tuple[str, int], str] = {}
    for i, res in enumerate(results):
        for t in targets(res):
            if t["target"] not in names:
                names.append(t["target"])
            got = t["cas"].rsplit("= ", 1)[-1] if "= " in t["cas"] else t["cas"]
            cells[(t["target"], i)] = f"{t['verdict'].split(' (')[0]} {got}"
    head = "| target | " + " | ".join(short_label(r) for r in results) + " |"
    lines = [head, "|" + "---|" * (len(results) + 1)]
    for n in names:
        row = [cells.get((n, i), "–") for i in range(len(results))]
        lines.append(f"| {n} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def render_doc(results: list[dict[str, Any]], profile_md: str | None) -> str:
    parts = [DOC_INTRO.rstrip()]
    parts.append(
        "## Issue 4's targets in every run\n\nThe targets are defined on the medium preset; "
        "each cell is cas's verdict and its figure (a ratio to the reference peer, or an "
        "absolute value) in that run (on S3, where borg cannot run, the targets set against "
        "borg are judged against restic). The sections below give every figure.\n\n"
        + targets_summary(results)
    )
    parts.append("## Peak RSS as the data grows\n\n" + rss_summary(results))
    for res in results:
        parts.append(render_run(res))
    if profile_md:
        parts.append(profile_md.strip())
    return "\n\n".join(parts) + "\n"
