"""Store locations: plain paths and ``file:`` URLs (RFC 8089) become absolute folders;
other schemes are refused with a way forward; ``s3://`` needs the optional boto3."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import cas
from cas.errors import RepositoryError
from cas.store import LocalDirBackend, open_backend, parse_file_url, resolve_location


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working directory for the test."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return cwd


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("relstore", "{cwd}/relstore"),
        ("./a/../relstore/", "{cwd}/relstore"),
        ("~/stores/x", "{home}/stores/x"),
        ("/abs/store", "/abs/store"),
        ("file:///abs/store", "/abs/store"),
        ("file:///abs/my%20store", "/abs/my store"),
        ("file:///abs/caf%C3%A9/%25", "/abs/café/%"),
        ("file://localhost/abs/store", "/abs/store"),
        ("file://LocalHost/abs/store", "/abs/store"),
        ("FILE:///abs/store", "/abs/store"),
        ("file:/abs/store", "/abs/store"),  # no authority (RFC 8089 §2)
        ("file:///abs/a/../store/", "/abs/store"),
        ("/abs/with://inside", "/abs/with:/inside"),  # a path, not a URL
        ("s3://bucket/prefix?region=eu-west-1", "s3://bucket/prefix?region=eu-west-1"),
    ],
)
def test_locations_resolve_to_absolute_folders(
    location: str, expected: str, elsewhere: Path, clean_env: Path
) -> None:
    resolved = resolve_location(location)
    assert resolved == expected.format(cwd=elsewhere, home=clean_env)
    if not resolved.startswith("s3://"):
        assert os.path.isabs(resolved)


@pytest.mark.parametrize(
    ("location", "message"),
    [
        ("file://relstore", "names the host 'relstore'"),
        ("file://relstore/sub", "names the host 'relstore'"),
        ("file://example.com/abs/store", "names the host 'example.com'"),
        ("file://user@localhost/abs", "names the host 'user@localhost'"),
        ("file:relstore", "has a relative path"),
        ("file:", "has a relative path"),
        ("file:///abs/store?x=1", "has a query or fragment"),
        ("file:///abs/store#frag", "has a query or fragment"),
        ("file:///abs/%00store", "has a NUL"),
    ],
)
def test_bad_file_urls_are_refused_with_a_hint(
    location: str, message: str, elsewhere: Path
) -> None:
    with pytest.raises(RepositoryError, match=message) as ei:
        open_backend(location)
    assert "file:///ABSOLUTE/PATH" in ei.value.hint
    assert list(elsewhere.iterdir()) == []  # no ./relstore, no ./localhost
    with pytest.raises(RepositoryError):
        resolve_location(location)


def test_parse_file_url_refuses_other_schemes() -> None:
    with pytest.raises(RepositoryError, match="not a file URL"):
        parse_file_url("/abs/store")


def test_a_file_url_opens_the_folder_it_names(tmp_path: Path, elsewhere: Path) -> None:
    store = tmp_path / "my store"
    backend = open_backend(f"file://localhost{str(store).replace(' ', '%20')}", retry=False)
    assert isinstance(backend, LocalDirBackend)
    assert backend.location == str(store)
    backend.write("config", b"c")
    assert (store / "config").read_bytes() == b"c"
    assert list(elsewhere.iterdir()) == []  # not ./localhost/…, not ./my%20store


def test_a_worktree_on_a_file_url_works_from_any_directory(
    tmp_path: Path, elsewhere: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wt = tmp_path / "wt"
    wt.mkdir()
    (wt / "a.txt").write_text("a\n")
    url = "file://" + str(tmp_path / "my store").replace(" ", "%20")
    with cas.init(url, wt, progress=False, cache_dir=tmp_path / "c") as repo:
        repo.commit("one")
    assert (tmp_path / "my store" / "config").is_file()
    monkeypatch.chdir(tmp_path)
    with cas.open(wt, progress=False, cache_dir=tmp_path / "c") as repo:
        assert [e.commit.message for e in repo.log()] == ["one"]
        assert repo.store == str(tmp_path / "my store")


@pytest.mark.parametrize(
    ("location", "hint"),
    [
        ("gs://bucket/prefix", "endpoint=https://storage.googleapis.com"),
        ("GS://bucket/prefix", "endpoint=https://storage.googleapis.com"),
        ("az://container/prefix", "s3://BUCKET/PREFIX"),
        ("https://example.com/store", "s3://BUCKET/PREFIX"),
    ],
)
def test_other_schemes_are_refused_with_a_way_forward(location: str, hint: str) -> None:
    with pytest.raises(RepositoryError, match="unsupported store location") as ei:
        open_backend(location)
    assert hint in ei.value.hint


def test_s3_without_boto3_names_the_extra(tmp_path: Path) -> None:
    """boto3 is an optional extra: without it (its import blocked here), opening an s3://
    store is a clear error naming it, from the library and from the CLI (exit 4)."""
    script = textwrap.dedent(
        """
        import importlib.abc, runpy, sys

        class NoBoto(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("boto3", "botocore"):
                    raise ImportError(f"No module named {name!r} (blocked by the test)")
                return None

        sys.meta_path.insert(0, NoBoto())
        if sys.argv[1] == "library":
            from cas.errors import RepositoryError
            from cas.store import open_backend
            open_backend("file:///tmp")  # folders need no boto3
            try:
                open_backend("s3://bucket/store?endpoint=http://127.0.0.1:1")
            except RepositoryError as exc:
                print(exc.message)
                print(exc.hint)
        else:
            sys.argv = ["cas", *sys.argv[2:]]
            runpy.run_module("cas_cli", run_name="__main__")
        """
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    r = subprocess.run(
        [sys.executable, "-c", script, "library"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "s3:// stores need boto3, which is not installed",
        "install the S3 client: pip install 'boto3>=1.36' (the [s3] extra of cas)",
    ]
    r = subprocess.run(
        [sys.executable, "-c", script, "cli", "clone", "s3://bucket/store", "dest"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=tmp_path,
    )
    assert r.returncode == 4, r.stderr
    assert r.stderr.splitlines() == [
        "error: s3:// stores need boto3, which is not installed",
        "hint: install the S3 client: pip install 'boto3>=1.36' (the [s3] extra of cas)",
    ]
    assert not (tmp_path / "dest").exists()
