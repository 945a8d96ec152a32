"""How many requests/s the emulator sustains with the ``echo`` engine: ``python -m qwenocr_emulator.loadtest``.

Why: benchmarks of the client (bench/throughput.py) must be bounded by the quota under test, never by the
emulator. This starts the emulator as a separate process (as the demo and CLI users run it), fires
``--requests`` native OCR calls from ``--concurrency`` asyncio clients with a small PNG data URL (``--client
raw``: pre-built requests on keep-alive sockets, so the client is not the bottleneck; ``httpx``: a real HTTP
client), and prints
one final line of ``name=value`` pairs: ``emulator_rps`` (wall clock, client included — on a shared machine
this depends on the neighbours), ``server_cpu_ms_per_request`` and ``server_capacity_rps_per_core`` (CPU
time of the server process alone: what one core sustains), ``requests``, ``errors``, ``p50_ms``, ``p95_ms``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request

NATIVE = "/api/v1/services/aigc/multimodal-generation/generation"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _image_url() -> str:
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (320, 96), "white")
    ImageDraw.Draw(img).text((10, 40), "load test 12345", fill="black")
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


async def _run(base: str, n: int, concurrency: int) -> tuple[float, list[float], int]:
    import httpx

    body = {"model": "qwen-vl-ocr", "input": {"messages": [{"role": "user", "content": [{"image": _image_url()}]}]},
            "parameters": {"ocr_options": {"task": "text_recognition"}}}
    latencies: list[float] = []
    errors = 0
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30, trust_env=False,
                                 headers={"Authorization": "Bearer sk-load"}) as client:
        async def worker():
            nonlocal errors
            while True:
                try:
                    queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                t = time.perf_counter()
                resp = await client.post(NATIVE, json=body)
                latencies.append(time.perf_counter() - t)
                errors += resp.status_code != 200

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started, latencies, errors


def _cpu_seconds(pid: int) -> float:
    """User+system CPU of the server process: a figure that does not depend on what else the machine runs."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):  # not Linux: fall back to psutil when present
        try:
            import psutil
        except ImportError:
            return float("nan")
        t = psutil.Process(pid).cpu_times()
        return t.user + t.system


async def _run_raw(port: int, n: int, concurrency: int) -> tuple[float, list[float], int]:
    """Same load with pre-built HTTP/1.1 requests on keep-alive sockets: a client far lighter than httpx,
    so that on a small shared machine the figure measures the server rather than the client."""
    import json

    body = json.dumps({"model": "qwen-vl-ocr", "input": {"messages": [{"role": "user", "content": [
        {"image": _image_url()}]}]}, "parameters": {"ocr_options": {"task": "text_recognition"}}}).encode()
    request = (f"POST {NATIVE} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer sk-load\r\n"
               f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
    latencies: list[float] = []
    errors = 0
    remaining = n

    async def worker():
        nonlocal errors, remaining
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while remaining > 0:
                remaining -= 1
                t = time.perf_counter()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                await reader.readexactly(length)
                latencies.append(time.perf_counter() - t)
                errors += not head.startswith(b"HTTP/1.1 200")
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started, latencies, errors


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--client", choices=("raw", "httpx"), default="raw",
                    help="raw: pre-built requests on keep-alive sockets (light); httpx: a real HTTP client")
    args = ap.parse_args(argv)
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "qwenocr_emulator", "--engine", "echo",
                             "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
                            env={**os.environ})
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(base + "/health", timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit("the emulator did not start") from None
                time.sleep(0.1)
        def run(n):
            if args.client == "raw":
                return asyncio.run(_run_raw(port, n, args.concurrency))
            return asyncio.run(_run(base, n, args.concurrency))

        run(args.warmup)
        cpu0 = _cpu_seconds(proc.pid)
        elapsed, lat, errors = run(args.requests)
        cpu = _cpu_seconds(proc.pid) - cpu0
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    lat.sort()
    print(f"emulator_rps={args.requests / elapsed:.1f} requests={args.requests} concurrency={args.concurrency} "
          f"client={args.client} "
          f"errors={errors} server_cpu_ms_per_request={cpu * 1000 / args.requests:.2f} "
          f"server_capacity_rps_per_core={args.requests / cpu:.0f} p50_ms={statistics.median(lat) * 1000:.1f} p95_ms={lat[int(len(lat) * 0.95)] * 1000:.1f}")
    return 0 if errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
