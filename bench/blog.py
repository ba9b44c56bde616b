"""The workflow cas replaces, as blog posts describe it for Colab: tar.gz the whole asset
folder into the Drive folder on every save; at the start of every session copy the one
archive back to the local disk and extract it.

    python -m bench.blog save SRC ARCHIVE       # Python tarfile, gzip level 6 (tar czf's)
    python -m bench.blog restore ARCHIVE DEST   # copy back to local disk, then extract
    python -m bench.blog switch ARCHIVE DEST    # delete DEST, then restore

On the S3 remote the archive is one object (``tar czf - | aws s3 cp - s3://...``):

    python -m bench.blog save SRC - | python -m bench.s3 put ENDPOINT BUCKET KEY
    python -m bench.blog restore-s3 ENDPOINT BUCKET KEY DEST  # download to local disk, extract
    python -m bench.blog switch-s3 ENDPOINT BUCKET KEY DEST   # delete DEST, then restore-s3

Run as a child process of the benchmark so its CPU time and peak RSS are its own.
"""

from __future__ import annotations

import os
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path


def save(src: Path, archive: Path) -> None:
    if str(archive) == "-":  # to stdout, for an upload: same gzip level, no seeks
        with tarfile.open(fileobj=sys.stdout.buffer, mode="w:gz", compresslevel=6) as tar:
            for name in sorted(os.listdir(src)):
                tar.add(src / name, arcname=name)
        sys.stdout.buffer.flush()
        return
    tmp = archive.with_name(archive.name + ".partial")
    with tarfile.open(tmp, "w:gz", compresslevel=6) as tar:
        for name in sorted(os.listdir(src)):
            tar.add(src / name, arcname=name)
    os.replace(tmp, archive)


def restore(archive: Path | tuple[str, str, str], dest: Path) -> None:
    """archive: a path, or (endpoint, bucket, key) of an object on the S3 remote."""
    dest.mkdir(parents=True, exist_ok=True)
    fd, local = tempfile.mkstemp(suffix=".tar.gz", dir=dest.parent)
    os.close(fd)
    try:
        if isinstance(archive, tuple):
            from bench import s3

            with open(local, "wb") as f:
                s3.download(*archive, f)
        else:
            shutil.copyfile(archive, local)
        with tarfile.open(local, "r:gz") as tar:
            if hasattr(tarfile, "fully_trusted_filter"):
                tar.extractall(dest, filter="fully_trusted")
            else:  # pragma: no cover - Python < 3.11.4
                tar.extractall(dest)
    finally:
        os.unlink(local)


def switch(archive: Path | tuple[str, str, str], dest: Path) -> None:
    shutil.rmtree(dest, ignore_errors=True)
    restore(archive, dest)


def main(argv: list[str]) -> int:
    if len(argv) == 5 and argv[0] in ("restore-s3", "switch-s3"):
        fn = restore if argv[0] == "restore-s3" else switch
        fn((argv[1], argv[2], argv[3]), Path(argv[4]))
        return 0
    if len(argv) != 3 or argv[0] not in ("save", "restore", "switch"):
        print(__doc__, file=sys.stderr)
        return 2
    {"save": save, "restore": restore, "switch": switch}[argv[0]](Path(argv[1]), Path(argv[2]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
