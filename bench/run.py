"""The benchmark: cas against the tar.gz workflow, tar | zstd, restic and borg, in one run
on the same generated data, on a local folder, on a Drive-like FUSE remote and on an S3
server on loopback (moto).

    python -m bench.run --preset small --remote both [--tools cas,targz,...] [--write-docs]

``--remote both`` is local + drive; ``--remote all`` is local + drive + s3.

(``python bench/run.py ...`` from the repository root works too.) Prints the machine, one
table per remote with every figure and its ratio to the best peer, and issue 4's targets
with PASS/MISS. ``--write-docs`` also stores the results in bench/results/ and rewrites
docs/performance.md from every stored result.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import generate, measure, report
from bench import s3 as s3remote
from bench.drive import HERE, DriveMount, build_c
from bench.measure import (
    compare,
    cpu_busy_seconds,
    drop_caches,
    loadavg,
    machine_info,
    manifest,
    run,
    store_usage,
)
from bench.s3 import S3Loc, S3Server
from bench.tools import TOOLS, Place, Tool

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO / "bench" / "results"
PROFILE_MD = REPO / "bench" / "profiles" / "summary.md"
DOC = REPO / "docs" / "performance.md"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def rmtree(p: Path) -> None:
    if p.is_symlink() or p.is_file():
        p.unlink()
    elif p.exists():
        shutil.rmtree(p)


def load_manifest(dataset: Path, version: str) -> dict[str, Any]:
    cache = dataset / f"manifest-{version}.json"
    if cache.exists():
        raw = json.loads(cache.read_text())
    else:
        m = manifest(dataset / version)
        raw = {k: vars(e) for k, e in m.items()}
        cache.write_text(json.dumps(raw))
    from bench.measure import Entry

    return {k: Entry(**v) for k, v in raw.items()}


REMOTES = {"local": ["local"], "drive": ["drive"], "s3": ["s3"]}
REMOTES["both"] = ["local", "drive"]
REMOTES["all"] = ["local", "drive", "s3"]


class Side:
    """Where the tools' stores live on one remote, how to measure them, and its counters."""

    name = ""

    def place(self, tool: str) -> tuple[Path, S3Loc | None]:
        raise NotImplementedError

    def usage(self, tool: str) -> tuple[int, int]:
        raise NotImplementedError

    def stats(self) -> dict[str, float]:
        return {}

    def clear(self, tool: str) -> None:
        raise NotImplementedError

    def mark(self, text: str) -> None:
        """Note where a step starts in the remote's own log, if it keeps one."""


class FolderSide(Side):
    """A folder: on the local disk (store_root = backing), or the Drive-like mount of a
    backing folder (stores are used through the mount, measured on the backing folder)."""

    def __init__(
        self, name: str, store_root: Path, backing: Path, mount: DriveMount | None
    ) -> None:
        self.name, self.store_root, self.backing, self.mount = name, store_root, backing, mount

    def place(self, tool: str) -> tuple[Path, S3Loc | None]:
        return self.store_root / tool, None

    def usage(self, tool: str) -> tuple[int, int]:
        return store_usage(self.backing / tool)

    def stats(self) -> dict[str, float]:
        return self.mount.stats() if self.mount else {}

    def clear(self, tool: str) -> None:
        rmtree(self.store_root / tool)


class S3Side(Side):
    """A prefix per tool in the S3 server's bucket."""

    name = "s3"

    def __init__(self, server: S3Server, unused: Path) -> None:
        self.server, self.unused = server, unused

    def place(self, tool: str) -> tuple[Path, S3Loc | None]:
        return self.unused / tool, self.server.loc(tool)

    def usage(self, tool: str) -> tuple[int, int]:
        return self.server.usage(tool)

    def stats(self) -> dict[str, float]:
        return self.server.stats()

    def clear(self, tool: str) -> None:
        self.server.clear(tool)

    def mark(self, text: str) -> None:
        self.server.mark(text)


class Runner:
    def __init__(self, args: argparse.Namespace, dataset: Path) -> None:
        self.args = args
        self.dataset = dataset
        self.preset = generate.PRESETS[args.preset]
        self.ref = {v: load_manifest(dataset, v) for v in ("v1", "v2")}
        self.load_max = 0.0
        self.notes: list[str] = []

    def run_remote(self, remote: str, all_tools: list[Tool]) -> dict[str, Any]:
        a = self.args
        work_root = a.workdir / "run" / remote
        rmtree(work_root)
        work_root.mkdir(parents=True)
        notes = list(self.notes)
        tools = []
        for t in all_tools:
            why = t.unsupported(remote)
            if why:
                notes.append(f"{t.name} skipped: {why}")
                log(f"{t.name}: {why}")
            else:
                tools.append(t)
        load_start = loadavg()
        rows: list[dict[str, Any]] = []
        drive_info: dict[str, Any] | None = None
        s3_info: dict[str, Any] | None = None

        def rounds(side: Side) -> None:
            nonlocal rows
            for r in range(a.rounds):  # each round starts with another tool
                for tool in tools[r % len(tools) :] + tools[: r % len(tools)]:
                    rows += self.run_tool(tool, side, work_root)

        if remote == "drive":
            backing = a.workdir / "drive-backing"
            rmtree(backing)
            mount = DriveMount(
                backing, a.workdir / "drive-mnt", a.workdir / "bin", a.latency_ms, a.bandwidth_mbps
            )
            with mount:
                rounds(FolderSide("drive", mount.mountpoint, backing, mount))
            drive_info = {
                "latency_ms": a.latency_ms,
                "bandwidth_mbps": a.bandwidth_mbps,
                "daemon_cpu": mount.daemon_cpu,
            }
            rmtree(backing)
        elif remote == "s3":
            server_log = a.workdir / "logs" / f"{a.preset}-s3-server.log"
            server_log.parent.mkdir(parents=True, exist_ok=True)
            server_log.write_text("")
            with S3Server(server_log) as server:
                log(f"S3 server (moto) at {server.endpoint}, pid {server.proc.pid}")  # type: ignore[union-attr]
                rounds(S3Side(server, a.workdir / "s3-unused"))
                s3_info = {"server": server.version(), "bucket": server.bucket}
            s3_info["server_cpu"] = server.server_cpu
        else:
            store_root = a.workdir / "local-remote"
            rmtree(store_root)
            store_root.mkdir(parents=True)
            rounds(FolderSide("local", store_root, store_root, None))
            rmtree(store_root)
        if not a.keep:
            rmtree(work_root)
        return {
            "preset": a.preset,
            "seed": a.seed,
            "remote": remote,
            "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "command": self.command(remote),
            "machine": machine_info(),
            "versions": {t.name: t.version() for t in tools},
            "tools": [t.name for t in tools],
            "load_start": load_start,
            "load_end": loadavg(),
            "load_max": self.load_max,
            "dataset": {
                v: {
                    "files": sum(1 for e in self.ref[v].values() if e.kind != "dir"),
                    "bytes": sum(e.size for e in self.ref[v].values()),
                }
                for v in ("v1", "v2")
            },
            "drive": drive_info,
            "s3": s3_info,
            "rounds": a.rounds,
            "rows": median_rows(rows),
            "notes": notes,
        }

    def command(self, remote: str) -> str:
        a = self.args
        parts = ["python -m bench.run", "--preset", a.preset, "--remote", remote]
        parts += ["--tools", ",".join(a.tools)]
        if a.seed != 1:
            parts += ["--seed", str(a.seed)]
        if remote == "drive":
            parts += ["--latency-ms", str(a.latency_ms), "--bandwidth-mbps", str(a.bandwidth_mbps)]
        if a.name:
            parts += ["--name", a.name]
        if a.rounds != 1:
            parts += ["--rounds", str(a.rounds)]
        if a.drop_caches != "restore":
            parts += ["--drop-caches", a.drop_caches]
        return " ".join(parts)

    def run_tool(self, tool: Tool, side: Side, work_root: Path) -> list[dict[str, Any]]:
        a = self.args
        base = work_root / tool.name
        store, s3loc = side.place(tool.name)
        p = Place(
            store=store,
            work=base / "work",
            restore=base / "restore",
            cache=base / "cache",
            fresh_cache=base / "fresh-cache",
            scratch=base,
            s3=s3loc,
        )
        rmtree(base)
        if s3loc:
            side.clear(tool.name)  # a fresh prefix (a folder store is created by setup)
        base.mkdir(parents=True)
        p.cache.mkdir()
        p.fresh_cache.mkdir()
        logfile = a.workdir / "logs" / f"{a.preset}-{side.name}-{tool.name}.log"
        logfile.parent.mkdir(parents=True, exist_ok=True)
        logfile.write_text("")
        log(f"[{tool.name}] preparing a worktree copy of v1")
        generate.copy_tree(self.dataset / "v1", p.work)
        env = tool.env(p)
        for argv in tool.setup(p):
            s = run(argv, env=env, log=logfile)
            if s.rc != 0:
                raise RuntimeError(f"{tool.name} setup failed: {argv}: {s.stderr_tail}")

        rows: list[dict[str, Any]] = []
        broken = False

        def step(op: str, argv: list[str], verify: str | None = None, cwd: Path | None = None):
            nonlocal broken
            drop_err = None
            if a.drop_caches == "all" or (a.drop_caches == "restore" and verify):
                drop_err = drop_caches()
            else:
                os.sync()
            if drop_err and drop_err not in self.notes:
                self.notes.append(drop_err)
            load1 = float(loadavg().split()[0]) if loadavg() != "?" else 0.0
            self.load_max = max(self.load_max, load1)
            before = side.stats()
            side.mark(f"{tool.name} {op} start")
            busy0 = cpu_busy_seconds()
            s = run(argv, env=env, cwd=cwd, log=logfile, timeout=a.timeout)
            busy = cpu_busy_seconds() - busy0
            side.mark(f"{tool.name} {op} end")
            after = side.stats()
            remote = {k: after.get(k, 0) - before.get(k, 0) for k in after}
            # CPU that other processes (not this tool, not the FUSE daemon or S3 server)
            # used meanwhile, in cores: how much the shared machine disturbed this figure.
            others = max(0.0, busy - s.cpu - remote.get("cpu_s", 0.0)) / max(s.wall, 1e-9)
            size, files = side.usage(tool.name)
            ok = s.rc == 0
            verdict = "ok" if ok else f"FAILED: exit {s.rc}: {s.stderr_tail[:200]}"
            if ok and verify:
                v = compare(
                    self.ref[verify],
                    manifest(p.restore, tool.skip_top),
                    modes_matter=tool.modes_matter,
                )
                ok = v.ok
                verdict = "verified " + v.summary() if v.ok else v.summary()
            if not ok and op.startswith("commit"):
                broken = True
            row = {
                "tool": tool.name,
                "op": op,
                "wall": s.wall,
                "cpu": s.cpu,
                "user": s.user,
                "sys": s.sys,
                "rss_mb": s.maxrss_mb,
                "rc": s.rc,
                "ok": ok,
                "verdict": verdict,
                "store_bytes": size,
                "store_files": files,
                "load1": load1,
                "others_cores": others,
                "remote": remote,
            }
            rows.append(row)
            log(
                f"[{tool.name}] {op}: {s.wall:.2f} s wall, {s.cpu:.2f} s CPU, "
                f"{s.maxrss_mb:.0f} MB RSS, others {others:.2f} cores, "
                f"store {size / 1e6:.1f} MB in {files} files; {verdict}"
            )

        step("commit_v1", tool.commit(p, "v1"))
        if not broken:
            generate.apply_v2(p.work, self.preset, a.seed)
            step("commit_v2", tool.commit(p, "v2"))
        if not broken:
            step("commit_v2_again", tool.commit(p, "v2", again=True))
        if not broken:
            step("restore_v1", tool.restore_v1(p), verify="v1")
            step("switch_v2", tool.switch_v2(p), verify="v2")
        if not a.keep:
            rmtree(base)
            side.clear(tool.name)
        return rows


def median_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (tool, operation): the round with the median wall time; peak RSS is the
    highest of all rounds, and any failed round makes the row failed."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["tool"], r["op"]), []).append(r)
    out = []
    for group in groups.values():
        if len(group) == 1:
            out.append(group[0])
            continue
        by_wall = sorted(group, key=lambda r: r["wall"])
        row = dict(by_wall[(len(by_wall) - 1) // 2])
        row["walls"] = [r["wall"] for r in group]
        row["rss_mb"] = max(r["rss_mb"] for r in group)
        failed = [r for r in group if not r["ok"]]
        if failed:
            row["ok"] = False
            row["verdict"] = f"{len(failed)} of {len(group)} rounds: {failed[0]['verdict']}"
        out.append(row)
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m bench.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--preset", choices=sorted(generate.PRESETS), default="small")
    ap.add_argument(
        "--remote",
        choices=list(REMOTES),
        default="local",
        help="both = local + drive; all = local + drive + s3 (moto on loopback)",
    )
    ap.add_argument("--tools", default="cas,targz,tarzstd,restic,borg")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/cas-bench"))
    ap.add_argument("--latency-ms", type=int, default=30)
    ap.add_argument("--bandwidth-mbps", type=int, default=100, help="MB/s (10^6 bytes)")
    ap.add_argument(
        "--drop-caches",
        choices=["restore", "all", "none"],
        default="restore",
        help="drop the page cache before restores and switches (default), every step, or never",
    )
    ap.add_argument(
        "--rounds", type=int, default=1, help="repeat every tool's sequence; report medians"
    )
    ap.add_argument(
        "--name",
        default="",
        help="suffix of the results file (bench/results/PRESET-REMOTE-NAME.json), so a run "
        "with other options sits beside the default one instead of replacing it",
    )
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds per operation")
    ap.add_argument("--keep", action="store_true", help="keep worktrees and stores")
    ap.add_argument("--write-docs", action="store_true", help="save results, rewrite docs")
    ap.add_argument(
        "--docs-only",
        action="store_true",
        help="only rebuild docs/performance.md from bench/results/*.json (no run)",
    )
    args = ap.parse_args(argv)
    args.tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    unknown = [t for t in args.tools if t not in TOOLS]
    if unknown:
        ap.error(f"unknown tools {unknown}; known: {', '.join(TOOLS)}")
    args.workdir = args.workdir.resolve()
    return args


def write_docs() -> None:
    summaries = sorted(PROFILE_MD.parent.glob("summary*.md"), key=lambda p: (p != PROFILE_MD, p))
    profile = "\n\n".join(p.read_text().strip() for p in summaries) or None
    DOC.write_text(report.render_doc(report.load_results(RESULTS_DIR), profile))
    log(f"wrote {DOC.relative_to(REPO)} from {len(list(RESULTS_DIR.glob('*.json')))} results")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.docs_only:
        write_docs()
        return 0
    tools: list[Tool] = []
    skipped: list[str] = []
    for name in args.tools:
        why = TOOLS[name].available()
        if why:
            skipped.append(f"{name} skipped: {why}")
            log(f"{name}: {why}")
        else:
            tools.append(TOOLS[name])
    measure.SPAWN = build_c(HERE / "spawn.c", args.workdir / "bin")
    log(f"data: preset {args.preset}, seed {args.seed}")
    dataset = generate.ensure_dataset(args.workdir / "data", args.preset, args.seed, log=log)
    runner = Runner(args, dataset)
    runner.notes += skipped
    remotes = REMOTES[args.remote]
    if "s3" in remotes:
        why = s3remote.available()
        if why:
            log(f"s3: {why}")
            if remotes == ["s3"]:
                return 2
            remotes = [r for r in remotes if r != "s3"]
    results = []
    for remote in remotes:
        log(f"=== remote: {remote} ===")
        res = runner.run_remote(remote, tools)
        results.append(res)
        name = f"{args.preset}-{remote}" + (f"-{args.name}" if args.name else "")
        out = args.workdir / "results" / f"{name}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(res, indent=1))
        print(report.render_run(res) + "\n", flush=True)
        if args.write_docs:
            RESULTS_DIR.mkdir(parents=True, exist_ok=True)
            (RESULTS_DIR / f"{name}.json").write_text(json.dumps(res, indent=1))
    if args.write_docs:
        write_docs()
    return 0 if all(r["ok"] for res in results for r in res["rows"]) else 1


if __name__ == "__main__":
    sys.exit(main())
