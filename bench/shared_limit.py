"""One request budget shared by several worker processes through the SQLite GCRA store.

Starts ``--procs`` processes that each take ``--per-proc`` requests as fast as the shared limiter allows
(quota ``--rpm``). Prints the combined rate as a share of the quota (``shared_ratio``: ≈ 1 means the
processes together stayed at — not above, not far below — the quota) and the cost of one uncontended
acquire (``acquire_us``). Usage: python bench/shared_limit.py [--procs 4] [--per-proc 100] [--rpm 1200]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from airflow_provider_qwenocr.dashscope.limits import RateLimiter
from bench._common import machine


def worker(path: str, rpm: int, n: int, start_at: float, q) -> None:
    lim = RateLimiter(rpm, None, shared_path=path)
    while time.time() < start_at:
        time.sleep(0.001)
    stamps = []
    for _ in range(n):
        lim.acquire()
        stamps.append(time.time())
    q.put(stamps)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--procs", type=int, default=4)
    ap.add_argument("--per-proc", type=int, default=100)
    ap.add_argument("--rpm", type=int, default=1200)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "limits.sqlite")
        probe = RateLimiter(10**9, None, shared_path=os.path.join(tmp, "probe.sqlite"))
        t0 = time.perf_counter()
        for _ in range(2000):
            probe.acquire()
        acquire_us = (time.perf_counter() - t0) / 2000 * 1e6
        ctx = mp.get_context("spawn")
        q = ctx.Queue()
        start_at = time.time() + 3.0
        procs = [ctx.Process(target=worker, args=(path, args.rpm, args.per_proc, start_at, q)) for _ in range(args.procs)]
        for p in procs:
            p.start()
        stamps = sorted(s for _ in procs for s in q.get())
        for p in procs:
            p.join()
    total = len(stamps)
    burst = max(1, args.rpm // 60)  # the first second's burst is allowed at once
    span = stamps[-1] - stamps[0]
    rate = (total - burst) / span * 60 if span > 0 else float("inf")
    print(f"machine: {machine()}; {args.procs} processes x {args.per_proc} requests, quota {args.rpm}/min: "
          f"{total} in {span:.1f} s = {rate:.0f}/min after the initial burst of {burst}")
    print(f"shared_ratio={rate / args.rpm:.3f} acquire_us={acquire_us:.0f} procs={args.procs}")


if __name__ == "__main__":
    main()
