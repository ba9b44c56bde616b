"""Measuring one child process, a store folder, a restored tree, and the machine."""

from __future__ import annotations

import contextlib
import os
import platform
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:
    import blake3
except ImportError:  # pragma: no cover
    blake3 = None


@dataclass
class Sample:
    """What one child process cost: wall and CPU seconds, peak RSS, exit status."""

    wall: float
    user: float
    sys: float
    maxrss_mb: float
    rc: int
    stderr_tail: str = ""

    @property
    def cpu(self) -> float:
        return self.user + self.sys


SPAWN: Path | None = None  # the compiled bench/spawn.c, set by the runner


def run(
    argv: list[str],
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 3600.0,
    log: Path | None = None,
) -> Sample:
    """Run argv to completion. Wall time is measured here; CPU time and peak RSS come from
    wait4 of the child (with every descendant it waited for, e.g. both sides of a shell
    pipeline) in the tiny bench/spawn helper, so this large process's pages do not count
    as the child's (Linux records the pre-exec pages of a forked child in its peak RSS)."""
    with tempfile.TemporaryDirectory() as tmp:
        stats = Path(tmp) / "rusage"
        full = [str(SPAWN), str(stats), *argv] if SPAWN else argv
        with open(Path(tmp) / "out", "w+b") as out, open(Path(tmp) / "err", "w+b") as err:
            t0 = time.perf_counter()
            proc = subprocess.Popen(
                full,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
            timer = threading.Timer(timeout, os.killpg, (proc.pid, signal.SIGKILL))
            timer.start()
            try:
                _pid, status, ru = os.wait4(proc.pid, 0)
            finally:
                timer.cancel()
            wall = time.perf_counter() - t0
            proc.returncode = rc = os.waitstatus_to_exitcode(status)
            user, sys_, maxrss_kib = ru.ru_utime, ru.ru_stime, ru.ru_maxrss
            if SPAWN:
                try:
                    _st, u, s, m = stats.read_text().split()
                    user, sys_, maxrss_kib = float(u), float(s), int(m)
                except (OSError, ValueError):
                    pass  # killed before it wrote: keep the helper's own figures
            err.seek(0)
            err_text = err.read().decode(errors="replace")
            if log:
                out.seek(0)
                with open(log, "a") as f:
                    f.write(f"\n$ {' '.join(argv)}  (cwd={cwd}) -> rc {rc}, {wall:.2f}s\n")
                    f.write(out.read().decode(errors="replace")[-20000:])
                    f.write(err_text[-20000:])
    tail = [line for line in err_text.strip().splitlines() if line.strip()][-3:]
    return Sample(
        wall=wall,
        user=user,
        sys=sys_,
        maxrss_mb=maxrss_kib / 1024.0,
        rc=rc,
        stderr_tail=" | ".join(tail),
    )


def reap(proc: subprocess.Popen[Any], grace: float = 30.0) -> float:
    """Wait for a helper process we asked to stop; return its CPU seconds (user + sys).

    Killed if it has not exited after ``grace`` seconds (then waited for again).
    """
    deadline = time.monotonic() + grace
    while True:
        pid, _status, ru = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = 0
            return float(ru.ru_utime + ru.ru_stime)
        if time.monotonic() > deadline:
            proc.kill()
            deadline = time.monotonic() + grace
        time.sleep(0.05)


def drop_caches() -> str | None:
    """sync and drop the page cache; returns an error text where it is not permitted."""
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
    except OSError as e:
        return f"drop_caches failed: {e}"
    return None


def store_usage(path: Path) -> tuple[int, int]:
    """Bytes and files under path (regular files by apparent size, symlinks counted)."""
    total = files = 0
    for dirpath, _dirs, names in os.walk(path):
        for name in names:
            st = os.lstat(os.path.join(dirpath, name))
            total += st.st_size
            files += 1
    return total, files


# --- tree manifests and verification --------------------------------------------------


def file_digest(path: str) -> str:
    if blake3 is not None:
        h = blake3.blake3(max_threads=blake3.blake3.AUTO)
        if os.path.getsize(path) > 0:
            h.update_mmap(path)
        return str(h.hexdigest())
    import hashlib

    h2 = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h2.update(chunk)
    return h2.hexdigest()


@dataclass
class Entry:
    kind: str  # "file", "dir", "link"
    mode: int
    size: int = 0
    digest: str = ""  # file digest or symlink target


def manifest(root: Path, skip_top: tuple[str, ...] = ()) -> dict[str, Entry]:
    out: dict[str, Entry] = {}
    for dirpath, dirs, names in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        if rel_dir == ".":
            dirs[:] = [d for d in dirs if d not in skip_top]
            names = [n for n in names if n not in skip_top]
        for name in dirs + names:
            full = os.path.join(dirpath, name)
            rel = os.path.normpath(os.path.join(rel_dir, name))
            st = os.lstat(full)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = Entry("link", 0, 0, os.readlink(full))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = Entry("dir", stat.S_IMODE(st.st_mode))
            elif stat.S_ISREG(st.st_mode):
                out[rel] = Entry("file", stat.S_IMODE(st.st_mode), st.st_size, file_digest(full))
            else:
                out[rel] = Entry("other", stat.S_IMODE(st.st_mode))
    return out


@dataclass
class Verdict:
    ok: bool
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        if self.ok:
            return "ok" + (f" ({'; '.join(self.notes[:2])})" if self.notes else "")
        more = f" (+{len(self.problems) - 3} more)" if len(self.problems) > 3 else ""
        return "FAILED: " + "; ".join(self.problems[:3]) + more


def compare(ref: dict[str, Entry], got: dict[str, Entry], *, modes_matter: bool) -> Verdict:
    """Byte-for-byte (by BLAKE3 of every file), types, symlink targets, file modes."""
    v = Verdict(True)
    mode_diffs = 0
    for rel, e in ref.items():
        g = got.get(rel)
        if g is None:
            v.problems.append(f"missing {rel}")
            continue
        if g.kind != e.kind:
            v.problems.append(f"{rel}: {g.kind}, expected {e.kind}")
        elif e.kind == "file" and (g.size != e.size or g.digest != e.digest):
            v.problems.append(f"{rel}: content differs ({g.size} vs {e.size} bytes)")
        elif e.kind == "link" and g.digest != e.digest:
            v.problems.append(f"{rel}: link to {g.digest!r}, expected {e.digest!r}")
        elif e.kind == "file" and g.mode != e.mode:
            mode_diffs += 1
            if modes_matter:
                v.problems.append(f"{rel}: mode {g.mode:o}, expected {e.mode:o}")
    for rel in got:
        if rel not in ref:
            v.problems.append(f"unexpected {rel}")
    if mode_diffs and not modes_matter:
        v.notes.append(f"{mode_diffs} file modes differ")
    v.ok = not v.problems
    return v


# --- the machine ----------------------------------------------------------------------


def _first_line(argv: list[str]) -> str:
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return "not found"
    text = (r.stdout or r.stderr).strip()
    return text.splitlines()[0] if text else "?"


def machine_info() -> dict[str, str]:
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = "?"
    with contextlib.suppress(OSError):
        m = re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text())
        if m:
            mem = f"{int(m.group(1)) / 1024 / 1024:.1f} GiB"
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "ram": mem,
        "kernel": platform.release(),
        "os": _first_line(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"]),
        "python": sys.version.split()[0],
        "filesystem": _first_line(["sh", "-c", "df -T /tmp | tail -1 | awk '{print $2}'"]),
    }


def cpu_busy_seconds() -> float:
    """CPU seconds all processes have used since boot, every core (from /proc/stat)."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except (OSError, IndexError):
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def tool_version(argv: list[str]) -> str:
    if shutil.which(argv[0]) is None and not os.path.exists(argv[0]):
        return "not installed"
    return _first_line(argv)
