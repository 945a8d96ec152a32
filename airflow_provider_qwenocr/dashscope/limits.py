"""Client-side rate limiting: requests per minute and tokens per minute, before the service says 429.

Why limit on our side when the service throttles anyway: every 429 costs a round trip and a backoff
sleep, and a burst that trips the limiter keeps tripping it — a worker pool that fires at will settles far
below the quota. Pacing the calls at the quota keeps the pipe full and the 429 count near zero.

How: two pyrate-limiter buckets with the GCRA algorithm (a leaky bucket kept as one timestamp per rate):
one for requests (weight 1) and one for tokens (weight = the smart_resize estimate of the image tokens +
the prompt + an output allowance, known before the call). GCRA spreads the calls evenly — ``rpm/60`` per
second with a burst of ``burst_seconds`` worth — which is what the service's per-second enforcement of a
per-minute quota wants, and it keeps O(1) state whatever the traffic (a log bucket would hold one entry
per token: six million at 6M TPM). The token bucket's burst is at least one maximal request
(``MIN_TOKEN_BURST``, capped at the TPM itself); a weight larger than the burst could never pass, so it is
clamped to the burst (the call still goes, and the service has the final word). Against a server that
counts a strict sliding 60-s window (the emulator does), GCRA at the full quota would admit one burst
(rpm/60) more than the quota in the first window; so the sustained rate is the quota less one burst
(:func:`gcra_bucket`), and no 60-s window ever holds more than the quota.

Sharing one budget across mapped tasks and workers:

1. **Airflow pool** (no code, any executor): create a pool ``dashscope`` with S slots, give the OCR tasks
   ``pool="dashscope"``, and set the connection's ``rpm``/``tpm`` extras to R/S and T/S (R, T = the
   account's quota). At most S tasks run at once, each paced at its share, so together they stay ≤ R.
   A task fills its share with ``max_concurrency`` ≥ (R/S)/60 × L, L = the call latency in seconds.
   Example: R = 1,200/min, S = 4 → ``rpm=300`` and ``max_concurrency`` ≥ 5 × L (5–20 for L = 1–4 s).
   Cost: an idle slot's share is wasted (S tasks must be running to reach R).
2. **Shared bucket on one machine** (LocalExecutor, several Celery workers on one host): set the
   connection extra ``limiter_path`` (or pass ``shared_path=``) to a file such as
   ``/some/dir/dashscope-limits.sqlite``; every process using that file draws from the same GCRA state
   (an SQLite row updated in an ``IMMEDIATE`` transaction; ~0.25 ms per acquire here, and 4 processes
   held exactly 1,200/min together — bench/shared_limit.py).
3. **Across hosts** (Celery/Kubernetes workers anywhere): the connection extra ``limiter_conn_id`` names a
   Redis or Postgres connection; the hook turns it into a URL and this module's ``shared_url=`` puts both
   GCRA states there (``dashscope/limit_stores.py``: the stores, the account key, and the bounded behaviour
   when the store is lost — wait up to ``wait_seconds``, then a local limiter at quota ÷ expected workers).
"""

from __future__ import annotations

import math
import sqlite3
import threading
import time
from typing import Any

from pyrate_limiter import GCRA, Duration, Limiter, Rate, StateBucket, StateStore, WallClock

DEFAULT_BURST_SECONDS = 1.0
#: The token bucket holds at least one maximal request (30,000 image tokens + prompt + output), so a big
#: page is paced, not clamped, even under a small TPM quota.
MIN_TOKEN_BURST = 32_768


#: The GCRA's emission interval (time per unit) is kept at least this many microseconds (see :func:`token_unit`).
MIN_EMISSION_US = 250


def _nominal_and_sustained(per_minute: int, burst_seconds: float) -> tuple[int, int]:
    """(one burst's worth of units, the sustained rate per minute = quota − that burst): see gcra_bucket."""
    nominal = math.ceil(per_minute * burst_seconds / 60)
    return nominal, max(1, per_minute - nominal)


def token_unit(per_minute: int, burst_seconds: float = DEFAULT_BURST_SECONDS) -> int:
    """Tokens per unit of the token bucket: the smallest power of two whose emission interval is ≥ 250 µs.

    Why not one token per unit: pyrate-limiter's GCRA keeps time in whole microseconds and rounds the time
    per unit *up*. At 6M tokens/min (5.9M sustained) a token is 10.17 µs, rounded to 11 µs: the bucket
    paced 8 % below its configured rate (measured with bench/fullres.py: 11.06 calls/s granted where the
    arithmetic gives 12). Counting in units of 32 tokens makes the interval 325.4 → 326 µs (0.2 % slow);
    a charge is rounded up to whole units (≤ 31 tokens more per call, 0.4 % of a 12-MP page) and a
    refund down, so the bucket still never undercounts. Small quotas keep one token per unit.
    """
    sustained = _nominal_and_sustained(per_minute, burst_seconds)[1]
    unit = 1
    while 60_000_000 * unit / sustained < MIN_EMISSION_US:
        unit *= 2
    return unit


def gcra_bucket(per_minute: int, burst_seconds: float = DEFAULT_BURST_SECONDS, *, store: StateStore | None = None,
                min_burst: int = 1, unit: int = 1) -> StateBucket:
    """A GCRA bucket for a quota of ``per_minute`` units/min, with a burst of ``burst_seconds`` worth of units.

    The sustained rate is the quota less one nominal burst (``per_minute × burst_seconds / 60``): GCRA
    admits burst + rate in the first minute, so at the full rate a server counting a strict 60-s window
    (as DashScope's per-minute quota may be counted) would see quota + burst, refuse the excess, and the
    retries of those refusals would keep the window over-full for the rest of the run (measured: 2–3 % of
    calls throttled with four processes at 600/min, bench/RESULTS.md). Paced at quota − burst, no 60-s
    window holds more than the quota; the cost is 1/60 of the throughput at the default one-second burst.
    ``unit`` > 1 counts in units of that many (:func:`token_unit`): rate and burst are divided by it
    (rounded down, so never faster than asked).
    """
    if per_minute <= 0:
        raise ValueError("a rate limit must be positive")
    nominal, sustained = _nominal_and_sustained(per_minute, burst_seconds)
    burst = max(min_burst, nominal)
    rate = Rate(max(1, sustained // unit), Duration.MINUTE, burst=max(1, min(burst, per_minute) // unit))
    # The bucket takes its clock from the store: monotonic in-process, wall clock for shared stores.
    return StateBucket([rate], algorithm=GCRA(), store=store)


def _switch_to_wal(conn: sqlite3.Connection) -> None:
    """``PRAGMA journal_mode=WAL``, retried while another process holds the lock.

    Why: the journal-mode switch needs an exclusive lock and SQLite may answer "database is locked" at once,
    without waiting ``timeout`` (seen when two task processes open a fresh limiter file together)."""
    from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_random

    locked = retry_if_exception(lambda e: isinstance(e, sqlite3.OperationalError) and "locked" in str(e))
    for attempt in Retrying(retry=locked, wait=wait_random(0.01, 0.1), stop=stop_after_delay(30), reraise=True):
        with attempt:
            conn.execute("PRAGMA journal_mode=WAL")


class SqliteStateStore(StateStore):
    """GCRA state in one SQLite row, so several processes on one host share a budget.

    Each check is a short ``BEGIN IMMEDIATE`` transaction (SQLite's writer lock serialises the
    read-modify-write across processes). Uses the wall clock, which every process on the host shares.
    """

    is_async = False
    default_clock = WallClock()

    def __init__(self, path: str, key: str) -> None:
        self.path = path
        self.key = key
        self._local = threading.local()
        with self._conn() as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS gcra_state (key TEXT PRIMARY KEY, state TEXT NOT NULL)")

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
            _switch_to_wal(conn)
            conn.execute("PRAGMA synchronous=NORMAL")  # no fsync per acquire: a lost tick after a crash is harmless
            self._local.conn = conn
        return conn

    def _load(self, conn: sqlite3.Connection, algorithm, rates):
        row = conn.execute("SELECT state FROM gcra_state WHERE key = ?", (self.key,)).fetchone()
        if row:
            values = row[0].split(",")
            if len(values) == len(rates):
                return algorithm.decode(values)
        return algorithm.initial(rates)

    def check(self, algorithm, rates, now, weight):
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            state = self._load(conn, algorithm, rates)
            new_state, decision = algorithm.step(rates, state, now, weight)
            if decision.allowed:
                conn.execute("INSERT OR REPLACE INTO gcra_state (key, state) VALUES (?, ?)",
                             (self.key, ",".join(str(int(v)) for v in new_state)))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return decision

    def read(self, algorithm, rates):
        return self._load(self._conn(), algorithm, rates)

    def reset(self) -> None:
        self._conn().execute("DELETE FROM gcra_state WHERE key = ?", (self.key,))

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


class RateLimiter:
    """Blocking, thread-safe limiter for requests/min and tokens/min.

    ``acquire(tokens)`` returns once one request and ``tokens`` tokens fit in the budget, and returns the
    seconds it waited. ``None`` for ``rpm`` or ``tpm`` disables that limit.

    Shared budgets: ``shared_path`` (an SQLite file, one host) or ``shared_url`` (``redis://…`` or
    ``postgresql://…``, any number of hosts) with ``account`` = ``limit_stores.account_key(api_key, root)``;
    ``expected_workers`` and ``store_wait_seconds`` set what happens when that store is lost.
    """

    def __init__(
        self,
        rpm: int | None,
        tpm: int | None = None,
        *,
        burst_seconds: float = DEFAULT_BURST_SECONDS,
        shared_path: str | None = None,
        request_bucket: Any = None,
        token_bucket: Any = None,
        min_token_burst: int = MIN_TOKEN_BURST,
        shared_url: str | None = None,
        account: str = "default",
        expected_workers: int | None = None,
        store_wait_seconds: float | None = None,
        sleep: Any = time.sleep,
    ) -> None:
        self.rpm = rpm
        self.tpm = tpm
        self.burst_seconds = burst_seconds
        self.stores: dict[str, Any] = {}
        # tokens per unit of our own token bucket (a caller's bucket counts single tokens)
        unit = self._token_unit = token_unit(tpm, burst_seconds) if tpm and token_bucket is None else 1
        if shared_url:
            from airflow_provider_qwenocr.dashscope import limit_stores

            opts: dict[str, Any] = {}
            if expected_workers:
                opts["expected_workers"] = expected_workers
            if store_wait_seconds is not None:
                opts["wait_seconds"] = store_wait_seconds
            stores = limit_stores.shared_stores(shared_url, account, **opts)
            self.stores = stores
            if request_bucket is None and rpm:
                request_bucket = gcra_bucket(rpm, burst_seconds, store=stores["requests"])
            if token_bucket is None and tpm:
                token_bucket = gcra_bucket(tpm, burst_seconds, store=stores["tokens"], min_burst=min_token_burst,
                                           unit=unit)
        elif shared_path:
            if request_bucket is None and rpm:
                request_bucket = gcra_bucket(rpm, burst_seconds, store=SqliteStateStore(shared_path, "requests"))
            if token_bucket is None and tpm:
                token_bucket = gcra_bucket(tpm, burst_seconds, store=SqliteStateStore(shared_path, "tokens"),
                                           min_burst=min_token_burst, unit=unit)
        if request_bucket is None and rpm:
            request_bucket = gcra_bucket(rpm, burst_seconds)
        if token_bucket is None and tpm:
            token_bucket = gcra_bucket(tpm, burst_seconds, min_burst=min_token_burst, unit=unit)
        self._request_bucket, self._token_bucket = request_bucket, token_bucket
        self._sleep = sleep
        self._requests = Limiter(request_bucket, buffer_ms=0) if request_bucket is not None else None
        self._tokens = Limiter(token_bucket, buffer_ms=0) if token_bucket is not None else None
        self._max_tokens = (min((r.burst for r in token_bucket.rates), default=None) if token_bucket is not None
                            else None)
        if self._max_tokens is not None:
            self._max_tokens *= unit
        self._stats_lock = threading.Lock()
        self.acquired = 0
        self.tokens_acquired = 0
        self.tokens_refunded = 0
        self.waited_seconds = 0.0

    @classmethod
    def from_limits(cls, rpm: int | None, tpm: int | None, **kwargs: Any) -> RateLimiter:
        return cls(rpm, tpm, **kwargs)

    @property
    def max_token_weight(self) -> int | None:
        """The largest token weight one acquire can take; heavier requests are clamped to it."""
        return self._max_tokens

    def acquire(self, tokens: int = 0) -> float:
        """Block until one request with ``tokens`` tokens fits; return the seconds waited."""
        start = time.monotonic()
        if self._requests is not None:
            self._take(self._requests, self._request_bucket, "requests", 1)
        weight = max(0, int(tokens))
        if self._token_bucket is not None and weight:
            if self._max_tokens is not None:
                weight = min(weight, self._max_tokens)
            self._take(self._tokens, self._token_bucket, "tokens", -(-weight // self._token_unit))
        waited = time.monotonic() - start
        with self._stats_lock:
            self.acquired += 1
            self.tokens_acquired += weight
            self.waited_seconds += waited
        return waited

    def _take(self, limiter: Limiter, bucket: Any, name: str, weight: int) -> None:
        """Wait until ``bucket`` admits ``weight``: each check at the clock's *current* time.

        Why not pyrate-limiter's ``try_acquire(blocking=True)``: after each sleep it re-checks with the
        item's timestamp advanced by the *planned* sleep (``item.timestamp += sleep_ms``), not the clock.
        On a loaded host a thread oversleeps, so its checks run on a time that lags the real one; GCRA then
        grants slots already past (``max(tat, now)`` with a stale ``now``): pace is lost while the lag
        grows, and a fresh caller bursts past the lagging ones. Measured (16 threads, a 600/min pace, every
        sleep 0–300 ms late): the library's loop granted 325/min with 22 pairs of grants < 25 ms apart;
        this loop 533/min and none (tests/unit/test_limits_clock.py pins the check time). One store check
        per wake-up returns verdict and wait together (``Decision.retry_after_ms``): no extra round trip.
        Any other bucket type keeps the library's loop.
        """
        if not isinstance(bucket, StateBucket):  # a caller's own bucket type: the library's loop
            if not limiter.try_acquire(name, weight, blocking=True):  # pragma: no cover - blocking
                raise RuntimeError(f"{name} limiter refused weight {weight}")
            return
        store, algorithm, rates = bucket.store, bucket.algorithm, bucket.rates
        while True:
            decision = store.check(algorithm, rates, bucket.now(), weight)
            if decision.allowed:
                return
            if decision.retry_after_ms is None:  # pragma: no cover - weights are clamped to the burst
                raise RuntimeError(f"limiter refused weight {weight} (larger than its burst)")
            self._sleep(max(1, decision.retry_after_ms) / 1000)

    def refund(self, tokens: int) -> None:
        """Give back ``tokens`` of an earlier :meth:`acquire` that the call turned out not to use.

        Why: a call is charged before it is sent, at an estimate that must not undercount (image tokens +
        prompt + an output allowance of 512); the service's quota counts what the call really used, known
        from the answer's ``usage``. An OCR page answered with a few dozen output tokens left ~500 tokens
        of every charge unused — 6 % of a 12-MP page, so a task paced by this limiter could not pass
        ~0.93 of the TPM quota however fast it was (bench/fullres.py). Refunding moves the GCRA's
        theoretical arrival time back by the unused tokens, as if the call had been charged its actual
        use. It cannot open a burst: GCRA clamps an arrival time in the past to now, so an idle bucket
        banks nothing, and a grant still needs the time of its weight beyond ``burst`` — the same
        one-second-worth cap as before. Only the token budget is refunded (a request is a request), and
        only state buckets (the library's own loop has no negative weights); a refund that fails is
        dropped, erring on the safe side of the quota.
        """
        units = max(0, int(tokens)) // self._token_unit  # rounded down: a refund never gives back too much
        bucket = self._token_bucket
        if not units or not isinstance(bucket, StateBucket):
            return
        weight = units * self._token_unit
        try:
            bucket.store.check(bucket.algorithm, bucket.rates, bucket.now(), -units)
        except Exception:  # a shared store that is down: keep the charge (slower, never over the quota)
            return
        with self._stats_lock:
            self.tokens_refunded += weight

    def try_acquire(self, tokens: int = 0) -> bool:
        """Non-blocking: take one request and ``tokens`` tokens if both fit now, else take nothing."""
        weight = max(0, int(tokens))
        if self._max_tokens is not None:
            weight = min(weight, self._max_tokens)
        if self._requests is not None and not self._requests.try_acquire("requests", 1, blocking=False):
            return False
        units = -(-weight // self._token_unit)
        if self._tokens is not None and weight and not self._tokens.try_acquire("tokens", units, blocking=False):
            return False  # the request unit is spent: a lost slot errs on the safe side of the quota
        with self._stats_lock:
            self.acquired += 1
            self.tokens_acquired += weight
        return True

    def close(self) -> None:
        for limiter in (self._requests, self._tokens):
            if limiter is not None:
                limiter.close()
        for store in self.stores.values():
            store.close()

    def __repr__(self) -> str:
        return f"RateLimiter(rpm={self.rpm}, tpm={self.tpm}, burst_seconds={self.burst_seconds})"
