"""A reader of an S3 store needs only a read-only credential.

:class:`~tests.backends.s3_tools.ReadOnlyS3Proxy` stands in front of the loopback S3
server as such a credential would: reads go through to the server, and every write gets
S3's ``403 AccessDenied``. Through it, the CLI (a real process) clones, checks out, lists
and verifies, sending no write at all; a commit fails with exit 8 and one line saying
permission was denied.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import cas
from tests.assets import assert_same_tree, snapshot_tree
from tests.backends.s3_tools import ReadOnlyS3Proxy
from tests.conftest import S3_REGION, SMALL_CHUNKER, S3Server
from tests.stores import S3Store

pytestmark = pytest.mark.s3


@pytest.fixture
def proxy(s3_server: S3Server) -> Iterator[ReadOnlyS3Proxy]:
    with ReadOnlyS3Proxy(s3_server.endpoint) as p:
        yield p


@pytest.fixture
def store(s3_server: S3Server, s3_env: None, tmp_path: Path) -> tuple[S3Store, dict]:
    """A store with one commit (tag v1), written with full access."""
    store = S3Store(s3_server, s3_server.new_bucket())
    wt = tmp_path / "writer"
    wt.mkdir()
    (wt / "a.bin").write_bytes(os.urandom(200_000))
    (wt / "d").mkdir()
    (wt / "d" / "b.txt").write_text("hello\n")
    with cas.init(store.location, wt, progress=False, chunker=SMALL_CHUNKER) as repo:
        repo.commit("v1", tag="v1")
    return store, snapshot_tree(wt)


def _read_only_url(store: S3Store, proxy: ReadOnlyS3Proxy) -> str:
    return f"s3://{store.bucket}/{store.prefix}?endpoint={proxy.endpoint}&region={S3_REGION}"


def _cas(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cas_cli", "--cache-dir", str(tmp_path / "cache"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ.copy(),
    )


def test_the_proxy_refuses_writes_the_way_s3_does(
    store: tuple[S3Store, dict], proxy: ReadOnlyS3Proxy
) -> None:
    import boto3
    import botocore.exceptions

    s3, _snap = store
    client = boto3.client("s3", endpoint_url=proxy.endpoint, region_name=S3_REGION)
    assert client.get_object(Bucket=s3.bucket, Key="store/config")["Body"].read()
    with pytest.raises(botocore.exceptions.ClientError) as ei:
        client.put_object(Bucket=s3.bucket, Key="store/x", Body=b"x")
    assert ei.value.response["Error"]["Code"] == "AccessDenied"
    assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert proxy.writes == [f"PUT /{s3.bucket}/store/x"]


def test_every_read_command_works_with_a_read_only_credential(
    store: tuple[S3Store, dict], proxy: ReadOnlyS3Proxy, tmp_path: Path
) -> None:
    s3, snap = store
    before = s3.fingerprint()
    dest = tmp_path / "reader"
    r = _cas(tmp_path, "clone", _read_only_url(s3, proxy), str(dest), "--ref", "v1")
    assert r.returncode == 0, r.stderr
    assert_same_tree(snap, dest)
    (dest / "a.bin").unlink()
    for args in (
        ["log"],
        ["ls", "v1"],
        ["status"],
        ["du"],
        ["verify"],
        ["verify", "--read-data"],
        ["show", "v1"],
        ["tag"],
        ["branch"],
        ["checkout", "--force", "v1"],
    ):
        r = _cas(tmp_path, "-C", str(dest), *args)
        assert r.returncode == 0, (args, r.stderr)
    assert_same_tree(snap, dest)
    assert proxy.reads  # everything went through the read-only door ...
    assert proxy.writes == []  # ... and nothing tried to write
    assert s3.fingerprint() == before


def test_commit_with_a_read_only_credential_is_permission_denied(
    store: tuple[S3Store, dict], proxy: ReadOnlyS3Proxy, tmp_path: Path
) -> None:
    s3, _snap = store
    dest = tmp_path / "reader"
    r = _cas(tmp_path, "clone", _read_only_url(s3, proxy), str(dest))
    assert r.returncode == 0, r.stderr
    before = s3.fingerprint()
    (dest / "new.bin").write_bytes(os.urandom(50_000))
    r = _cas(tmp_path, "-C", str(dest), "commit", "-m", "x")
    assert r.returncode == 8, r.stderr
    lines = r.stderr.splitlines()
    assert lines[0].startswith("error: permission denied: write ")
    assert lines[0].endswith("(AccessDenied)")
    assert [line for line in lines[1:] if not line.startswith("hint: ")] == []
    assert "Traceback" not in r.stderr
    assert proxy.writes  # it tried, and was refused: nothing changed
    assert s3.fingerprint() == before
