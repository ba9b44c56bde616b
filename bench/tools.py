"""The tools under test, each as the commands a user would type.

Every tool gets its own store folder on the remote (local disk, or the Drive-like FUSE
mount) or its own prefix in the S3 remote's bucket, its own worktree, and for restores an
empty cache folder. A tool is a small class
whose methods return the argv of one operation; the runner times them.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from .measure import tool_version
from .s3 import S3Loc, child_env

BENCH_PKG_PARENT = Path(__file__).resolve().parent.parent


@dataclass
class Place:
    """Where one tool works in one run."""

    store: Path  # on the remote
    work: Path  # the worktree that is committed (v1, then v2)
    restore: Path  # the folder restore_v1 fills and switch moves to v2
    cache: Path  # the tool's normal local cache (commits)
    fresh_cache: Path  # an empty cache for restore and switch
    scratch: Path  # anything else the tool needs on local disk
    s3: S3Loc | None = None  # on the S3 remote: the tool's prefix there (store is unused)


def sh(script: str) -> list[str]:
    return ["bash", "-o", "pipefail", "-ec", script]


def q(p: Path | str) -> str:
    return shlex.quote(str(p))


def s3_cmd(p: Place, op: str, name: str) -> str:
    """The shell words of bench/s3.py moving one object of the tool's prefix."""
    assert p.s3 is not None
    args = [sys.executable, "-m", "bench.s3", op, p.s3.endpoint, p.s3.bucket, p.s3.key(name)]
    return " ".join(q(a) for a in args)


def bench_env(p: Place) -> dict[str, str]:
    """os.environ with bench importable, and on S3 the pinned credentials."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(BENCH_PKG_PARENT)
    return child_env(env) if p.s3 else env


class Tool:
    name = ""
    label = ""
    modes_matter = False  # whether a restore must reproduce file modes to count
    skip_top: tuple[str, ...] = ()  # top-level names the tool keeps in a worktree

    def available(self) -> str | None:
        """None if usable, else why not."""
        return None

    def unsupported(self, remote: str) -> str | None:
        """None if the tool runs on that remote, else why not."""
        return None

    def version(self) -> str:
        return ""

    def env(self, p: Place) -> dict[str, str]:
        return dict(os.environ)

    def setup(self, p: Place) -> list[list[str]]:
        """Untimed commands before the first commit."""
        return []

    def commit(self, p: Place, version: str, again: bool = False) -> list[str]:
        raise NotImplementedError

    def restore_v1(self, p: Place) -> list[str]:
        raise NotImplementedError

    def switch_v2(self, p: Place) -> list[str]:
        raise NotImplementedError


class Cas(Tool):
    name = "cas"
    label = "cas"
    modes_matter = True
    skip_top = (".cas",)

    def _cas(self) -> list[str]:
        exe = shutil.which("cas")
        return [exe] if exe else [sys.executable, "-m", "cas_cli"]

    def version(self) -> str:
        """cas's version and the commit it runs from (an editable install runs the tree)."""
        v = tool_version([*self._cas(), "--version"])
        try:
            import cas

            src = Path(cas.__file__).resolve().parent.parent
            git = ["git", "-C", str(src)]
            head = subprocess.run(
                [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
            ).stdout.strip()
            dirty = subprocess.run(
                [*git, "status", "--porcelain", "--", "cas", "cli"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
            v += f" at {head}" + (" + uncommitted changes in cas/ or cli/" if dirty else "")
        except (ImportError, OSError, subprocess.CalledProcessError):
            pass
        return v

    def env(self, p: Place) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("CAS_CACHE_DIR", None)
        return child_env(env) if p.s3 else env

    def _store(self, p: Place) -> str:
        return p.s3.cas_url() if p.s3 else str(p.store)

    def setup(self, p: Place) -> list[list[str]]:
        cas = [*self._cas(), "-q", "--cache-dir", str(p.cache)]
        return [[*cas, "init", self._store(p), str(p.work)]]

    def commit(self, p: Place, version: str, again: bool = False) -> list[str]:
        argv = [*self._cas(), "-q", "--cache-dir", str(p.cache), "-C", str(p.work), "commit"]
        if again:
            return [*argv, "-m", f"{version} again"]
        return [*argv, "-m", version, "--tag", version]

    def restore_v1(self, p: Place) -> list[str]:
        cas = [*self._cas(), "-q", "--cache-dir", str(p.fresh_cache)]
        return [*cas, "clone", self._store(p), str(p.restore), "--ref", "v1"]

    def switch_v2(self, p: Place) -> list[str]:
        cas = [*self._cas(), "-q", "--cache-dir", str(p.fresh_cache), "-C", str(p.restore)]
        return [*cas, "checkout", "v2"]


class TarGz(Tool):
    """The blog workflow: Python tarfile gzip into the store folder, copy back + extract."""

    name = "targz"
    label = "tar.gz (blog)"

    def version(self) -> str:
        import zlib

        return f"Python tarfile + zlib {zlib.ZLIB_RUNTIME_VERSION}, level 6"

    def _blog(self, *args: object) -> list[str]:
        return [sys.executable, "-m", "bench.blog", *(str(a) for a in args)]

    def env(self, p: Place) -> dict[str, str]:
        return bench_env(p)

    def setup(self, p: Place) -> list[list[str]]:
        return [] if p.s3 else [["mkdir", "-p", str(p.store)]]

    def commit(self, p: Place, version: str, again: bool = False) -> list[str]:
        name = f"assets-{version}.tar.gz"
        if p.s3:  # tar czf - | aws s3 cp - s3://...
            blog = " ".join(q(a) for a in self._blog("save", p.work, "-"))
            return sh(f"{blog} | {s3_cmd(p, 'put', name)}")
        return self._blog("save", p.work, p.store / name)

    def _get(self, p: Place, op: str, version: str) -> list[str]:
        name = f"assets-{version}.tar.gz"
        if p.s3:  # download the object to local disk, then extract
            return self._blog(f"{op}-s3", p.s3.endpoint, p.s3.bucket, p.s3.key(name), p.restore)
        return self._blog(op, p.store / name, p.restore)

    def restore_v1(self, p: Place) -> list[str]:
        return self._get(p, "restore", "v1")

    def switch_v2(self, p: Place) -> list[str]:
        return self._get(p, "switch", "v2")


class TarZstd(Tool):
    """tar -cf - | zstd -T0 (level 3) straight into the store folder; restore streams it."""

    name = "tarzstd"
    label = "tar | zstd -T0"

    def available(self) -> str | None:
        return None if shutil.which("zstd") else "zstd not installed (apt-get install zstd)"

    def version(self) -> str:
        zstd = tool_version(["zstd", "--version"]).strip("* ")
        return zstd + "; " + tool_version(["tar", "--version"])

    def env(self, p: Place) -> dict[str, str]:
        return bench_env(p)

    def setup(self, p: Place) -> list[list[str]]:
        return [] if p.s3 else [["mkdir", "-p", str(p.store)]]

    def commit(self, p: Place, version: str, again: bool = False) -> list[str]:
        tar = f"tar -C {q(p.work)} -cf - ."
        if p.s3:  # streamed into one object by a multipart upload
            return sh(f"{tar} | zstd -T0 -q -c | {s3_cmd(p, 'put', f'assets-{version}.tar.zst')}")
        out = p.store / f"assets-{version}.tar.zst"
        return sh(
            f"{tar} | zstd -T0 -q -f -o {q(str(out) + '.partial')}"
            f" && mv -f {q(str(out) + '.partial')} {q(out)}"
        )

    def _extract(self, p: Place, version: str) -> str:
        name = f"assets-{version}.tar.zst"
        src = f"{s3_cmd(p, 'get', name)} | zstd -dcq" if p.s3 else f"zstd -dcq {q(p.store / name)}"
        return f"mkdir -p {q(p.restore)} && {src} | tar -xf - -C {q(p.restore)}"

    def restore_v1(self, p: Place) -> list[str]:
        return sh(self._extract(p, "v1"))

    def switch_v2(self, p: Place) -> list[str]:
        return sh(f"rm -rf {q(p.restore)} && {self._extract(p, 'v2')}")


class Restic(Tool):
    name = "restic"
    label = "restic"

    def available(self) -> str | None:
        return None if shutil.which("restic") else "restic not installed (apt-get install restic)"

    def version(self) -> str:
        return tool_version(["restic", "version"])

    def env(self, p: Place) -> dict[str, str]:
        env = dict(os.environ)
        repo = p.s3.restic_repo() if p.s3 else str(p.store)
        env.update(RESTIC_PASSWORD="bench", RESTIC_REPOSITORY=repo)
        return child_env(env) if p.s3 else env

    def setup(self, p: Place) -> list[list[str]]:
        return [["restic", "-q", "--cache-dir", str(p.cache), "init"]]

    def commit(self, p: Place, version: str, again: bool = False) -> list[str]:
        # From inside the worktree, "." is stored as the snapshot's root; the parent
        # snapshot (same host and path) lets restic skip unchanged files.
        return sh(
            f"cd {q(p.work)} && restic -q --cache-dir {q(p.cache)}"
            f" backup --host bench --tag {version} ."
        )

    def restore_v1(self, p: Place) -> list[str]:
        return [
            "restic", "-q", "--cache-dir", str(p.fresh_cache),
            "restore", "latest", "--host", "bench", "--tag", "v1", "--target", str(p.restore),
        ]  # fmt: skip

    def switch_v2(self, p: Place) -> list[str]:
        # restic 0.14 restore neither skips correct files nor deletes extra ones: the
        # folder is emptied first (newer restic has --overwrite if-changed and --delete).
        return sh(
            f"rm -rf {q(p.restore)} && restic -q --cache-dir {q(p.fresh_cache)} restore latest"
            f" --host bench --tag v2 --target {q(p.restore)}"
        )


class Borg(Tool):
    name = "borg"
    label = "borg"

    def available(self) -> str | None:
        return None if shutil.which("borg") else "borg not installed (apt-get install borgbackup)"

    def unsupported(self, remote: str) -> str | None:
        if remote == "s3":
            return "borg has no S3 backend (only local paths and ssh://); not run on S3"
        return None

    def version(self) -> str:
        return tool_version(["borg", "--version"]) + " (compression lz4, the default)"

    def env(self, p: Place) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            BORG_REPO=str(p.store),
            BORG_BASE_DIR=str(p.scratch / "borg-base"),
            BORG_CACHE_DIR=str(p.cache),
            BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK="yes",
            BORG_RELOCATED_REPO_ACCESS_IS_OK="yes",
        )
        return env

    def setup(self, p: Place) -> list[list[str]]:
        return [["borg", "init", "--encryption=none"]]

    def commit(self, p: Place, version: str, again: bool = False) -> list[str]:
        name = f"{version}-again" if again else version
        return sh(f"cd {q(p.work)} && borg create ::{name} .")

    def restore_v1(self, p: Place) -> list[str]:
        return sh(
            f"mkdir -p {q(p.restore)} && cd {q(p.restore)}"
            f" && BORG_CACHE_DIR={q(p.fresh_cache)} borg extract ::v1"
        )

    def switch_v2(self, p: Place) -> list[str]:
        # borg extract overwrites every file and never deletes: empty the folder first.
        return sh(
            f"rm -rf {q(p.restore)} && mkdir -p {q(p.restore)} && cd {q(p.restore)}"
            f" && BORG_CACHE_DIR={q(p.fresh_cache)} borg extract ::v2"
        )


TOOLS: dict[str, Tool] = {t.name: t for t in (Cas(), TarGz(), TarZstd(), Restic(), Borg())}
