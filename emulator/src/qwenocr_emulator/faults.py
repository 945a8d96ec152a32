"""Fault injection: latency, RPM/TPM quotas, random 429/500/timeouts, content-inspection failures.

Why in the emulator: the provider's limiter, retries and "never lose an image" guarantees (issue #5)
can only be tested against a service that misbehaves on purpose, reproducibly (``seed``).

Rules (documented in emulator/README.md):
- ``rpm``/``tpm``: sliding 60-second windows over *accepted* OCR requests. A request that would exceed
  RPM gets 429 ``Throttling.RateQuota``; one whose estimated input tokens would exceed TPM gets 429
  ``Throttling.AllocationQuota``. Output tokens are charged to the TPM window after the answer.
  ``Retry-After`` says (rounded up) when the window frees enough room.
- random faults, drawn once per OCR request from one seeded RNG: ``fail_rate_429`` → 429
  ``Throttling.RateQuota`` (Retry-After: 1), ``fail_rate_500`` → 500 ``InternalError``,
  ``fail_rate_timeout`` → the request is held ``timeout_hold_seconds`` (default 30 s, far past a sane
  client timeout) and then the connection is dropped without a complete response.
- latency: each OCR answer waits ``latency_ms`` × U(0.5, 1.5) (mean ``latency_ms``), on the event loop,
  so many slow requests cost no threads.
- DataInspectionFailed: a flat image (encoded in under 0.5 bit per pixel, ``imaging.is_flat``) whose mean
  colour is within ``inspection_tolerance`` (Euclidean, 0–255 RGB) of pure red (255, 0, 0), or an image
  whose name/URL contains ``inspection_marker``. The mean colour and the flatness survive resizing and
  JPEG re-encoding, so images prepared by a client still trigger it. The probe never decodes a detailed
  page (its size says it is not flat) and decodes a JPEG at 1/8 scale (``imaging.mean_colour``), so it
  costs ~nothing at full resolution.
- account state (``--account-state``, or ``POST /_emulator/account`` at runtime): every inference and
  batch-create call is refused the way the service refuses an account in that state (``account_error``).
"""

from __future__ import annotations

import asyncio
import math
import random
import threading
import time
from collections import deque

from qwenocr_emulator import imaging
from qwenocr_emulator.config import ACCOUNT_STATES, EmulatorConfig
from qwenocr_emulator.state import ApiError

WINDOW_S = 60.0
RED = (255, 0, 0)


class DropConnection(Exception):
    """Raised inside a started response so the server closes the socket (a simulated network timeout)."""


def rate_quota_error(retry_after: float) -> ApiError:
    return ApiError(429, "Throttling.RateQuota", "Requests rate limit exceeded, please try again later.",
                    headers={"Retry-After": str(max(1, math.ceil(retry_after)))})


def allocation_quota_error(retry_after: float) -> ApiError:
    return ApiError(429, "Throttling.AllocationQuota",
                    "Allocated quota exceeded, please increase your quota limit.",
                    headers={"Retry-After": str(max(1, math.ceil(retry_after)))})


class FaultInjector:
    def __init__(self, config: EmulatorConfig, clock=time.monotonic):
        self.config = config
        self._clock = clock
        self._lock = threading.Lock()
        self._rng = random.Random(config.seed)
        self._requests: deque[float] = deque()
        self._tokens: deque[tuple[float, int]] = deque()
        self._token_sum = 0

    def reset(self) -> None:
        with self._lock:
            self._rng = random.Random(self.config.seed)
            self._requests.clear()
            self._tokens.clear()
            self._token_sum = 0

    def _expire(self, now: float) -> None:
        while self._requests and now - self._requests[0] >= WINDOW_S:
            self._requests.popleft()
        while self._tokens and now - self._tokens[0][0] >= WINDOW_S:
            self._token_sum -= self._tokens.popleft()[1]

    def admit(self, tokens: int) -> None:
        """Charge one request and ``tokens`` input tokens to the quota windows, or raise the 429."""
        cfg = self.config
        if cfg.rpm is None and cfg.tpm is None:
            return
        with self._lock:
            now = self._clock()
            self._expire(now)
            if cfg.rpm is not None and len(self._requests) >= cfg.rpm:
                raise rate_quota_error(self._requests[0] + WINDOW_S - now)
            if cfg.tpm is not None and self._token_sum + tokens > cfg.tpm:
                # Find when enough tokens leave the window (or the oldest, if the call alone is too big).
                need, freed, wait = self._token_sum + tokens - cfg.tpm, 0, WINDOW_S
                for ts, n in self._tokens:
                    freed += n
                    if freed >= need:
                        wait = ts + WINDOW_S - now
                        break
                raise allocation_quota_error(wait)
            self._requests.append(now)
            if tokens:
                self._tokens.append((now, tokens))
                self._token_sum += tokens

    def charge_output(self, tokens: int) -> None:
        if self.config.tpm is None or tokens <= 0:
            return
        with self._lock:
            self._tokens.append((self._clock(), tokens))
            self._token_sum += tokens

    def draw(self) -> str | None:
        """One seeded draw per OCR request: None, "429", "500" or "timeout"."""
        cfg = self.config
        if not (cfg.fail_rate_429 or cfg.fail_rate_500 or cfg.fail_rate_timeout):
            return None
        with self._lock:
            x = self._rng.random()
        if x < cfg.fail_rate_429:
            return "429"
        if x < cfg.fail_rate_429 + cfg.fail_rate_500:
            return "500"
        if x < cfg.fail_rate_429 + cfg.fail_rate_500 + cfg.fail_rate_timeout:
            return "timeout"
        return None

    async def random_fault(self) -> None:
        """Apply one random draw: raise the 429/500, or hold then raise DropConnection."""
        fault = self.draw()
        if fault == "429":
            raise rate_quota_error(1)
        if fault == "500":
            raise ApiError(500, "InternalError", "An internal error has occured, please try again later.")
        if fault == "timeout":
            await asyncio.sleep(self.config.timeout_hold_seconds)
            raise DropConnection()

    def latency_seconds(self) -> float:
        if self.config.latency_ms <= 0:
            return 0.0
        with self._lock:
            jitter = self._rng.uniform(0.5, 1.5)
        return self.config.latency_ms * jitter / 1000.0

    async def delay(self, already_spent: float = 0.0) -> None:
        """Sleep so the call takes about the sampled latency (OCR time already spent counts toward it)."""
        remaining = self.latency_seconds() - already_spent
        if remaining > 0:
            await asyncio.sleep(remaining)

    # -- content inspection ---------------------------------------------------------------------
    def inspection_fails(self, payload: imaging.Payload, name: str | None = None) -> bool:
        if name and self.config.inspection_marker and self.config.inspection_marker in name:
            return True
        size = imaging.open_payload_header(payload).size
        if not imaging.is_flat(payload.nbytes, size):
            return False
        img = imaging.open_header(payload.full())
        return math.dist(imaging.mean_colour(img), RED) <= self.config.inspection_tolerance


def inspection_error() -> ApiError:
    return ApiError(400, "DataInspectionFailed", "Input data may contain inappropriate content.")


# The account states the service answers before anything else (reference §3, §9): (HTTP status, code, message).
ACCOUNT_ERRORS = {
    "arrearage": (400, "Arrearage",
                  "Access denied, please make sure your account is in good standing."),
    "prepaid-overdue": (429, "PrepaidBillOverdue", "The prepaid bill is overdue."),
    "postpaid-overdue": (429, "PostpaidBillOverdue", "The postpaid bill is overdue."),
    "not-purchased": (429, "CommodityNotPurchased", "Commodity has not purchased yet."),
    "free-tier-only": (403, "AllocationQuota.FreeTierOnly",
                       "The free tier of the model has been exhausted. If you want to continue access the "
                       "model on a paid basis, please disable the \"use free tier only\" mode in the "
                       "management console."),
}


def account_error(state: str) -> ApiError | None:
    """The error every inference call gets while the account is in ``state`` (None when "ok")."""
    if state not in ACCOUNT_STATES:
        raise ValueError(f"account state must be one of {ACCOUNT_STATES}, not {state!r}")
    if state == "ok":
        return None
    status, code, message = ACCOUNT_ERRORS[state]
    return ApiError(status, code, message)
