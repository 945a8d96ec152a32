"""Throughput to the quota ceiling: our client (limiter + retries + a thread pool) vs the sequential SDK loop.

Setup (issue #5): the emulator in its own process with ``--latency-ms 1000 --rpm 1200`` (the real service
answers in ~0.9–4 s) and the cheap ``echo`` engine, so the emulator is never the bottleneck. N distinct
small documents (default 400) go through ``RealtimeClient`` with the connection-level limiter set to the
quota (1,200 requests/min, 6M tokens/min) and ``--concurrency`` worker threads — once clean, once with
20 % random 429s (``--fail-rate-429 0.2``, Retry-After: 1).

The peer is what users write today: a loop calling ``dashscope.MultiModalConversation.call`` one image at a
time (measured on a subset, ``--peer-n``, against the clean emulator; it stops at the first error).

Ratios are achieved images/min ÷ the quota (1,200/min). Prints ``throughput_ratio`` (clean),
``throughput_ratio_429`` (with 20 % 429s), ``peer_ratio``, ``speedup`` (ours ÷ peer) and ``lost`` (images
that did not come back ok in either run; must be 0).
Usage: python bench/throughput.py [--n 400] [--concurrency 64] [--peer-n 20]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from airflow_provider_qwenocr.dashscope.config import ClientConfig
from airflow_provider_qwenocr.dashscope.limits import RateLimiter
from airflow_provider_qwenocr.dashscope.realtime import RealtimeClient
from airflow_provider_qwenocr.ocr.images import prepare_image
from airflow_provider_qwenocr.ocr.models import get_model
from bench._common import EmulatorProcess, machine, small_document

KEY = "sk-bench-throughput"
RPM, TPM = 1200, 6_000_000


def run_ours(base_url: str, prepared: list, concurrency: int) -> tuple[float, int, int]:
    """(seconds, ok, attempts) for all images through our client at the quota."""
    config = ClientConfig(api_key=KEY, base_url=base_url, timeout=30.0, max_retries=10, max_retry_seconds=300)
    limiter = RateLimiter(RPM, TPM)
    client = RealtimeClient(config, limiter=limiter, pool_size=concurrency)

    def one(prep):
        try:
            return client.recognize(prep, task="text_recognition").ok
        except Exception as exc:  # counted as lost
            print(f"  lost: {exc}", file=sys.stderr)
            return False

    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        oks = list(pool.map(one, prepared))
    elapsed = time.perf_counter() - t0
    client.close()
    return elapsed, sum(oks), client.calls


def run_peer(base_url: str, prepared: list) -> tuple[float, int]:
    """The sequential SDK loop users write today (dies on the first error)."""
    from dashscope import MultiModalConversation

    ok = 0
    t0 = time.perf_counter()
    for prep in prepared:
        rsp = MultiModalConversation.call(
            model="qwen-vl-ocr", api_key=KEY, base_address=base_url + "/api/v1",
            messages=[{"role": "user", "content": [{"image": prep.data_url}]}],
            ocr_options={"task": "text_recognition"},
        )
        if rsp.status_code != 200:
            break
        ok += 1
    return time.perf_counter() - t0, ok


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--peer-n", type=int, default=20)
    ap.add_argument("--latency-ms", type=int, default=1000)
    args = ap.parse_args()

    import dashscope  # noqa: F401  (import once, outside the timed runs)

    spec = get_model("qwen-vl-ocr")
    prepared = [prepare_image(small_document(i), spec) for i in range(args.n)]
    common = ["--engine", "echo", "--latency-ms", str(args.latency_ms), "--rpm", str(RPM), "--seed", "1"]
    print(f"machine: {machine()}, load {os.getloadavg()[0]:.1f}; {args.n} documents, "
          f"concurrency {args.concurrency}, emulator {' '.join(common)}")

    with EmulatorProcess(*common) as emu:
        t_clean, ok_clean, calls_clean = run_ours(emu.base_url, prepared, args.concurrency)
        s_clean = emu.stats()
        t_peer, ok_peer = run_peer(emu.base_url, prepared[: args.peer_n])
    with EmulatorProcess(*common, "--fail-rate-429", "0.2") as emu:
        t_429, ok_429, calls_429 = run_ours(emu.base_url, prepared, args.concurrency)
        s_429 = emu.stats()

    def ratio(ok: int, seconds: float) -> float:
        return ok / seconds * 60 / RPM

    r_clean, r_429, r_peer = ratio(ok_clean, t_clean), ratio(ok_429, t_429), ratio(ok_peer, t_peer)
    print(f"ours clean: {ok_clean}/{args.n} ok in {t_clean:.1f} s ({ok_clean / t_clean * 60:.0f}/min), "
          f"{calls_clean} calls, emulator statuses {s_clean.get('by_status')}")
    print(f"ours 20% 429: {ok_429}/{args.n} ok in {t_429:.1f} s ({ok_429 / t_429 * 60:.0f}/min), "
          f"{calls_429} calls, emulator statuses {s_429.get('by_status')}")
    print(f"peer (sequential SDK loop): {ok_peer}/{args.peer_n} ok in {t_peer:.1f} s ({ok_peer / t_peer * 60:.0f}/min)")
    lost = (args.n - ok_clean) + (args.n - ok_429)
    print(f"throughput_ratio={r_clean:.3f} throughput_ratio_429={r_429:.3f} peer_ratio={r_peer:.3f} "
          f"speedup={r_clean / r_peer:.1f} lost={lost}")


if __name__ == "__main__":
    main()
