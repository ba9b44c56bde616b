"""The S3 remote: a real S3-protocol server (moto, bench/s3server.py) on 127.0.0.1 in its
own process, one fresh bucket per run, pinned throwaway credentials in the children's
environment only; and the one-object upload/download helper of the archive baselines.

    python -m bench.s3 put ENDPOINT BUCKET KEY < archive   # multipart upload from stdin
    python -m bench.s3 get ENDPOINT BUCKET KEY > archive   # one streamed GET

The upload is boto3's managed transfer (upload_fileobj: 8 MiB parts, up to 10 in
flight), what ``aws s3 cp - s3://...`` does, without the aws CLI. The download is one
GET streamed to stdout, not boto3's parallel ranged download: moto answers every ranged
GET by reading the whole object, so 8 MiB ranges of a 400 MB archive would cost the
server O(size²) and measure moto rather than the tool (a real S3 serves ranges cheaply;
on loopback one stream is as fast as several). Credentials come from the environment that
:func:`child_env` builds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.measure import reap

REGION = "us-east-1"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
PART = 8 << 20  # boto3's default multipart chunk and threshold, spelled out
BENCH_PKG_PARENT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class S3Loc:
    """A tool's place on the S3 remote: s3://bucket/prefix at endpoint."""

    endpoint: str  # http://127.0.0.1:PORT
    bucket: str
    prefix: str  # no slashes at either end

    def cas_url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}?endpoint={self.endpoint}&region={REGION}"

    def restic_repo(self) -> str:
        return f"s3:{self.endpoint}/{self.bucket}/{self.prefix}"

    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}"


def child_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a child on the S3 remote: pinned credentials and region, and no
    AWS configuration of this machine (files, profile, endpoint overrides, instance role)."""
    env = dict(os.environ if base is None else base)
    for name in list(env):
        if name.startswith("AWS_"):
            del env[name]
    env.update(CREDENTIALS)
    env.update(
        AWS_DEFAULT_REGION=REGION,
        AWS_REGION=REGION,
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_EC2_METADATA_DISABLED="true",
    )
    return env


def client(endpoint: str, *, max_pool: int = 10) -> Any:
    """A boto3 S3 client for the bench server that reads nothing of this machine's AWS
    configuration (the credentials are passed, the config files are /dev/null)."""
    import boto3
    import botocore.config
    import botocore.session

    core = botocore.session.Session()
    core.set_config_variable("config_file", os.devnull)
    core.set_config_variable("credentials_file", os.devnull)
    session = boto3.session.Session(
        botocore_session=core,
        aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        region_name=REGION,
    )
    cfg = botocore.config.Config(
        s3={"addressing_style": "path"},
        max_pool_connections=max_pool,
        retries={"max_attempts": 3, "mode": "standard"},
    )
    return session.client("s3", endpoint_url=endpoint, config=cfg)


def _proc_cpu(pid: int) -> float | None:
    """user + system CPU seconds of a live process, every thread (from /proc/PID/stat)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


class S3Server:
    """``with S3Server(log) as s3:`` — moto on 127.0.0.1, a fresh bucket, counters."""

    def __init__(self, log: Path | None = None, bucket: str = "cas-bench") -> None:
        self.log = log
        self.bucket = bucket
        self.proc: subprocess.Popen[bytes] | None = None
        self.endpoint = ""
        self.server_cpu = 0.0
        self._client: Any = None

    def __enter__(self) -> S3Server:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(BENCH_PKG_PARENT) + os.pathsep + env.get("PYTHONPATH", "")
        err = open(self.log, "ab") if self.log else subprocess.DEVNULL
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "bench.s3server", "--port", "0"]
                + (["--trace"] if self.log else []),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=err,
                env=env,
                cwd=BENCH_PKG_PARENT,
                start_new_session=True,
            )
        finally:
            if self.log:
                err.close()  # type: ignore[union-attr]
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode().strip()  # the port, once it listens
        if not line.isdigit():
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError(f"the S3 server did not start (see {self.log}): {line!r}")
        self.endpoint = f"http://127.0.0.1:{int(line)}"
        self._client = client(self.endpoint)
        self._client.create_bucket(Bucket=self.bucket)
        return self

    def mark(self, text: str) -> None:
        """A line in the server's trace (between the steps' requests)."""
        if self.log:
            with open(self.log, "a") as f:
                f.write(f"=== {text}\n")

    def loc(self, prefix: str) -> S3Loc:
        return S3Loc(self.endpoint, self.bucket, prefix.strip("/"))

    def stats(self) -> dict[str, float]:
        """The server's request counters and its CPU seconds so far."""
        out: dict[str, float] = {}
        try:
            url = self.endpoint + "/__bench_stats__"
            with urllib.request.urlopen(url, timeout=30) as r:
                out.update({k: float(v) for k, v in json.load(r).items()})
        except OSError:
            pass
        if self.proc is not None:
            cpu = _proc_cpu(self.proc.pid)
            if cpu is not None:
                out["cpu_s"] = cpu
        return out

    def usage(self, prefix: str) -> tuple[int, int]:
        """Bytes and objects under prefix/ (a listing of the bucket)."""
        total = count = 0
        pages = self._client.get_paginator("list_objects_v2")
        for page in pages.paginate(Bucket=self.bucket, Prefix=prefix.strip("/") + "/"):
            for obj in page.get("Contents", []):
                total += int(obj["Size"])
                count += 1
        return total, count

    def clear(self, prefix: str) -> None:
        """Delete every object under prefix/ (the server keeps them in memory and /tmp)."""
        pages = self._client.get_paginator("list_objects_v2")
        for page in pages.paginate(Bucket=self.bucket, Prefix=prefix.strip("/") + "/"):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                self._client.delete_objects(Bucket=self.bucket, Delete={"Objects": keys})
        # Multipart uploads a killed tool left open hold their parts too.
        ups = self._client.list_multipart_uploads(Bucket=self.bucket, Prefix=prefix + "/")
        for u in ups.get("Uploads", []):
            self._client.abort_multipart_upload(
                Bucket=self.bucket, Key=u["Key"], UploadId=u["UploadId"]
            )

    def version(self) -> str:
        try:
            import moto

            return f"moto {moto.__version__} (werkzeug, threaded) on 127.0.0.1"
        except ImportError:
            return "moto"

    def __exit__(self, *exc: object) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        self.server_cpu = reap(self.proc)
        if self.proc.stdout:
            self.proc.stdout.close()


def available() -> str | None:
    """None if the S3 remote can run here, else why not."""
    try:
        import boto3  # noqa: F401
        import moto.moto_server.werkzeug_app  # noqa: F401
    except ImportError as e:
        return f"the S3 remote needs moto[server] and boto3 (pip install 'moto[server]'): {e}"
    return None


# --- the archive baselines' helper (a child process) ------------------------------------


def transfer_config() -> Any:
    from boto3.s3.transfer import TransferConfig

    return TransferConfig(multipart_threshold=PART, multipart_chunksize=PART, max_concurrency=10)


def put(endpoint: str, bucket: str, key: str) -> None:
    client(endpoint).upload_fileobj(sys.stdin.buffer, bucket, key, Config=transfer_config())


def download(endpoint: str, bucket: str, key: str, out: Any) -> None:
    """One GET of the whole object, streamed into the binary file out in 1 MiB pieces."""
    body = client(endpoint).get_object(Bucket=bucket, Key=key)["Body"]
    for piece in body.iter_chunks(1 << 20):
        out.write(piece)
    out.flush()


def get(endpoint: str, bucket: str, key: str) -> None:
    download(endpoint, bucket, key, sys.stdout.buffer)


def main(argv: list[str]) -> int:
    if len(argv) != 4 or argv[0] not in ("put", "get"):
        print(__doc__, file=sys.stderr)
        return 2
    {"put": put, "get": get}[argv[0]](*argv[1:])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
