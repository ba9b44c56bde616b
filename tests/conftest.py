"""Shared fixtures: a hermetic environment, small store parameters, hypothesis profiles."""

from __future__ import annotations

import itertools
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from cas.chunking import ChunkerParams
from tests.stores import KINDS, FolderStore, S3Store, StoreUnderTest

# The Ctrl-C tests send SIGINT to this process. A suite started in the background by a
# non-interactive shell (nohup, `&`) inherits SIGINT ignored, and Python keeps it so.
signal.signal(signal.SIGINT, signal.default_int_handler)

settings.register_profile("default", max_examples=100, deadline=None)
settings.register_profile(
    "ci",
    max_examples=200,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("nightly", max_examples=5000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

# Small chunks and packs so that little data still makes many chunks and several packs.
SMALL_CHUNKER = ChunkerParams(min=1024, avg=4096, max=16384)
SMALL_PACK = 64 * 1024


@pytest.fixture(autouse=True)
def clean_env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No CAS_* variables, HOME and XDG folders in a temp dir."""
    home = tmp_path_factory.mktemp("home")
    for name in list(os.environ):
        if name.startswith("CAS_") and name != "CAS_TEST_REQUIRE":
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    return home


# ---------------------------------------------------------------------------- S3 (moto)

S3_REGION = "us-east-1"
S3_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def required(name: str) -> bool:
    """True when CAS_TEST_REQUIRE names ``name``: then a skip of it is a failure (CI)."""
    return name in os.environ.get("CAS_TEST_REQUIRE", "").split(",")


@dataclass
class S3Server:
    """A real S3-protocol server (moto) on 127.0.0.1, and a raw boto3 client for it."""

    endpoint: str
    client: Any

    def new_bucket(self) -> str:
        name = f"cas-test-{next(_BUCKETS)}"
        self.client.create_bucket(Bucket=name)
        return name

    def url(self, bucket: str, prefix: str = "store") -> str:
        """A store location for cas (endpoint and region pinned in the URL)."""
        return f"s3://{bucket}/{prefix}?endpoint={self.endpoint}&region={S3_REGION}"


_BUCKETS = itertools.count(1)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """moto's threaded server on a free port, for the whole session."""
    try:
        import boto3
        from moto.server import ThreadedMotoServer
    except ImportError as exc:  # pragma: no cover - the test extra installs both
        if required("s3"):
            pytest.fail(f"CAS_TEST_REQUIRE=s3 but the S3 test server is missing: {exc}")
        pytest.skip(f"moto[server] and boto3 are needed for S3 tests: {exc}")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    client = boto3.client("s3", endpoint_url=endpoint, region_name=S3_REGION, **S3_CREDENTIALS)
    yield S3Server(endpoint, client)
    server.stop()


def set_s3_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Throwaway credentials in the environment (boto3 reads them; cas never does)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", S3_CREDENTIALS["aws_access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", S3_CREDENTIALS["aws_secret_access_key"])
    monkeypatch.setenv("AWS_DEFAULT_REGION", S3_REGION)
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)


@pytest.fixture
def s3_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Throwaway credentials in the environment for this test."""
    set_s3_env(monkeypatch)


# ---------------------------------------------------------------------------- stores


@pytest.fixture(scope="session", params=[KINDS[0], pytest.param(KINDS[1], marks=pytest.mark.s3)])
def store_kind(request: pytest.FixtureRequest) -> str:
    """Each test that asks for a store runs once on a folder and once on the S3 server."""
    return str(request.param)


@pytest.fixture
def new_store(store_kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> StoreUnderTest:
    """Where this test may create a store of its own (nothing there yet)."""
    if store_kind == "s3":
        request.getfixturevalue("s3_env")
    return empty_store(store_kind, tmp_path / "store", request)


def empty_store(kind: str, folder: Path, request: pytest.FixtureRequest) -> StoreUnderTest:
    """A place for a new store: ``folder``, or a new bucket on the loopback S3 server."""
    if kind == "s3":
        server = request.getfixturevalue("s3_server")
        return S3Store(server, server.new_bucket())
    return FolderStore(folder)


@pytest.fixture
def small_chunker() -> ChunkerParams:
    """FastCDC parameters for tests: ~5 KiB chunks."""
    return SMALL_CHUNKER


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    """A fresh local cache folder."""
    return tmp_path / "cache"
