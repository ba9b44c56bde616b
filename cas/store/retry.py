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
from collections.abc import Callable, Iterator
from typing import TypeVar

from cas.errors import BackendError, BackendUnavailableError
from cas.store.base import Backend, BufferedWrite, Capabilities, KeyInfo, PendingWrite, begin_write

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

    def write(self, key: str, data: bytes | bytearray, *, if_absent: bool = False) -> None:
        self._call(f"write {key}", lambda: self.inner.write(key, data, if_absent=if_absent))

    def begin_write(self) -> PendingWrite:
        """The inner backend's stream where it has one (a local disk: nothing to retry),
        else a buffered value whose one ``write`` at commit is retried like any other."""
        pending = begin_write(self.inner)
        if isinstance(pending, BufferedWrite):
            return BufferedWrite(self)  # its write at commit goes through the retries
        return pending

    def list(self, prefix: str) -> Iterator[KeyInfo]:
        # A listing is materialised so that a failure midway is retried as a whole.
        return iter(self._call(f"list {prefix or '/'}", lambda: list(self.inner.list(prefix))))

    def stat(self, key: str) -> KeyInfo:
        return self._call(f"stat {key}", lambda: self.inner.stat(key))

    def delete(self, key: str) -> None:
        self._call(f"delete {key}", lambda: self.inner.delete(key))

    def close(self) -> None:
        self.inner.close()
