"""Shared fixtures: a hermetic environment, small store parameters, hypothesis profiles."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from cas.chunking import ChunkerParams

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


@pytest.fixture
def small_chunker() -> ChunkerParams:
    """FastCDC parameters for tests: ~5 KiB chunks."""
    return SMALL_CHUNKER


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    """A fresh local cache folder."""
    return tmp_path / "cache"
