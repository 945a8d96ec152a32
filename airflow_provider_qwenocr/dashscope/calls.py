"""One request under the client policy: breaker → rate limiter → one HTTP attempt → typed error → retry → refund.

Why a module of its own: the native realtime client (``realtime.py``, dashscope SDK) and the Responses API
client (``responses.py``, plain JSON over the same deadline-aware session) must pace, retry, trip the
breaker and settle the TPM charge by the SAME rules — a second copy of the retry loop would drift (which
retry is charged again, when the breaker is asked, what is refunded). Each client supplies only its own
HTTP attempt (a callable that returns an answer or raises a :class:`~.errors.QwenOcrError`); this module
owns everything around it. No Airflow import.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from airflow_provider_qwenocr.dashscope import deadline as _deadline
from airflow_provider_qwenocr.dashscope.breaker import CircuitBreaker
from airflow_provider_qwenocr.dashscope.errors import QwenOcrError, RetryableError
from airflow_provider_qwenocr.dashscope.retry import retrying

T = TypeVar("T")

#: 429 codes that mean the account's own quota window is full (reference §3/§9).
QUOTA_THROTTLING_CODES = frozenset({"Throttling.RateQuota", "Throttling.AllocationQuota", "Throttling.BurstRate"})


def text_tokens(text: str | None) -> int:
    """Token estimate of a prompt: Chinese ≈ 1 token per character, English ≈ 4 characters per token, so
    len/2 is a safe middle."""
    return (len(text) + 1) // 2 if text else 0


def charges_retry(exc: QwenOcrError, refusals: int) -> bool:
    """Whether the retry after ``exc`` waits for the rate limiter again (see :func:`run_with_retries`).

    ``refusals`` = the 429s this request has had so far, ``exc`` included. A quota refusal is charged
    again from the second one on, or at once when its ``Retry-After`` is over a second: the service says
    the window stays full that long, and every call it refused meanwhile would otherwise come back
    unpaced at the same instant (seen on the cluster: seven refusals with Retry-After 7, 6 … 1 s, their
    free retries all at one second, four refused again).
    """
    if exc.status_code != 429:
        return True
    if exc.code not in QUOTA_THROTTLING_CODES:
        return False
    return refusals > 1 or (exc.retry_after or 0) > 1


def make_session(pool_size: int):
    """A ``requests.Session`` with a pool of ``pool_size`` connections per host, no urllib3 retries (ours
    decide), and the wall-clock deadline of ``deadline.py`` on every connection it makes."""
    import requests
    from requests.adapters import HTTPAdapter

    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return _deadline.install(session)


def deadline_exceeded(limit: float) -> RetryableError:
    """The error of an attempt cut by the wall-clock deadline (``deadline.py``): retryable, ``RequestTimeOut``."""
    return RetryableError(f"no complete response within the {limit:g} s deadline (connect + send + response)",
                          code="RequestTimeOut")


def guarded(send: Callable[[], T], *, breaker: CircuitBreaker, limiter: Any, tokens: int, charge: bool = True,
            before: Callable[[], Any] | None = None) -> T:
    """One HTTP attempt: refused at once by an open breaker, paced by ``limiter`` (when ``charge``), its
    outcome recorded by the breaker. ``before`` runs ahead of the limiter wait (work that must not delay a
    granted call, e.g. the dashscope SDK's first import)."""
    breaker.before_call()
    if before is not None:
        before()
    if limiter is not None and charge:
        limiter.acquire(tokens)
    breaker.before_call()  # it may have opened while we waited for the limiter
    try:
        response = send()
    except QwenOcrError as exc:
        breaker.record_failure(exc)
        raise
    breaker.record_success()
    return response


def run_with_retries(attempt: Callable[[bool], T], *, max_retries: int, max_retry_seconds: float,
                     sleep: Callable[[float], Any]) -> T:
    """``attempt(charge)`` until it answers, under the retry policy (``retry.py``); returns its answer or
    re-raises the last typed error.

    Every attempt waits for the rate limiter (``charge=True``), except retries after a 429
    (:func:`charges_retry`):

    - a *first* refusal's retry reuses the slot it was charged: the refusal consumed no quota, and
      charging again would cap the pipe at (1 − refusal rate) of the quota under transient 429s;
    - a request refused again with a **quota** code (``Throttling.RateQuota`` / ``.AllocationQuota`` /
      ``.BurstRate``), or once with a Retry-After over a second, waits for the limiter on every further
      retry: twice refused means the account's window is full, and a retry outside the limiter lands on
      a window the paced calls keep full — one overflow circulated as refusals for the rest of a run
      (82 × 429 in 262 calls on the 3-worker cluster before this rule, bench/RESULTS.md);
    - a generic ``Throttling`` (the service busy, not our quota) is never charged again.
    """
    charge, refusals = True, 0
    for state in retrying(max_retries, max_retry_seconds, sleep=sleep):
        with state:
            try:
                return attempt(charge)
            except QwenOcrError as exc:
                refusals += exc.status_code == 429
                charge = charges_retry(exc, refusals)
                raise
    raise AssertionError("unreachable")  # pragma: no cover - Retrying re-raises


def settle(limiter: Any, tokens: int, usage: Mapping[str, Any] | None) -> None:
    """Refund the part of a call's charge (``tokens``, clamped as the limiter clamped it) that the answer's
    ``usage`` (input + output tokens) shows it did not use (:meth:`RateLimiter.refund`)."""
    refund = getattr(limiter, "refund", None)
    if refund is None or tokens <= 0:
        return
    try:
        used = int((usage or {}).get("input_tokens") or 0) + int((usage or {}).get("output_tokens") or 0)
    except (AttributeError, TypeError, ValueError):
        return
    cap = getattr(limiter, "max_token_weight", None)
    charged = min(tokens, cap) if cap else tokens
    if 0 < used < charged:
        refund(charged - used)
