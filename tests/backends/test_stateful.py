"""A backend against a dict model: random writes, range reads, deletes, stats and lists.

The model computes every expected result itself (ranges included), never through the
code under test. Keys are chosen so that no key is a folder of another, which a folder
backend cannot represent (``a`` and ``a/b`` cannot both be files).
"""

from __future__ import annotations

import shutil
import tempfile

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from cas.errors import AlreadyExistsError, ObjectNotFoundError, ShortReadError
from cas.store.base import Backend
from cas.store.local import LocalDirBackend
from cas.store.memory import MemoryBackend

KEYS = ["config", "k2", "packs/ab/p1", "packs/ab/p2", "packs/cd/p3", "refs/heads/m/1-x"]
PREFIXES = ["", "packs/", "packs/ab/", "packs/cd/", "refs/", "refs/heads/m/", "index/"]

keys = st.sampled_from(KEYS)
values = st.binary(max_size=64) | st.sampled_from([b"", b"\x00" * 300])


def _model_range(value: bytes, offset: int, length: int) -> bytes | None:
    """The bytes a range read must return, or None when it must fail as short."""
    start = len(value) + offset if offset < 0 else offset
    if start < 0 or start + length > len(value):
        return None
    return value[start : start + length]


class BackendMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.model: dict[str, bytes] = {}
        self.backend = self.make_backend()

    def make_backend(self) -> Backend:
        raise NotImplementedError

    @rule(key=keys, value=values)
    def write(self, key: str, value: bytes) -> None:
        self.backend.write(key, value)
        self.model[key] = value

    @rule(key=keys, value=values)
    def write_if_absent(self, key: str, value: bytes) -> None:
        if key in self.model:
            with pytest.raises(AlreadyExistsError):
                self.backend.write(key, value, if_absent=True)
        else:
            self.backend.write(key, value, if_absent=True)
            self.model[key] = value

    @rule(key=keys)
    def read(self, key: str) -> None:
        if key in self.model:
            assert self.backend.read(key) == self.model[key]
        else:
            with pytest.raises(ObjectNotFoundError):
                self.backend.read(key)

    @rule(
        key=keys,
        offset=st.integers(min_value=-400, max_value=400),
        length=st.integers(min_value=0, max_value=400),
    )
    def read_range(self, key: str, offset: int, length: int) -> None:
        if key not in self.model:
            with pytest.raises(ObjectNotFoundError):
                self.backend.read_range(key, offset, length)
            return
        expected = _model_range(self.model[key], offset, length)
        if expected is None:
            with pytest.raises(ShortReadError):
                self.backend.read_range(key, offset, length)
        else:
            assert self.backend.read_range(key, offset, length) == expected

    @precondition(lambda self: bool(self.model))
    @rule(data=st.data())
    def read_range_inside(self, data: st.DataObject) -> None:
        """Ranges drawn inside an existing value, so the success path is well covered."""
        key = data.draw(st.sampled_from(sorted(self.model)))
        value = self.model[key]
        start = data.draw(st.integers(min_value=0, max_value=len(value)))
        length = data.draw(st.integers(min_value=0, max_value=len(value) - start))
        from_end = data.draw(st.booleans())
        offset = start - len(value) if from_end and start < len(value) else start
        assert self.backend.read_range(key, offset, length) == value[start : start + length]

    @rule(key=keys)
    def delete(self, key: str) -> None:
        self.backend.delete(key)
        self.model.pop(key, None)

    @rule(key=keys)
    def stat(self, key: str) -> None:
        if key in self.model:
            info = self.backend.stat(key)
            assert (info.key, info.size) == (key, len(self.model[key]))
        else:
            with pytest.raises(ObjectNotFoundError):
                self.backend.stat(key)

    @rule(prefix=st.sampled_from(PREFIXES))
    def list_prefix(self, prefix: str) -> None:
        listed = {i.key: i.size for i in self.backend.list(prefix)}
        expected = {k: len(v) for k, v in self.model.items() if k.startswith(prefix)}
        assert listed == expected

    @invariant()
    def everything_is_listed(self) -> None:
        listed = sorted((i.key, i.size) for i in self.backend.list(""))
        assert listed == sorted((k, len(v)) for k, v in self.model.items())

    def teardown(self) -> None:
        self.backend.close()


class MemoryMachine(BackendMachine):
    def make_backend(self) -> Backend:
        return MemoryBackend()


class LocalMachine(BackendMachine):
    def make_backend(self) -> Backend:
        self.root = tempfile.mkdtemp(prefix="cas-stateful-")
        return LocalDirBackend(self.root, fsync=False)

    def teardown(self) -> None:
        super().teardown()
        shutil.rmtree(self.root, ignore_errors=True)


# Half the profile's examples (each one is a whole run of steps): about 2 s per backend
# with the default profile, more with HYPOTHESIS_PROFILE=ci or nightly.
_settings = settings(
    max_examples=max(10, settings.default.max_examples // 2), stateful_step_count=25
)
TestMemoryBackendStateful = _settings(MemoryMachine).TestCase
TestLocalBackendStateful = _settings(LocalMachine).TestCase
