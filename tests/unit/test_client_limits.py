"""The RPM/TPM limiter: bursts, token weights, clamping, a budget shared through SQLite, thread safety.

No timing assertions: the non-blocking ``try_acquire`` shows what the budget admits right now.
"""

from __future__ import annotations

import threading

import pytest

from airflow_provider_qwenocr.dashscope.limits import RateLimiter, gcra_bucket


def test_request_burst_is_rpm_over_60_per_second():
    lim = RateLimiter(rpm=180, tpm=None)  # 3 per second, burst of one second's worth
    assert [lim.try_acquire() for _ in range(4)] == [True, True, True, False]
    assert lim.acquired == 3


def test_burst_seconds_widens_the_burst():
    lim = RateLimiter(rpm=60, tpm=None, burst_seconds=5)
    assert sum(lim.try_acquire() for _ in range(10)) == 5


def test_tokens_are_weighted():
    lim = RateLimiter(rpm=None, tpm=6000, min_token_burst=1)  # 100 tokens per second of burst
    assert lim.try_acquire(60)
    assert not lim.try_acquire(60)  # 120 > 100
    assert lim.try_acquire(40)
    assert lim.tokens_acquired == 100


def test_weights_larger_than_the_bucket_are_clamped():
    lim = RateLimiter(rpm=None, tpm=600, min_token_burst=1)  # burst 10 tokens
    assert lim.max_token_weight == 10
    lim.acquire(10_000)  # must not hang: clamped to the burst
    assert lim.tokens_acquired == 10


def test_token_burst_holds_one_big_request_by_default():
    lim = RateLimiter(rpm=None, tpm=60_000)  # 1,000 tokens/s, but a 30,000-token page must pass whole
    assert lim.max_token_weight == 32_768
    assert lim.try_acquire(30_000)
    assert lim.tokens_acquired == 30_000  # charged in full, not clamped
    assert not lim.try_acquire(30_000)  # … and the next one waits for the refill
    small = RateLimiter(rpm=None, tpm=5_000)
    assert small.max_token_weight == 5_000  # never more than the quota itself


def test_no_limits_admit_everything():
    lim = RateLimiter(None, None)
    assert all(lim.try_acquire(10**6) for _ in range(1000))


def test_invalid_rate_rejected():
    with pytest.raises(ValueError):
        gcra_bucket(0)


def test_threads_never_exceed_the_burst():
    lim = RateLimiter(rpm=600, tpm=None)  # burst 10
    results = []
    lock = threading.Lock()

    def worker():
        got = [lim.try_acquire() for _ in range(10)]
        with lock:
            results.extend(got)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Within the same instant only the burst passes (a refill of at most a unit or two may slip in).
    assert 10 <= sum(results) <= 12
    assert lim.acquired == sum(results)


def test_shared_sqlite_budget_across_limiters(tmp_path):
    path = str(tmp_path / "limits.sqlite")
    a = RateLimiter(rpm=120, tpm=None, shared_path=path)  # burst 2, shared
    b = RateLimiter(rpm=120, tpm=None, shared_path=path)
    assert a.try_acquire() and b.try_acquire()
    assert not a.try_acquire() and not b.try_acquire()
    c = RateLimiter(rpm=120, tpm=None)  # a private budget is unaffected
    assert c.try_acquire()
    a.close(), b.close(), c.close()


def test_shared_budget_across_processes(tmp_path):
    import multiprocessing as mp

    path = str(tmp_path / "limits.sqlite")
    ctx = mp.get_context("spawn")
    with ctx.Pool(2) as pool:
        counts = pool.starmap(_take_all, [(path,), (path,)])
    assert sum(counts) in (5, 6)  # burst 5 between both processes (+1 if a refill lands in between)


def _take_all(path: str) -> int:
    lim = RateLimiter(rpm=6, tpm=None, burst_seconds=50, shared_path=path)  # burst 5, one refill per 10 s
    return sum(lim.try_acquire() for _ in range(5))


def test_wal_switch_waits_out_a_lock_held_by_another_process():
    """Two processes opening a fresh limiter file together: SQLite may refuse the journal-mode switch at once
    ("database is locked", not waiting its timeout); the store retries it instead of failing the task."""
    import sqlite3

    from airflow_provider_qwenocr.dashscope.limits import _switch_to_wal

    class Conn:
        calls = 0

        def execute(self, sql):
            Conn.calls += 1
            if Conn.calls <= 2:
                raise sqlite3.OperationalError("database is locked")
            assert sql == "PRAGMA journal_mode=WAL"

    _switch_to_wal(Conn())
    assert Conn.calls == 3

    class Broken:
        def execute(self, sql):
            raise sqlite3.OperationalError("disk I/O error")

    with pytest.raises(sqlite3.OperationalError, match="disk I/O"):  # anything but a lock is not retried
        _switch_to_wal(Broken())
