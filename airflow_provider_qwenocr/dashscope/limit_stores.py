"""Where a shared RPM/TPM budget lives: Redis or PostgreSQL, and what happens when that store is lost.

Why a shared store: one DashScope account's quota is shared by every mapped OCR task on every worker and
host. Each process paces its calls through the same two GCRA states (one for requests, one for tokens), so
together they hold the quota instead of each holding all of it.

- **Redis**: pyrate-limiter's own :class:`~pyrate_limiter.buckets.redis_state.RedisStateStore` (the GCRA
  step runs as one Lua script, atomic across clients; a hash of two floats per key that expires on its own).
- **PostgreSQL**: a row per key updated under ``SELECT … FOR UPDATE`` (:class:`PostgresStateStore`).
  pyrate-limiter's ``PostgresBucket`` is not used: it is a *log* bucket that inserts one row per unit of
  weight (a 4,000-token request = 4,000 rows, 6M rows a minute at a 6M TPM quota) and rejects outright when
  another writer holds its table lock (``LOCK … NOWAIT``), which under four contending processes turns into
  false refusals rather than pacing. A one-row GCRA state has neither problem.

Keys never contain the API key: :func:`account_key` is a SHA-256 of the key and the endpoint root, so one
account (one key in one region) has one budget, and a Redis ``KEYS *`` reveals nothing.

**Lost or slow store** (:class:`FallbackStateStore`): a failing call (connection refused, a socket timeout
of ``op_timeout`` seconds, a server error) is retried with short sleeps for up to ``wait_seconds``
(default 15 s) counted from the first failure. If the store is still unusable, the process switches to a
local in-memory GCRA at ``quota ÷ expected_workers`` and logs one warning; it probes the store again every
``probe_seconds`` and returns to the shared budget (one info line) once it answers. So a lost store costs
at most ``wait_seconds`` of stalled calls, then runs each process at its static share — never unlimited.
No Airflow here: the hook turns a connection into a URL and passes it in.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from collections.abc import Callable
from urllib.parse import urlsplit

from pyrate_limiter import Rate, StateStore, WallClock
from pyrate_limiter.buckets.redis_state import RedisStateStore

log = logging.getLogger(__name__)

KEY_PREFIX = "qwenocr:gcra"
DEFAULT_WAIT_SECONDS = 15.0
DEFAULT_PROBE_SECONDS = 30.0
DEFAULT_OP_TIMEOUT = 2.0
DEFAULT_EXPECTED_WORKERS = 4


def account_key(api_key: str, root: str) -> str:
    """A stable, non-reversible name for one account's budget: sha256(api key + endpoint root)[:24]."""
    digest = hashlib.sha256(f"{api_key}\x00{root.rstrip('/')}".encode()).hexdigest()
    return digest[:24]


class PostgresStateStore(StateStore):
    """GCRA state in one row of ``qwenocr_gcra_state``, read-modify-written under a row lock.

    Each check is one short transaction: ``INSERT … ON CONFLICT DO NOTHING`` (first use), ``SELECT …
    FOR UPDATE`` (serialises writers on that row only), ``UPDATE``. ``connect`` returns a DB-API
    connection (psycopg2); one connection per thread, reopened after an error.
    """

    is_async = False
    default_clock = WallClock()
    TABLE = "qwenocr_gcra_state"

    def __init__(self, connect: Callable[[], object], key: str) -> None:
        self.connect = connect
        self.key = key
        self._local = threading.local()
        self._created = False

    def _conn(self):
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self.connect()
            self._local.conn = conn
            if not self._created:
                with conn.cursor() as cur:
                    cur.execute("SELECT pg_advisory_xact_lock(727011)")  # concurrent CREATE IF NOT EXISTS races
                    cur.execute(f"CREATE TABLE IF NOT EXISTS {self.TABLE} (key TEXT PRIMARY KEY, state TEXT NOT NULL)")
                conn.commit()
                self._created = True
        return conn

    def _drop_conn(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # already broken: nothing to release
                pass

    @staticmethod
    def _decode(algorithm, rates, row):
        if row and row[0]:
            values = row[0].split(",")
            if len(values) == len(rates):
                return algorithm.decode(values)
        return algorithm.initial(rates)

    def check(self, algorithm, rates, now, weight):
        try:
            conn = self._conn()
            with conn.cursor() as cur:
                cur.execute(f"INSERT INTO {self.TABLE} (key, state) VALUES (%s, '') ON CONFLICT DO NOTHING",
                            (self.key,))
                cur.execute(f"SELECT state FROM {self.TABLE} WHERE key = %s FOR UPDATE", (self.key,))
                state = self._decode(algorithm, rates, cur.fetchone())
                new_state, decision = algorithm.step(rates, state, now, weight)
                if decision.allowed:
                    cur.execute(f"UPDATE {self.TABLE} SET state = %s WHERE key = %s",
                                (",".join(str(int(v)) for v in new_state), self.key))
            conn.commit()
            return decision
        except Exception:
            self._drop_conn()
            raise

    def read(self, algorithm, rates):
        conn = self._conn()
        with conn.cursor() as cur:
            cur.execute(f"SELECT state FROM {self.TABLE} WHERE key = %s", (self.key,))
            row = cur.fetchone()
        conn.commit()
        return self._decode(algorithm, rates, row)

    def reset(self) -> None:
        conn = self._conn()
        with conn.cursor() as cur:
            cur.execute(f"DELETE FROM {self.TABLE} WHERE key = %s", (self.key,))
        conn.commit()

    def close(self) -> None:
        self._drop_conn()


def _share(rate: Rate, workers: int) -> Rate:
    """``rate`` ÷ ``workers``, same burst: a weight the shared bucket admits must still fit locally."""
    return Rate(max(1, rate.limit // workers), rate.interval, burst=rate.burst)


class FallbackStateStore(StateStore):
    """A shared store that degrades, boundedly, to a local share of the quota when it is lost or slow.

    See the module docstring for the behaviour. ``errors`` are the exceptions that mean "store lost or
    slow" (the driver's own, plus ``OSError``); ``sleep``/``monotonic`` are injectable for tests.
    """

    is_async = False
    default_clock = WallClock()

    def __init__(self, primary: StateStore, *, expected_workers: int = DEFAULT_EXPECTED_WORKERS,
                 wait_seconds: float = DEFAULT_WAIT_SECONDS, probe_seconds: float = DEFAULT_PROBE_SECONDS,
                 name: str = "limiter store", errors: tuple[type[BaseException], ...] = (OSError,),
                 sleep: Callable[[float], None] = time.sleep,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        if expected_workers < 1:
            raise ValueError("expected_workers must be >= 1")
        self.primary = primary
        self.expected_workers = expected_workers
        self.wait_seconds = wait_seconds
        self.probe_seconds = probe_seconds
        self.name = name
        self.errors = errors
        self._sleep, self._monotonic = sleep, monotonic
        self._lock = threading.Lock()
        self._failing_since: float | None = None
        self._fallback_until: float | None = None  # in fallback until this monotonic time, then probe
        self._local_state = None
        self._local_rates: list[Rate] | None = None
        self.fallback_checks = 0
        self.warnings = 0

    @property
    def in_fallback(self) -> bool:
        return self._fallback_until is not None

    def _local_check(self, algorithm, rates, now, weight):
        with self._lock:
            if self._local_rates is None or len(self._local_rates) != len(rates):
                self._local_rates = [_share(r, self.expected_workers) for r in rates]
                self._local_state = algorithm.initial(self._local_rates)
            self._local_state, decision = algorithm.step(self._local_rates, self._local_state, now, weight)
            self.fallback_checks += 1
            return decision

    def _enter_fallback(self, exc: BaseException) -> None:
        with self._lock:
            first = self._fallback_until is None
            self._fallback_until = self._monotonic() + self.probe_seconds
        if first:
            self.warnings += 1
            log.warning("%s unusable for %.0f s (%s: %s): this process now paces itself at 1/%d of the quota "
                        "(a local limiter) and retries the shared store every %.0f s",
                        self.name, self.wait_seconds, type(exc).__name__, exc, self.expected_workers,
                        self.probe_seconds)

    def check(self, algorithm, rates, now, weight):
        if self._fallback_until is not None and self._monotonic() < self._fallback_until:
            return self._local_check(algorithm, rates, now, weight)
        probing = self._fallback_until is not None
        delay = 0.05
        while True:
            try:
                decision = self.primary.check(algorithm, rates, now, weight)
            except self.errors as exc:  # the store's own failures; a bug in our code still raises
                started = self._failing_since
                if started is None:
                    started = self._failing_since = self._monotonic()
                if probing or self._monotonic() - started >= self.wait_seconds:
                    self._enter_fallback(exc)
                    return self._local_check(algorithm, rates, now, weight)
                log.debug("%s failed (%s); retrying", self.name, exc)
                self._sleep(min(delay, max(0.0, self.wait_seconds - (self._monotonic() - started))))
                delay = min(delay * 2, 1.0)
                continue
            if self._fallback_until is not None or self._failing_since is not None:
                if self._fallback_until is not None:
                    log.info("%s answers again: back on the shared budget", self.name)
                self._fallback_until = self._failing_since = None
            return decision

    def read(self, algorithm, rates):
        if self.in_fallback and self._local_state is not None:
            return self._local_state
        return self.primary.read(algorithm, rates)

    def reset(self) -> None:
        self._local_state = None
        self.primary.reset()

    def close(self) -> None:
        self.primary.close()


def _redis_client(url: str, op_timeout: float):
    try:
        import redis
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("a Redis limiter store needs the 'redis' package: pip install redis") from exc
    client = redis.Redis.from_url(url, socket_timeout=op_timeout, socket_connect_timeout=op_timeout)
    return client, (OSError, redis.exceptions.RedisError)


def _postgres_connect(url: str, op_timeout: float) -> Callable[[], object]:
    try:
        import psycopg2
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("a PostgreSQL limiter store needs psycopg2: pip install psycopg2-binary") from exc
    ms = int(op_timeout * 1000)

    def connect():
        return psycopg2.connect(url, connect_timeout=max(1, math.ceil(op_timeout)),
                                options=f"-c statement_timeout={ms} -c lock_timeout={ms}")

    return connect, (OSError, psycopg2.OperationalError, psycopg2.InterfaceError)


def shared_stores(url: str, account: str, *, expected_workers: int = DEFAULT_EXPECTED_WORKERS,
                  wait_seconds: float = DEFAULT_WAIT_SECONDS, probe_seconds: float = DEFAULT_PROBE_SECONDS,
                  op_timeout: float = DEFAULT_OP_TIMEOUT) -> dict[str, FallbackStateStore]:
    """``{"requests": store, "tokens": store}`` for a ``redis://``/``rediss://`` or ``postgresql://`` URL.

    ``account`` is :func:`account_key` of the DashScope key and endpoint. Each store is wrapped in a
    :class:`FallbackStateStore` (bounded wait, then a local share of the quota).
    """
    scheme = urlsplit(url).scheme.lower()
    stores: dict[str, FallbackStateStore] = {}
    if scheme in ("redis", "rediss", "unix"):
        client, errors = _redis_client(url, op_timeout)
        for kind in ("requests", "tokens"):
            stores[kind] = FallbackStateStore(RedisStateStore(client, f"{KEY_PREFIX}:{account}:{kind}"),
                                              expected_workers=expected_workers, wait_seconds=wait_seconds,
                                              probe_seconds=probe_seconds, name=f"Redis limiter store ({kind})",
                                              errors=errors)
    elif scheme in ("postgres", "postgresql"):
        connect, errors = _postgres_connect(url.replace("postgres://", "postgresql://", 1), op_timeout)
        for kind in ("requests", "tokens"):
            stores[kind] = FallbackStateStore(PostgresStateStore(connect, f"{account}:{kind}"),
                                              expected_workers=expected_workers, wait_seconds=wait_seconds,
                                              probe_seconds=probe_seconds, errors=errors,
                                              name=f"PostgreSQL limiter store ({kind})")
    else:
        raise ValueError(f"unsupported limiter store URL scheme {scheme!r}: use redis://, rediss:// or postgresql://")
    return stores
