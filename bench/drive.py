"""The Drive-like remote: a folder behind ``drivefs`` (bench/drivefs.c), a FUSE passthrough
that adds a fixed latency to every metadata operation and caps the bandwidth."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from bench.measure import reap

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "drivefs.c"


def build_c(source: Path, bin_dir: Path, pkg: str | None = None) -> Path:
    """Compile one of bench's C helpers (once; again when its source changes)."""
    exe = bin_dir / source.stem
    if exe.exists() and exe.stat().st_mtime >= source.stat().st_mtime:
        return exe
    bin_dir.mkdir(parents=True, exist_ok=True)
    flags: list[str] = []
    if pkg:
        try:
            flags = subprocess.run(
                ["pkg-config", "--cflags", "--libs", pkg],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.split()
        except (OSError, subprocess.CalledProcessError) as e:
            raise RuntimeError(
                f"{pkg} not found: apt-get install -y fuse3 libfuse3-dev pkg-config"
            ) from e
    tmp = exe.with_name(exe.name + ".tmp")
    cmd = ["gcc", "-O2", "-Wall", "-o", str(tmp), str(source), *flags]
    r = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise RuntimeError(f"building {source.name} failed:\n{r.stderr}")
    os.replace(tmp, exe)
    return exe


def build(bin_dir: Path) -> Path:
    """Compile drivefs against libfuse3."""
    return build_c(SOURCE, bin_dir, "fuse3")


def _unmount(mnt: Path) -> None:
    for tool in ("fusermount3", "fusermount"):
        if shutil.which(tool):
            subprocess.run([tool, "-u", "-z", str(mnt)], capture_output=True, check=False)
            return
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True, check=False)


class DriveMount:
    """``with DriveMount(backing, mountpoint, ...) as m:`` — m.mountpoint is the slow view."""

    def __init__(
        self, backing: Path, mountpoint: Path, bin_dir: Path, latency_ms: int, bandwidth_mbps: int
    ) -> None:
        self.backing = backing
        self.mountpoint = mountpoint
        self.bin_dir = bin_dir
        self.latency_ms = latency_ms
        self.bandwidth_mbps = bandwidth_mbps
        self.proc: subprocess.Popen[bytes] | None = None
        self.daemon_cpu = 0.0

    def __enter__(self) -> DriveMount:
        exe = build(self.bin_dir)
        if os.path.ismount(self.mountpoint):
            _unmount(self.mountpoint)
        self.backing.mkdir(parents=True, exist_ok=True)
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                str(exe),
                f"--source={self.backing}",
                f"--latency-ms={self.latency_ms}",
                f"--bandwidth-mbps={self.bandwidth_mbps}",
                str(self.mountpoint),
                "-f",
                "-o",
                "fsname=drivefs,subtype=drivefs",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 10
        while not os.path.ismount(self.mountpoint):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(f"drivefs did not mount: {err.strip()}")
            time.sleep(0.05)
        return self

    def stats(self) -> dict[str, float]:
        """The daemon's counters plus its CPU seconds so far."""
        out: dict[str, float] = {}
        try:
            for line in (self.mountpoint / ".drivefs_stats").read_text().splitlines():
                k, v = line.split()
                out[k] = float(v)
        except OSError:
            pass
        if self.proc is not None:
            try:
                fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
                tick = os.sysconf("SC_CLK_TCK")
                out["cpu_s"] = (int(fields[11]) + int(fields[12])) / tick
            except (OSError, IndexError, ValueError):
                pass
        return out

    def __exit__(self, *exc: object) -> None:
        _unmount(self.mountpoint)
        if self.proc is None:
            return
        self.daemon_cpu = reap(self.proc)
