"""The circuit breaker: stop a whole task when the service is unreachable or keeps failing.

Why: without it an outage after 100 of 300 images makes every remaining image retry for its full
``max_retry_seconds`` and end as an error row — 20 minutes of a worker slot, then 198 rows that say
nothing about the images. With it, the task stops within seconds of the outage being certain, the
images not yet sent stay undone (no row), and a re-run picks them up.

What counts (per HTTP attempt, across all images of one client):

- an *outage signal*: no HTTP answer (connection refused/reset, timeout, deadline) or HTTP 5xx/408;
- a *healthy signal*: any other HTTP answer — a success, but also a 4xx about one image (the service is
  up and judged the request) or a 429 (the service is up and throttling us).

The breaker opens after ``failures`` consecutive outage signals (default 8), or when outage signals keep
coming and nothing was healthy for ``seconds`` (default 120 s). Once open it stays open: every call
raises :class:`~.errors.ServiceUnavailableError` before touching the network, and retry back-offs wake
up early. ``failures=0`` disables the breaker.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from airflow_provider_qwenocr.dashscope.errors import QwenOcrError, ServiceUnavailableError

DEFAULT_FAILURES = 8
DEFAULT_SECONDS = 120.0


def is_outage(exc: BaseException) -> bool:
    """Does this error say the service is away (rather than judging our request)?"""
    if not isinstance(exc, QwenOcrError) or isinstance(exc, ServiceUnavailableError):
        return False
    status = exc.status_code
    return exc.retryable and (status is None or status >= 500 or status == 408)


class CircuitBreaker:
    """Thread-safe; one per client (all images of a task share it)."""

    def __init__(self, failures: int = DEFAULT_FAILURES, seconds: float = DEFAULT_SECONDS, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.failures = int(failures)
        self.seconds = float(seconds)
        self._clock = clock
        self._lock = threading.Lock()
        self._opened = threading.Event()
        self._consecutive = 0
        self._last_healthy: float | None = None  # set at the first call: a slow start is not an outage
        self.reason: str | None = None
        self.opened_at: float | None = None

    @property
    def enabled(self) -> bool:
        return self.failures > 0

    @property
    def is_open(self) -> bool:
        return self._opened.is_set()

    def before_call(self) -> None:
        """Raise if open; start the no-success clock at the first call."""
        if self._opened.is_set():
            raise self.error()
        with self._lock:
            if self._last_healthy is None:
                self._last_healthy = self._clock()

    def record_success(self) -> None:
        with self._lock:
            self._consecutive = 0
            self._last_healthy = self._clock()

    def record_failure(self, exc: BaseException) -> None:
        if not self.enabled:
            return
        if not is_outage(exc):
            if isinstance(exc, QwenOcrError) and exc.status_code is not None:
                self.record_success()  # the service answered: it is up
            return
        with self._lock:
            self._consecutive += 1
            now = self._clock()
            quiet = now - (self._last_healthy if self._last_healthy is not None else now)
            if self._opened.is_set():
                return
            if self._consecutive >= self.failures:
                self.reason = (f"{self._consecutive} consecutive calls failed without an answer from the service "
                               f"(last: {exc})")
            elif quiet >= self.seconds:
                self.reason = f"no successful call for {quiet:.0f} s while calls kept failing (last: {exc})"
            else:
                return
            self.opened_at = now
            self._opened.set()

    def sleep(self, seconds: float) -> None:
        """A retry back-off that ends early when the breaker opens."""
        self._opened.wait(max(0.0, seconds))

    def error(self) -> ServiceUnavailableError:
        return ServiceUnavailableError(
            f"circuit breaker open: {self.reason}. The service looks unreachable or persistently failing; "
            "images not yet done were not sent and are left for the re-run",
        )
