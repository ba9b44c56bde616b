"""Fixtures for crash tests: a store with v1 and a worktree changed towards v2."""

from __future__ import annotations

import hashlib
import os
import random
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import cas
from tests.conftest import SMALL_CHUNKER
from tests.stores import StoreUnderTest

DRIVER = Path(__file__).with_name("driver.py")
PACK = 256 * 1024  # small packs: a commit writes many, so checkpoints happen


def digest(root: Path) -> dict[str, tuple[str, int, str]]:
    """path → (kind, mode, content hash or link target) for everything but ``.cas``."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not (Path(dirpath) == root and d == ".cas")]
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = p.relative_to(root).as_posix()
            st = p.lstat()
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", 0, os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", stat.S_IMODE(st.st_mode), "")
            else:
                out[rel] = (
                    "file",
                    stat.S_IMODE(st.st_mode),
                    hashlib.blake2b(p.read_bytes(), digest_size=16).hexdigest(),
                )
    return out


def write_v1(root: Path, rng: random.Random) -> None:
    for cls in ("a", "b", "c"):
        (root / "img" / cls).mkdir(parents=True, exist_ok=True)
        for i in range(30):
            (root / "img" / cls / f"{i}.bin").write_bytes(rng.randbytes(rng.randint(500, 20_000)))
    (root / "weights.bin").write_bytes(rng.randbytes(3 << 20))
    (root / "empty").mkdir(exist_ok=True)
    (root / "run.sh").write_text("#!/bin/sh\n")
    (root / "run.sh").chmod(0o755)
    os.symlink("weights.bin", root / "link")


def change_to_v2(root: Path, rng: random.Random) -> None:
    for i in range(30, 40):
        (root / "img" / "a" / f"{i}.bin").write_bytes(rng.randbytes(rng.randint(500, 20_000)))
    (root / "img" / "b" / "0.bin").unlink()
    with open(root / "weights.bin", "r+b") as f:
        f.seek(1 << 20)
        f.write(rng.randbytes(300_000))
    (root / "new.bin").write_bytes(rng.randbytes(2 << 20))


@dataclass
class Scene:
    """A store (a folder, or a prefix on the loopback S3 server) whose main branch is at
    v1, and a worktree with v2's changes."""

    store: StoreUnderTest
    wt: Path
    v1: dict[str, tuple[str, int, str]]
    v2: dict[str, tuple[str, int, str]]
    tmp: Path

    def cas(self, *args: str, crash: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run the CLI in a subprocess; with ``crash``, killed at that crash point."""
        cmd = [sys.executable, "-m", "cas_cli"]
        if crash is not None or os.environ.get("CAS_TEST_FSTYPE"):
            cmd = [sys.executable, str(DRIVER), crash or "none", "exit", "--"]
        return subprocess.run(
            [*cmd, "-C", str(self.wt), *args],
            capture_output=True,
            text=True,
            timeout=300,
            env=os.environ.copy(),
        )

    def clone_digest(self, ref: str, name: str) -> dict[str, tuple[str, int, str]]:
        """Clone ``ref`` into a new folder with a new cache; return its digest."""
        dest = self.tmp / name
        repo = cas.clone(
            self.store.location, dest, ref=ref, cache_dir=self.tmp / f"cache-{name}", progress=False
        )
        repo.close()
        return digest(dest)

    def verify_problems(self) -> list[str]:
        """Problems ``verify --read-data`` finds (orphan packs are not problems)."""
        with cas.open(self.wt, progress=False) as repo:
            report = repo.verify(read_data=True)
        return [str(p) for p in report.problems]


@pytest.fixture
def scene(new_store: StoreUnderTest, tmp_path: Path) -> Scene:
    rng = random.Random(1234)
    wt = tmp_path / "wt"
    wt.mkdir()
    write_v1(wt, rng)
    v1 = digest(wt)
    with cas.init(
        new_store.location, wt, progress=False, chunker=SMALL_CHUNKER, pack_size=PACK
    ) as repo:
        repo.commit("v1", tag="v1")
    change_to_v2(wt, rng)
    return Scene(new_store, wt, v1, digest(wt), tmp_path)
