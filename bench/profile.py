"""Profile one cas commit and one cas restore with py-spy, and summarise the hot spots.

    python -m bench.profile --preset small [--remote local|drive]

Runs, on the benchmark's generated data: ``cas commit`` of v1 into a fresh store, then
``cas clone --ref v1`` into an empty folder with an empty cache (page cache dropped), each
under ``py-spy record`` twice — once sampling on-CPU stacks (where CPU goes), once with
``--idle --threads`` (where the main thread's wall time goes, waits included). The raw
collapsed stacks land in bench/profiles/*.txt and the summary (top functions by share of
samples) in bench/profiles/summary.md, which ``bench.run --write-docs`` includes in
docs/performance.md. Needs ``pip install py-spy``.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import generate
from bench.drive import DriveMount
from bench.measure import drop_caches, loadavg
from bench.tools import TOOLS, Place

OUT = Path(__file__).resolve().parent / "profiles"
FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")


def parse(raw: Path) -> list[tuple[str | None, list[str], int]]:
    """(thread name or None, frames root→leaf as 'func (file)', count) per stack."""
    out = []
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        thread = None
        if frames and frames[0].startswith("thread ("):
            thread = frames.pop(0)
        out.append((thread, [f.strip() for f in frames], int(count)))
    return out


def norm(frame: str) -> str:
    """'func (file:line)' → 'func (file)'."""
    m = FRAME.match(frame)
    return f"{m['func']} ({m['file']})" if m else frame


def normalized(stacks):
    return [(t, [norm(f) for f in frames], c) for t, frames, c in stacks]


# Leaves where a thread waits (py-spy's idle detection misses waits on a lock taken in C,
# such as a pool worker blocked on its work queue): left out of the on-CPU table.
WAIT_LEAVES = {
    "_worker (concurrent/futures/thread.py)",
    "Condition.wait (threading.py)",
    "Event.wait (threading.py)",
    "Thread._wait_for_tstate_lock (threading.py)",
    "Queue.get (queue.py)",
    "Queue.put (queue.py)",
    "Semaphore.acquire (threading.py)",
}


def busy(stacks):
    """Stacks whose leaf is not a known wait, and the share of samples left out."""
    kept = [s for s in stacks if not s[1] or s[1][-1] not in WAIT_LEAVES]
    total = sum(c for _t, _f, c in stacks)
    waits = total - sum(c for _t, _f, c in kept)
    return kept, (waits / total if total else 0.0)


def top(stacks, n: int = 10) -> tuple[int, list[tuple[str, int, int]]]:
    """Total samples; the n functions with most self samples, with their inclusive ones."""
    total = sum(c for _t, _f, c in stacks)
    self_c: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    for _t, frames, c in stacks:
        if not frames:
            self_c["(no Python frame: native code, GIL released)"] += c
            continue
        self_c[frames[-1]] += c
        for f in set(frames):
            incl[f] += c
    rows = [(f, c, incl.get(f, c)) for f, c in self_c.most_common(n)]
    return total, rows


def top_inclusive(stacks, n: int = 10, prefix: str = "cas") -> list[tuple[str, int]]:
    incl: collections.Counter[str] = collections.Counter()
    for _t, frames, c in stacks:
        for f in set(frames):
            m = FRAME.match(f)
            if m and (m["file"].startswith(prefix + "/") or m["file"].startswith(prefix + "_")):
                incl[f] += c
    return incl.most_common(n)


def main_thread(stacks):
    return [s for s in stacks if s[0] and "MainThread" in s[0]]


def hot_lines(stacks, n: int = 10) -> list[tuple[str, int]]:
    """Innermost cas lines by self samples (stacks with line numbers)."""
    c: collections.Counter[str] = collections.Counter()
    for _t, frames, k in stacks:
        for f in reversed(frames):  # the innermost frame that is cas's own code
            if "(cas/" in f or "(cas_cli/" in f:
                c[f] += k
                break
    return c.most_common(n)


def section(title: str, raw_cpu: Path, raw_idle: Path, wall: float) -> str:
    raw = parse(raw_cpu)
    cpu, wait_share = busy(normalized(raw))
    total, rows = top(cpu)
    lines = [
        f"### {title} ({wall:.1f} s wall under py-spy)",
        "",
        f"On-CPU samples ({total}; every thread; `{raw_cpu.name}`; a further "
        f"{100 * wait_share:.0f}% of samples were threads waiting on a queue or condition, "
        "left out), top 10 by self time:",
        "",
        "| function (file) | self | inclusive |",
        "|---|---|---|",
    ]
    for f, c, inc in rows:
        lines.append(f"| `{f}` | {100 * c / total:.1f}% | {100 * inc / total:.1f}% |")
    lines += ["", "cas functions by inclusive on-CPU share:", ""]
    lines += ["| function (file) | inclusive |", "|---|---|"]
    for f, c in top_inclusive(cpu):
        lines.append(f"| `{f}` | {100 * c / total:.1f}% |")
    kept_raw = [s for s in raw if not s[1] or norm(s[1][-1]) not in WAIT_LEAVES]
    lines += ["", "Hottest lines of cas (innermost cas frame of each on-CPU sample):", ""]
    lines += ["| line | share |", "|---|---|"]
    for f, c in hot_lines(kept_raw):
        lines.append(f"| `{f}` | {100 * c / total:.1f}% |")
    idle = main_thread(normalized(parse(raw_idle)))
    itotal, irows = top(idle)
    if itotal:
        lines += [
            "",
            f"Main thread, wall time including waits ({itotal} samples; `{raw_idle.name}`), "
            "top 10 by self:",
            "",
            "| function (file) | self | inclusive |",
            "|---|---|---|",
        ]
        for f, c, inc in irows:
            lines.append(f"| `{f}` | {100 * c / itotal:.1f}% | {100 * inc / itotal:.1f}% |")
    return "\n".join(lines)


def record(argv: list[str], raw: Path, idle: bool, env: dict[str, str], rate: int) -> float:
    import time

    cmd = ["py-spy", "record", "-r", str(rate), "--format", "raw", "-o", str(raw)]
    if idle:
        cmd += ["--idle", "--threads"]
    t0 = time.perf_counter()
    r = subprocess.run([*cmd, "--", *argv], env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"py-spy failed: {r.stderr.strip()[-500:]}")
    return wall


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    ap.add_argument("--preset", choices=sorted(generate.PRESETS), default="small")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--remote", choices=["local", "drive"], default="local")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/cas-bench"))
    ap.add_argument("--rate", type=int, default=200, help="samples per second")
    ap.add_argument(
        "--unchanged",
        action="store_true",
        help="profile a commit of an unchanged worktree instead (after an untimed commit)",
    )
    args = ap.parse_args(argv)
    if shutil.which("py-spy") is None:
        print("py-spy not installed: pip install py-spy", file=sys.stderr)
        return 2
    dataset = generate.ensure_dataset(args.workdir / "data", args.preset, args.seed)
    cas = TOOLS["cas"]
    OUT.mkdir(parents=True, exist_ok=True)
    load_start = loadavg()
    walls: dict[str, float] = {}
    prefix = f"unchanged-{args.preset}-" if args.unchanged else ""
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp_s:
        tmp = Path(tmp_s)
        mount = None
        store_root = tmp / "remote"
        if args.remote == "drive":
            mount = DriveMount(tmp / "backing", tmp / "mnt", args.workdir / "bin", 30, 100)
            mount.__enter__()
            store_root = mount.mountpoint
        try:
            for kind in ("cpu", "idle"):
                base = tmp / kind
                p = Place(
                    store=store_root / f"store-{kind}",
                    work=base / "work",
                    restore=base / "restore",
                    cache=base / "cache",
                    fresh_cache=base / "fresh",
                    scratch=base,
                )
                base.mkdir()
                generate.copy_tree(dataset / "v1", p.work)
                env = cas.env(p)
                for step in cas.setup(p):
                    subprocess.run(step, env=env, check=True, capture_output=True)
                if args.unchanged:
                    subprocess.run(cas.commit(p, "v1"), env=env, check=True, capture_output=True)
                    walls[f"commit-{kind}"] = record(
                        cas.commit(p, "v1", again=True),
                        OUT / f"{prefix}commit-{kind}.txt",
                        kind == "idle",
                        env,
                        args.rate,
                    )
                    shutil.rmtree(base)
                    continue
                drop_caches()
                walls[f"commit-{kind}"] = record(
                    cas.commit(p, "v1"), OUT / f"commit-{kind}.txt", kind == "idle", env, args.rate
                )
                drop_caches()
                walls[f"restore-{kind}"] = record(
                    cas.restore_v1(p), OUT / f"restore-{kind}.txt", kind == "idle", env, args.rate
                )
        finally:
            if mount:
                mount.__exit__(None, None, None)
    date = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    remote = "local remote" if args.remote == "local" else "Drive-like remote"
    flag = " --unchanged" if args.unchanged else ""
    intro = (
        f"Generated by `python -m bench.profile --preset {args.preset} --remote {args.remote}"
        f"{flag}` on {date} ({remote}; load average at start {load_start}). Sampling slows "
        "the process, so the wall times here are not the benchmark's. 'self' is the share of "
        "samples whose innermost Python frame is the function (time in a C extension "
        "called from it counts as its own), 'inclusive' the share with the function "
        "anywhere on the stack."
    )
    if args.unchanged:
        md = [
            f"## Where an unchanged commit spends its time, {args.preset} (py-spy)",
            "",
            intro,
            "",
            section(
                f"`cas commit` of an unchanged worktree, {args.preset}",
                OUT / f"{prefix}commit-cpu.txt",
                OUT / f"{prefix}commit-idle.txt",
                walls["commit-cpu"],
            ),
        ]
        target = OUT / f"summary-unchanged-{args.preset}.md"
    else:
        md = [
            "## Where cas spends its time (py-spy)",
            "",
            intro,
            "",
            section(
                f"`cas commit` of v1, {args.preset}",
                OUT / "commit-cpu.txt",
                OUT / "commit-idle.txt",
                walls["commit-cpu"],
            ),
            "",
            section(
                f"`cas clone --ref v1` (restore, empty cache), {args.preset}",
                OUT / "restore-cpu.txt",
                OUT / "restore-idle.txt",
                walls["restore-cpu"],
            ),
        ]
        target = OUT / "summary.md"
    target.write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
