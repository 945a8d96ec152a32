"""The retry policy for one OCR request, built on tenacity.

Why these choices:

- Only :class:`~.errors.RetryableError` is retried (throttling, 5xx, 408, timeouts, dropped connections);
  a permanent error costs one call and becomes an error row at once.
- Exponential backoff with full jitter (``wait_random_exponential``): a pool of workers that all got a 429
  in the same second must not come back in the same second.
- A ``Retry-After`` hint from the service wins over the computed backoff when it is longer (capped, so a
  bogus hint cannot park a worker for an hour). The dashscope SDK does expose the response headers on
  error responses (``response.headers``), so the hint reaches us when the service sends one.
- A timed-out call may still have been served (and billed) by the service; it is retried anyway, since
  losing the image costs more than paying for it twice, and the idempotency key keeps one row per image.
- Bounded twice: ``max_retries`` attempts after the first and ``max_retry_seconds`` of total time, so
  an outage fails the image (and lets the task finish and report) instead of hanging the worker.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_random_exponential,
)

try:  # tenacity ≥ 8.3: also stops when the next sleep would cross the deadline
    from tenacity import stop_before_delay as _stop_delay
except ImportError:  # pragma: no cover
    _stop_delay = stop_after_delay

from airflow_provider_qwenocr.dashscope.errors import RetryableError

log = logging.getLogger(__name__)

BACKOFF_MULTIPLIER = 0.5  # first retry waits up to 0.5 s, then 1, 2, 4 … (random within, "full jitter")
BACKOFF_MAX = 30.0
RETRY_AFTER_MAX = 120.0


class _WaitBackoffOrHint:
    """tenacity wait: random exponential backoff, or the server's Retry-After if that is longer."""

    def __init__(self, multiplier: float, maximum: float, hint_max: float) -> None:
        self._backoff = wait_random_exponential(multiplier=multiplier, max=maximum)
        self._hint_max = hint_max

    def __call__(self, state: RetryCallState) -> float:
        delay = self._backoff(state)
        exc = state.outcome.exception() if state.outcome is not None else None
        hint = getattr(exc, "retry_after", None)
        if hint:
            delay = max(delay, min(float(hint), self._hint_max))
        return delay


def _log_retry(state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome is not None else None
    sleep = state.next_action.sleep if state.next_action is not None else 0.0
    # The exception text is already redacted (errors.classify); the key never reaches a log line.
    log.info("DashScope call failed (attempt %d): %s; retrying in %.2f s", state.attempt_number, exc, sleep)


def retrying(
    max_retries: int,
    max_retry_seconds: float,
    *,
    sleep: Callable[[float], Any] = time.sleep,
    multiplier: float = BACKOFF_MULTIPLIER,
    max_backoff: float = BACKOFF_MAX,
    retry_after_max: float = RETRY_AFTER_MAX,
    before_sleep: Callable[[RetryCallState], Any] | None = _log_retry,
) -> Retrying:
    """A tenacity ``Retrying`` for one request: ``max_retries`` retries, ``max_retry_seconds`` in total.

    Re-raises the last error when exhausted (a :class:`RetryableError` then reaches the caller as is).
    """
    return Retrying(
        retry=retry_if_exception_type(RetryableError),
        stop=stop_after_attempt(max(1, int(max_retries) + 1)) | _stop_delay(max_retry_seconds),
        wait=_WaitBackoffOrHint(multiplier, max_backoff, retry_after_max),
        sleep=sleep,
        before_sleep=before_sleep,
        reraise=True,
    )
