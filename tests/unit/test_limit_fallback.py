"""The shared limiter's store contract without a server: account keys, and the bounded behaviour when the
store is lost (wait up to ``wait_seconds``, then quota ÷ expected_workers locally, one warning, recovery).

The clock is injected (a fake monotonic + sleep), so the bounds are exact and no test sleeps.
"""

from __future__ import annotations

import logging

import pytest
from pyrate_limiter import GCRA, InMemoryStateStore

from airflow_provider_qwenocr.dashscope.limit_stores import FallbackStateStore, account_key, shared_stores
from airflow_provider_qwenocr.dashscope.limits import RateLimiter, gcra_bucket


class FlakyStore(InMemoryStateStore):
    """An in-memory GCRA store that raises ConnectionError while ``down`` is set."""

    def __init__(self):
        super().__init__()
        self.down = False
        self.calls = 0

    def check(self, algorithm, rates, now, weight):
        self.calls += 1
        if self.down:
            raise ConnectionError("store unreachable")  # an OSError
        return super().check(algorithm, rates, now, weight)


class FakeClock:
    def __init__(self):
        self.t = 1000.0
        self.slept = 0.0

    def monotonic(self):
        return self.t

    def sleep(self, s):
        self.t += s
        self.slept += s


def _fallback(store, clock, **kw):
    return FallbackStateStore(store, sleep=clock.sleep, monotonic=clock.monotonic, **kw)


def test_account_key_hides_the_api_key_and_separates_accounts():
    key = account_key("sk-secret-123", "https://dashscope.aliyuncs.com")
    assert "sk-secret" not in key and len(key) == 24
    assert key == account_key("sk-secret-123", "https://dashscope.aliyuncs.com/")  # trailing slash: same account
    assert key != account_key("sk-secret-123", "https://dashscope-intl.aliyuncs.com")  # another region
    assert key != account_key("sk-other", "https://dashscope.aliyuncs.com")


def test_healthy_store_is_used_and_shared():
    clock, inner = FakeClock(), FlakyStore()
    a = RateLimiter(rpm=None, tpm=None, request_bucket=gcra_bucket(120, store=_fallback(inner, clock)))
    b = RateLimiter(rpm=None, tpm=None, request_bucket=gcra_bucket(120, store=_fallback(inner, clock)))
    assert a.try_acquire() and b.try_acquire()  # burst 2 between both
    assert not a.try_acquire() and not b.try_acquire()
    assert inner.calls == 4


def test_lost_store_waits_the_bound_then_falls_back_to_a_share_with_one_warning(caplog):
    clock, inner = FakeClock(), FlakyStore()
    store = _fallback(inner, clock, expected_workers=4, wait_seconds=5.0, probe_seconds=30.0)
    inner.down = True
    rates = gcra_bucket(2400).rates  # 40/s, burst 40
    algo = GCRA()
    with caplog.at_level(logging.WARNING):
        first = store.check(algo, rates, 0, 1)
    assert first.allowed and store.in_fallback
    assert 5.0 <= clock.slept <= 5.0 + 1e-9  # waited exactly the bound, no more
    # In fallback: the local share is a quarter of the sustained rate (burst kept: 40 at once).
    admitted = sum(store.check(algo, rates, 0, 1).allowed for _ in range(200))
    assert admitted == 39  # the burst at t=0 (40, one already taken), not 200: never unlimited
    later = sum(store.check(algo, rates, 10_000, 1).allowed for _ in range(200))
    assert later == 40  # 10 s later: 100 units refilled at 10/s, capped at the burst of 40
    shortly = sum(store.check(algo, rates, 11_000, 1).allowed for _ in range(200))
    # One more second: the share's sustained rate, (2400 − 40) / 4 = 590/min ≈ 9.8/s — not the full 40/s.
    assert shortly == 9
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "1/4 of the quota" in warnings[0].getMessage()


def test_fallback_probes_the_store_again_and_returns_to_it():
    clock, inner = FakeClock(), FlakyStore()
    store = _fallback(inner, clock, expected_workers=2, wait_seconds=1.0, probe_seconds=30.0)
    algo, rates = GCRA(), gcra_bucket(600).rates
    inner.down = True
    store.check(algo, rates, 0, 1)
    assert store.in_fallback
    calls = inner.calls
    store.check(algo, rates, 1, 1)  # within the probe interval: the store is not touched
    assert inner.calls == calls
    clock.t += 31
    store.check(algo, rates, 2, 1)  # one probe, still down: straight back to local, no second wait
    assert inner.calls == calls + 1 and store.in_fallback
    inner.down = False
    clock.t += 31
    assert store.check(algo, rates, 3, 1).allowed
    assert not store.in_fallback and store.warnings == 1


def test_a_short_outage_is_ridden_out_without_falling_back():
    clock, inner = FakeClock(), FlakyStore()
    store = _fallback(inner, clock, wait_seconds=10.0)
    algo, rates = GCRA(), gcra_bucket(600).rates
    inner.down = True
    real_sleep = clock.sleep

    def sleep_then_recover(s):
        real_sleep(s)
        if clock.slept > 0.3:
            inner.down = False

    store._sleep = sleep_then_recover
    assert store.check(algo, rates, 0, 1).allowed
    assert not store.in_fallback and store.warnings == 0 and clock.slept < 1.0


def test_unknown_store_scheme_is_refused():
    with pytest.raises(ValueError, match="redis://"):
        shared_stores("mysql://x", "acct")


def test_expected_workers_must_be_positive():
    with pytest.raises(ValueError):
        FallbackStateStore(FlakyStore(), expected_workers=0)
