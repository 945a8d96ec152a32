"""Full-resolution scans to the token ceiling: the operator's own path, from files on disk, CPU per page.

Setup (issue #11): ``--n`` (default 200) distinct 12-MP (4000×3000) colour JPEG scans are written to a temp
dir first. Then ``QwenOcrOperator.execute`` — sources → ``runs/realtime.run`` → the hook's client → the results
writer and cache, the hook built from an ``AIRFLOW_CONN_DASHSCOPE_DEFAULT`` connection — OCRs the folder with
``--concurrency`` calls in flight against the emulator in **its own process** with
``--engine echo --latency-ms 1500 --rpm 1200 --tpm 6000000``.

Measured:
- ``tpm_ratio``: tokens billed (sum of the rows' usage) per minute of the task's wall time ÷ 6M.
- ``pages_per_s``: rows ok ÷ the task's wall time.
- ``cpu_ms_per_page``: ``time.process_time()`` of this process (all its threads) across ``execute`` ÷ pages.
  Nothing else runs in this process meanwhile; the emulator is another process.
- ``emulator_cpu_ms_per_page``: utime+stime of the emulator process (``/proc/<pid>/stat``) across the run ÷ pages.
- ``peer_ratio``: the sequential SDK loop users write (``dashscope.MultiModalConversation.call`` one file
  after another, ``file://`` path → the SDK uploads it) on ``--peer-n`` of the same files, same ratio.
- ``lost``: images without a row in the results file (must be 0); failed rows are printed too.
- ``stages``: the worker's per-page CPU split, measured sequentially on ``--stage-n`` files in this process
  (read, sha256, prepare_image, request JSON); ``rest`` is what the run cost beyond them (HTTP, SDK,
  threads, limiter, rows and cache).
- ``startup_s`` / ``pace`` / ``tail_s``: the task's wall split at the HTTP attempts (``CallClock``): ``execute``
  → first call sent (it includes the dashscope SDK import, ~0.6 s of CPU without bytecode caches: a task
  pays it, so it is not imported before the clock), attempts sent per second between the first and the last
  (the limiter's pace when the CPU keeps up), last call sent → done (one latency).
- ``gc_ms_per_page``: wall time in the cyclic garbage collector during ``execute`` (``gc.callbacks``).
The machine's load (``os.getloadavg``) is printed with every figure: on a shared machine they are depressed.
Diagnostics (not the headline): ``--prepared`` (every image prepared before the clock: the path without
``prepare_image``), ``--no-refund`` (the limiter keeps each call's full charge), ``--gc-freeze``; and
``--compiled``: the imports inside ``execute`` read bytecode compiled before the clock, as after a pip install
(this environment sets ``PYTHONDONTWRITEBYTECODE=1`` and uv installs no .pyc: every process compiles the SDK).
Usage: python bench/fullres.py [--n 200] [--concurrency 32] [--peer-n 8] [--images-dir DIR] [--pillow]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench._common import EmulatorProcess, machine

KEY = "sk-bench-fullres"
RPM, TPM = 1200, 6_000_000
EMULATOR_ARGS = ("--engine", "echo", "--latency-ms", "1500", "--rpm", str(RPM), "--tpm", str(TPM), "--seed", "1")


def write_scans(folder: str, n: int, width: int = 4000, height: int = 3000) -> None:
    """``n`` distinct colour scans: paper noise (shifted per file), 40 lines of text naming the file, a stamp."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFont

    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(11)
    noise = rng.normal(0, 5, (height // 2, width // 2)).astype(np.int16)
    noise = np.kron(noise, np.ones((2, 2), dtype=np.int16))  # scanner-like 2-px grain
    paper = np.array([236, 232, 224], dtype=np.int16)
    try:
        font = ImageFont.load_default(size=48)
    except TypeError:  # Pillow < 10.1
        font = ImageFont.load_default()
    for i in range(n):
        path = os.path.join(folder, f"scan_{i:05d}.jpg")
        if os.path.exists(path):
            continue
        shifted = np.roll(noise, (i * 37) % height, axis=0)[:, :, None]
        img = Image.fromarray((paper + shifted).clip(0, 255).astype(np.uint8))
        d = ImageDraw.Draw(img)
        for row in range(40):
            d.text((200, 150 + row * 68), f"{i:05d}-{row:02d} Invoice total {i * 3.17 + row:.2f} CNY quick brown fox",
                   fill=(20, 20, 30), font=font)
        d.ellipse((width - 900, height - 900, width - 300, height - 300), outline=(200, 30, 30), width=18)
        img.save(path, "JPEG", quality=92)


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime (+ waited-for children) of ``pid`` from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    ticks = sum(int(fields[i]) for i in (11, 12, 13, 14))  # utime stime cutime cstime (fields 14-17)
    return ticks / os.sysconf("SC_CLK_TCK")


class GcTimer:
    """Wall time spent in the cyclic garbage collector (``gc.callbacks``), per generation, while active."""

    def __init__(self) -> None:
        self.seconds = [0.0, 0.0, 0.0]
        self.count = [0, 0, 0]
        self._t0 = 0.0

    def _cb(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
        else:
            self.seconds[info["generation"]] += time.perf_counter() - self._t0
            self.count[info["generation"]] += 1

    def __enter__(self) -> GcTimer:
        gc.callbacks.append(self._cb)
        return self

    def __exit__(self, *exc) -> None:
        gc.callbacks.remove(self._cb)


class CallClock:
    """Start and end (perf_counter) of every HTTP attempt the client makes (wraps ``RealtimeClient._http``),
    to split the task's wall time into start-up (execute → first call sent), the paced middle and the tail
    (last call sent → last answer)."""

    def __init__(self) -> None:
        self.spans: list[tuple[float, float]] = []
        self._lock = threading.Lock()

    def __enter__(self) -> CallClock:
        from airflow_provider_qwenocr.dashscope.realtime import RealtimeClient

        self._cls, self._orig = RealtimeClient, RealtimeClient._http
        orig, spans, lock = self._orig, self.spans, self._lock

        def timed(client, *a, **k):
            t0 = time.perf_counter()
            try:
                return orig(client, *a, **k)
            finally:
                with lock:
                    spans.append((t0, time.perf_counter()))

        RealtimeClient._http = timed
        return self

    def __exit__(self, *exc) -> None:
        self._cls._http = self._orig

    def split(self, t0: float, t_end: float) -> dict[str, float]:
        starts = sorted(s for s, _ in self.spans)
        if not starts:
            return {}
        mid = starts[-1] - starts[0]
        return {"startup": starts[0] - t0, "paced": mid, "tail": t_end - starts[-1],
                "pace": (len(starts) - 1) / mid if mid > 0 else 0.0}


def run_operator(folder: str, work: str, concurrency: int) -> dict:
    from airflow_provider_qwenocr.operators.ocr import QwenOcrOperator

    out_uri = os.path.join(work, "results.jsonl")
    op = QwenOcrOperator(task_id="ocr_fullres", images=folder, output_uri=out_uri,
                         cache_uri=os.path.join(work, "cache"), max_concurrency=concurrency)
    w0, c0, t0 = time.perf_counter(), time.process_time(), os.times()
    with GcTimer() as gct, CallClock() as calls:
        summary = op.execute({})
    w1, cpu, t1 = time.perf_counter(), time.process_time() - c0, os.times()
    wall = w1 - w0
    rows = [json.loads(line) for line in open(out_uri, encoding="utf-8")]
    return {"wall": wall, "cpu": cpu, "user": t1.user - t0.user, "sys": t1.system - t0.system,
            "summary": summary, "rows": rows, "gc": gct,
            "split": calls.split(w0, w1), "attempts": len(calls.spans)}


def run_peer(base_url: str, files: list[str]) -> tuple[float, int, int]:
    """(seconds, ok, tokens) of the sequential SDK loop over ``files`` (stops at the first error)."""
    import dashscope
    from dashscope import MultiModalConversation

    dashscope.base_http_api_url = base_url + "/api/v1"  # its file:// upload reads the global base URL
    ok = tokens = 0
    t0 = time.perf_counter()
    for path in files:
        rsp = MultiModalConversation.call(model="qwen-vl-ocr", api_key=KEY, base_address=base_url + "/api/v1",
                                          messages=[{"role": "user", "content": [{"image": "file://" + path}]}],
                                          ocr_options={"task": "text_recognition"})
        if rsp.status_code != 200:
            print(f"  peer stopped: {rsp.status_code} {rsp.code} {rsp.message}", file=sys.stderr)
            break
        ok += 1
        tokens += int(rsp.usage.get("input_tokens", 0)) + int(rsp.usage.get("output_tokens", 0))
    return time.perf_counter() - t0, ok, tokens


def stage_profile(files: list[str]) -> dict[str, float]:
    """Median CPU ms per page of each stage the worker runs, measured one after another in this process."""
    from airflow_provider_qwenocr.ocr.images import prepare_image, sha256_hex
    from airflow_provider_qwenocr.ocr.models import get_model

    spec = get_model("qwen-vl-ocr")
    times: dict[str, list[float]] = {"read": [], "sha256": [], "prepare": [], "json": []}
    for path in files:
        t = time.process_time()
        with open(path, "rb") as fh:
            data = fh.read()
        times["read"].append(time.process_time() - t)
        t = time.process_time()
        sha = sha256_hex(data)
        times["sha256"].append(time.process_time() - t)
        t = time.process_time()
        prep = prepare_image(data, spec, sha256=sha)
        times["prepare"].append(time.process_time() - t)
        t = time.process_time()
        json.dumps({"model": "qwen-vl-ocr", "input": {"messages": [{"role": "user", "content": [
            {"image": prep.data_url}]}]}, "parameters": {}}).encode()
        times["json"].append(time.process_time() - t)
    return {k: statistics.median(v) * 1000 for k, v in times.items()}


def use_compiled_imports() -> None:
    """``--compiled``: what the task imports inside ``execute`` (the SDK above all: 0.57 s of CPU from source,
    0.25 s from bytecode) is compiled now, in a child process, into a cache this process then reads
    (``sys.pycache_prefix``), as pip's install-time compilation would leave it."""
    import subprocess

    prefix = os.path.join(tempfile.gettempdir(), "qwenocr-bench-pycache")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"} | {"PYTHONPYCACHEPREFIX": prefix}
    modules = "dashscope, airflow_provider_qwenocr.runs.realtime, airflow_provider_qwenocr.operators.ocr"
    subprocess.run([sys.executable, "-c", f"import {modules}"], env=env, check=True, cwd=os.path.dirname(
        os.path.dirname(os.path.abspath(__file__))), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sys.pycache_prefix = prefix
    sys.dont_write_bytecode = False


def preload(files: list[str]) -> None:
    """``--prepared``: every file prepared now; the runner's ``prepare_image`` then returns the prepared image."""
    from airflow_provider_qwenocr.ocr.images import prepare_image, sha256_hex
    from airflow_provider_qwenocr.ocr.models import get_model
    from airflow_provider_qwenocr.runs import realtime as runner

    spec = get_model("qwen-vl-ocr")
    done = {}
    for path in files:
        with open(path, "rb") as fh:
            data = fh.read()
        sha = sha256_hex(data)
        done[sha] = prepare_image(data, spec, sha256=sha)
    runner.prepare_image = lambda data, spec, *, sha256, **kw: done[sha256]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--peer-n", type=int, default=8)
    ap.add_argument("--stage-n", type=int, default=10)
    ap.add_argument("--images-dir", default=None, help="keep the generated scans here (reused when present)")
    ap.add_argument("--pillow", action="store_true", help="switch the fast path off: the Pillow path, for comparison")
    ap.add_argument("--prepared", action="store_true",
                    help="diagnostic: prepare every image before the clock, so the run measures the operator path "
                         "without prepare_image (what bounds tpm_ratio when the CPU is not the bottleneck)")
    ap.add_argument("--no-refund", action="store_true",
                    help="diagnostic: the limiter keeps each call's full charge (RateLimiter.refund off), for comparison")
    ap.add_argument("--compiled", action="store_true",
                    help="run as a pip-installed package runs: imports read bytecode compiled before the clock "
                         "(this environment sets PYTHONDONTWRITEBYTECODE=1 and uv installs without .pyc files)")
    ap.add_argument("--gc-freeze", action="store_true",
                    help="diagnostic: gc.freeze() before execute (the imported heap leaves the collector's full passes)")
    args = ap.parse_args()
    if args.compiled:
        use_compiled_imports()
    if args.pillow:
        from airflow_provider_qwenocr.ocr import jpeg_fast

        jpeg_fast.simplejpeg = None

    with tempfile.TemporaryDirectory(prefix="qwenocr-bench-fullres-") as tmp:
        folder = args.images_dir or os.path.join(tmp, "scans")
        t0 = time.perf_counter()
        write_scans(folder, args.n)
        files = sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".jpg"))[: args.n]
        mb = sum(os.path.getsize(f) for f in files) / 1e6
        print(f"{len(files)} scans 4000x3000 on disk ({mb:.0f} MB) in {time.perf_counter() - t0:.0f} s")
        if args.images_dir and len(files) < args.n:
            raise SystemExit(f"{args.images_dir} holds only {len(files)} scans")
        os.environ.update({
            "AIRFLOW_HOME": os.path.join(tmp, "airflow"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        })
        # Not imported here: the dashscope SDK is imported inside the task (its ~0.6 s is part of start-up).
        from airflow_provider_qwenocr.ocr import jpeg_fast
        from airflow_provider_qwenocr.operators.ocr import QwenOcrOperator  # noqa: F401

        stages = stage_profile(files[: args.stage_n])
        if args.prepared:
            preload(files)
        if args.no_refund:
            from airflow_provider_qwenocr.dashscope.limits import RateLimiter

            RateLimiter.refund = lambda self, tokens: None
        with EmulatorProcess(*EMULATOR_ARGS) as emu:
            os.environ["AIRFLOW_CONN_DASHSCOPE_DEFAULT"] = json.dumps({
                "conn_type": "dashscope", "password": KEY, "host": emu.base_url,
                "extra": {"rpm": RPM, "tpm": TPM}})
            load0 = os.getloadavg()[0]
            if args.gc_freeze:
                gc.freeze()
            e0 = proc_cpu_seconds(emu.proc.pid)
            res = run_operator(folder, os.path.join(tmp, "run"), args.concurrency)
            e1 = proc_cpu_seconds(emu.proc.pid)
            load1 = os.getloadavg()[0]
            stats = emu.stats()
            t_peer, ok_peer, tok_peer = run_peer(emu.base_url, files[: args.peer_n])

    rows = res["rows"]
    ok_rows = [r for r in rows if r.get("status") == "ok"]
    sources = {r.get("source") for r in rows}
    lost = sum(1 for f in files if f not in sources and os.path.basename(f) not in
               {os.path.basename(str(s)) for s in sources})
    tokens = sum(int((r.get("usage") or {}).get("input_tokens", 0)) + int((r.get("usage") or {}).get("output_tokens", 0))
                 for r in ok_rows)
    n_ok = len(ok_rows)
    per_min = TPM / 60
    tpm_ratio = tokens / res["wall"] / per_min
    peer_ratio = tok_peer / t_peer / per_min if t_peer else 0.0
    cpu_page = res["cpu"] / max(1, n_ok) * 1000
    emu_page = (e1 - e0) / max(1, n_ok) * 1000
    staged = sum(stages.values())
    print(f"machine: {machine()}; load {load0:.1f} at start, {load1:.1f} at end; fast path "
          f"{'on' if jpeg_fast.available() else 'off (--pillow)' if args.pillow else 'OFF (install the fast extra)'}; "
          f"concurrency {args.concurrency}; "
          f"{'PREPARED BEFORE THE CLOCK (diagnostic); ' if args.prepared else ''}"
          f"{'limiter refunds OFF (diagnostic); ' if args.no_refund else ''}"
          f"{'gc.freeze() before execute (diagnostic); ' if args.gc_freeze else ''}"
          f"{'imports from bytecode compiled before the clock (--compiled); ' if args.compiled else ''}"
          f"emulator {' '.join(EMULATOR_ARGS)}")
    print(f"ours: {n_ok}/{len(files)} ok, {len(rows) - n_ok} failed rows, in {res['wall']:.1f} s, "
          f"{tokens} tokens ({tokens / max(1, n_ok):.0f}/page), worker CPU {res['cpu']:.1f} s "
          f"(user {res['user']:.1f}, system {res['sys']:.1f}), "
          f"emulator CPU {e1 - e0:.1f} s, emulator statuses {stats.get('by_status')}")
    gct = res["gc"]
    print(f"garbage collector during the run: {sum(gct.seconds) / max(1, n_ok) * 1000:.1f} ms/page "
          f"(collections by generation {gct.count}, seconds {[round(x, 2) for x in gct.seconds]})")
    sp = res["split"]
    if sp:
        print(f"wall split: start-up {sp['startup']:.2f} s (execute → first call sent), paced {sp['paced']:.2f} s "
              f"({res['attempts']} attempts sent at {sp['pace']:.2f}/s; the quota allows "
              f"{TPM / 60 / (tokens / max(1, n_ok)):.2f} pages/s), tail {sp['tail']:.2f} s (last call sent → done)")
    print(f"peer (sequential SDK loop, file://): {ok_peer}/{args.peer_n} ok in {t_peer:.1f} s")
    print("stages (CPU ms/page, sequential): " + " ".join(f"{k}={v:.1f}" for k, v in stages.items())
          + f" rest={cpu_page - staged:.1f}")
    print(f"tpm_ratio={tpm_ratio:.3f} pages_per_s={n_ok / res['wall']:.2f} cpu_ms_per_page={cpu_page:.0f} "
          f"emulator_cpu_ms_per_page={emu_page:.0f} peer_ratio={peer_ratio:.3f} lost={lost} "
          f"startup_s={sp.get('startup', 0):.2f} pace={sp.get('pace', 0):.2f} tail_s={sp.get('tail', 0):.2f} "
          f"gc_ms_per_page={sum(gct.seconds) / max(1, n_ok) * 1000:.1f} load={load0:.1f}-{load1:.1f}")


if __name__ == "__main__":
    main()
