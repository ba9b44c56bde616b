"""A backend decorator that retries transient failures with exponential backoff and jitter.

Only errors marked transient (:class:`~cas.errors.BackendUnavailableError`: a dropped
mount, "Transport endpoint is not connected", a timeout, throttling) are retried;
permanent ones (no space, permission, read-only, missing key, corrupt data) are raised at
once. Every operation of the contract is idempotent or atomic, so repeating it is safe.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from cas.errors import BackendError, BackendUnavailableError
from cas.store.base import (
    Backend,
    BufferedWrite,
    Capabilities,
    KeyInfo,
    PendingWrite,
    SpooledWrite,
    begin_write,
    make_folders,
)

log = logging.getLogger(__name__)

T = TypeVar("T")


class RetryingBackend:
    """Wraps a backend; retries transient errors up to ``attempts`` times in all."""

    def __init__(
        self,
        inner: Backend,
        *,
        attempts: int = 6,
        base_delay: float = 0.2,
        max_delay: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.inner = inner
        self.attempts = max(1, attempts)
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._sleep = sleep
        self._rng = rng or random.Random()
        self.retries = 0

    @property
    def location(self) -> str:
        return self.inner.location

    @property
    def capabilities(self) -> Capabilities:
        return self.inner.capabilities

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        for attempt in range(1, self.attempts + 1):
            try:
                return fn()
            except BackendError as exc:
                if not exc.transient or attempt == self.attempts:
                    if exc.transient:
                        raise BackendUnavailableError(
                            f"{exc.message} (gave up after {self.attempts} attempts)"
                        ) from exc
                    raise
                # "Full jitter" backoff: spreads retries of many clients apart.
                delay = self._rng.uniform(0, min(self.max_delay, self.base_delay * 2**attempt))
                log.warning("%s failed (%s); retry %d in %.1fs", what, exc, attempt, delay)
                self.retries += 1
                self._sleep(delay)
        raise AssertionError("unreachable")

    def read(self, key: str) -> bytes:
        return self._call(f"read {key}", lambda: self.inner.read(key))

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        return self._call(f"read {key}", lambda: self.inner.read_range(key, offset, length))

    def write(
        self,
        key: str,
        data: bytes | bytearray,
        *,
        if_absent: bool = False,
        if_version: str | None = None,
    ) -> None:
        if if_version is None:
            self._call(f"write {key}", lambda: self.inner.write(key, data, if_absent=if_absent))
            return
        # Compare-and-swap (only where the inner backend's capabilities say it has it).
        inner: Any = self.inner
        self._call(
            f"write {key}",
            lambda: inner.write(key, data, if_absent=if_absent, if_version=if_version),
        )

    def begin_write(self) -> PendingWrite:
        """The inner backend's stream where it has one (a local disk: nothing to retry);
        a value spooled on the local disk, whose commit is retried; else a buffered
        value whose one ``write`` at commit is retried like any other."""
        pending = begin_write(self.inner)
        if isinstance(pending, BufferedWrite):
            return BufferedWrite(self)  # its write at commit goes through the retries
        if isinstance(pending, SpooledWrite):
            return _RetriedCommit(self, pending)  # it keeps its bytes: commit is repeatable
        return pending

    def make_folders(self, prefixes: Iterable[str]) -> None:
        make_folders(self.inner, prefixes)  # best effort: nothing to retry

    def list(self, prefix: str) -> Iterator[KeyInfo]:
        # A listing is materialised so that a failure midway is retried as a whole.
        return iter(self._call(f"list {prefix or '/'}", lambda: list(self.inner.list(prefix))))

    def list_keys(self, prefix: str) -> Iterator[str]:
        return iter(self._call(f"list {prefix or '/'}", lambda: list(self.inner.list_keys(prefix))))

    def stat(self, key: str) -> KeyInfo:
        return self._call(f"stat {key}", lambda: self.inner.stat(key))

    def delete(self, key: str) -> None:
        self._call(f"delete {key}", lambda: self.inner.delete(key))

    def close(self) -> None:
        self.inner.close()


class _RetriedCommit:
    """A :class:`SpooledWrite` (whose ``commit`` may be repeated: it keeps its bytes),
    committed through the retries."""

    def __init__(self, backend: RetryingBackend, inner: SpooledWrite) -> None:
        self._backend = backend
        self._inner = inner

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._inner.write(data)

    def commit(
        self, key: str, *, if_absent: bool = False, before_publish: Callable[[], None] | None = None
    ) -> None:
        try:
            self._backend._call(
                f"write {key}",
                lambda: self._inner.commit(key, if_absent=if_absent, before_publish=before_publish),
            )
        finally:
            self._inner.abort()  # its bytes are let go whether it landed or not

    def abort(self) -> None:
        self._inner.abort()
