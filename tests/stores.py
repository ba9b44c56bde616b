"""Stores under test: a folder or a prefix of an S3 bucket, behind one test-side interface.

The end-to-end tests run once per kind of store. cas only ever sees :attr:`location` (what
a user types); the test itself reaches the stored objects through the methods here —
never through cas — to damage, remove or compare them: files and folders for a folder
store, the raw boto3 client against the loopback S3 server for an S3 store.
"""

from __future__ import annotations

import os
import shutil
from abc import ABC, abstractmethod
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tests.assets import snapshot_tree

KINDS = ("folder", "s3")


class StoreUnderTest(ABC):
    """One store, as the test sees it from outside cas."""

    kind: str

    @property
    @abstractmethod
    def location(self) -> str:
        """What ``cas init`` / ``cas clone`` are given: a path or an ``s3://`` URL."""

    @abstractmethod
    def objects(self) -> dict[str, str]:
        """Every stored object: key (relative to the store's root) → digest of its bytes."""

    @abstractmethod
    def fingerprint(self) -> dict[str, str]:
        """Everything that a change to the store could alter (for "untouched" checks)."""

    @abstractmethod
    def read(self, key: str) -> bytes:
        """The bytes of one object."""

    @abstractmethod
    def write(self, key: str, data: bytes) -> None:
        """Give an object new bytes (a new file or object; never through a shared link)."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove one object."""

    @abstractmethod
    def copy(self, dest: Path) -> StoreUnderTest:
        """A private copy of the whole store (``dest``: a folder the test owns)."""

    def keys(self, prefix: str = "") -> list[str]:
        """Sorted keys of the stored objects that start with ``prefix``."""
        return sorted(k for k in self.objects() if k.startswith(prefix))

    def flip_byte(self, key: str, offset: int) -> bytes:
        """Invert one byte of an object; return its bytes before."""
        data = self.read(key)
        damaged = bytearray(data)
        damaged[offset] ^= 0xFF
        self.write(key, bytes(damaged))
        return data

    def truncate(self, key: str, length: int) -> bytes:
        """Keep only the first ``length`` bytes of an object; return its bytes before."""
        data = self.read(key)
        self.write(key, data[:length])
        return data

    def __str__(self) -> str:
        return self.location


class FolderStore(StoreUnderTest):
    """A store in a local folder (what a mounted Drive folder is to cas)."""

    kind = "folder"

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def location(self) -> str:
        return str(self.path)

    def objects(self) -> dict[str, str]:
        snap = snapshot_tree(self.path, ignore=()) if self.path.exists() else {}
        return {p: n.content for p, n in snap.items() if n.kind == "file"}

    def fingerprint(self) -> dict[str, str]:
        if not self.path.exists():
            return {}
        snap = snapshot_tree(self.path, ignore=())
        return {p: f"{n.kind} {n.mode:o} {n.mtime_ns} {n.content}" for p, n in snap.items()}

    def read(self, key: str) -> bytes:
        return (self.path / key).read_bytes()

    def write(self, key: str, data: bytes) -> None:
        path = self.path / key
        path.parent.mkdir(parents=True, exist_ok=True)  # a new folder, like an S3 prefix
        tmp = path.with_name(path.name + ".replacing")
        tmp.write_bytes(data)
        os.replace(tmp, path)

    def delete(self, key: str) -> None:
        (self.path / key).unlink()

    def copy(self, dest: Path) -> FolderStore:
        # Hard links are fast, and safe: cas never changes a stored file in place, and
        # :meth:`write` makes a new file.
        shutil.copytree(self.path, dest, symlinks=True, copy_function=os.link)
        return FolderStore(dest)


class S3Store(StoreUnderTest):
    """A store under a prefix of a bucket on the loopback S3 server."""

    kind = "s3"

    def __init__(self, server: Any, bucket: str, prefix: str = "store") -> None:
        self.server = server  # tests.conftest.S3Server
        self.bucket = bucket
        self.prefix = prefix

    @property
    def location(self) -> str:
        return str(self.server.url(self.bucket, self.prefix))

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}"

    def _list(self) -> dict[str, str]:
        """key → "ETag size" of every object (one listing; no object is read).

        The ETag of an object put in one request is the MD5 of its bytes; one put in parts
        gets a new ETag on every upload. Either way a change of content changes it.
        """
        paginator = self.server.client.get_paginator("list_objects_v2")
        out: dict[str, str] = {}
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + "/"):
            for o in page.get("Contents", ()):
                etag = o["ETag"].strip('"')
                out[o["Key"][len(self.prefix) + 1 :]] = f"{etag} {o['Size']}"
        return out

    def objects(self) -> dict[str, str]:
        return self._list()

    def fingerprint(self) -> dict[str, str]:
        return self.objects()

    def read(self, key: str) -> bytes:
        obj = self.server.client.get_object(Bucket=self.bucket, Key=self._key(key))
        return bytes(obj["Body"].read())

    def write(self, key: str, data: bytes) -> None:
        self.server.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def delete(self, key: str) -> None:
        self.server.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def copy(self, dest: Path) -> S3Store:
        other = S3Store(self.server, self.server.new_bucket(), self.prefix)
        client = self.server.client

        def one(key: str) -> None:
            client.copy_object(
                Bucket=other.bucket,
                Key=other._key(key),
                CopySource={"Bucket": self.bucket, "Key": self._key(key)},
            )

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(one, self._list()))
        return other
