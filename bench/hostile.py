"""Hostile servers and files (issue 20 #1–#5): wall time and peak RSS of each case, one child process each.

Usage: ``python bench/hostile.py`` (all cases) or ``python bench/hostile.py drip_answer glob_loops``.
Run it with ``PYTHONPATH=<a checkout>`` to measure that checkout's code ("before" = main).

Cases (every server is on 127.0.0.1, in this parent process; the case runs in a child whose memory and
time are what is measured):

- ``drip_answer``   realtime call, ``timeout=5``: 200, ``Connection: close``, no Content-Length, 1 byte / 2 s;
- ``endless_answer`` realtime call, ``timeout=20``: 200 without end, as fast as the client reads;
- ``fetch_drip``    ``fetch=True`` source (call timeout 5 s): 1 byte / 2 s, no Content-Length;
- ``fetch_endless`` ``fetch=True`` source: endless body;
- ``fake_png``      a 2 GB sparse file of zeros named ``scan.png`` (no disk used), read as a source;
- ``glob_loops``    ``**/*.png`` over a folder with two directory links back up the tree.

The parent samples the child's RSS every 50 ms and kills it at :data:`MAX_SECONDS` or :data:`MAX_RSS_MB`
(then the result says ``>`` honestly). Last line: ``name=value`` pairs (``<case>_s``, ``<case>_mb``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the parent's own imports

from tests.fixtures.hostile import HostileServer

MAX_SECONDS = 60.0
MAX_RSS_MB = 1536

# -- servers (parent process): tests/fixtures/hostile.py, the tests' own hostile server -----------------


def hostile_server(mode: str) -> HostileServer:
    """``drip``: the head then 1 byte every 2 s; ``endless``: 64 KiB blocks, more than the child may hold
    (4 GiB > :data:`MAX_RSS_MB`) and longer than it may run, so the caps here decide. No Content-Length."""
    return HostileServer(mode, interval=2.0, max_seconds=MAX_SECONDS + 10, max_bytes=4 * 1024**3)


# -- cases (child process) --------------------------------------------------------------------------

_REALTIME = """
import io, time
from PIL import Image
from airflow_provider_qwenocr.dashscope.config import ClientConfig
from airflow_provider_qwenocr.dashscope.realtime import RealtimeClient
from airflow_provider_qwenocr.dashscope.breaker import CircuitBreaker
from airflow_provider_qwenocr.ocr.images import prepare_image
from airflow_provider_qwenocr.ocr.models import get_model
buf = io.BytesIO(); Image.new("RGB", (120, 60), "white").save(buf, "PNG")
img = prepare_image(buf.getvalue(), get_model("qwen-vl-ocr"))
cfg = ClientConfig(api_key="sk-bench-0123456789abcdef", base_url=BASE, timeout=TIMEOUT, max_retries=0)
client = RealtimeClient(cfg, breaker=CircuitBreaker(failures=0))
try:
    client.recognize(img, task="text_recognition")
    outcome = "answer"
except Exception as exc:
    outcome = getattr(exc, "code", None) or type(exc).__name__
"""

_FETCH = """
from airflow_provider_qwenocr.runs.sources import expand_sources
try:
    (src,) = expand_sources(BASE + "/scan.png", fetch=True, fetch_timeout=5.0)
except TypeError:  # a version without fetch_timeout
    (src,) = expand_sources(BASE + "/scan.png", fetch=True)
try:
    src.read()
    outcome = "read"
except Exception as exc:
    outcome = getattr(exc, "code", None) or type(exc).__name__
"""

_FAKE_PNG = """
from airflow_provider_qwenocr.runs.sources import expand_sources
(src,) = expand_sources(PATH)
try:
    data = src.read()
    outcome = f"read {len(data):,} bytes"
except Exception as exc:
    outcome = getattr(exc, "code", None) or type(exc).__name__
"""

_GLOB = """
from airflow_provider_qwenocr.runs.sources import expand_sources
outcome = f"{len(expand_sources(PATTERN))} sources"
"""

_TAIL = """
from bench_rss_probe import peak
print("OUTCOME", outcome, peak(), flush=True)
"""

_PROBE = '''
def peak():
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) // 1024
    return -1
'''


def _rss_mb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) // 1024
    except OSError:
        pass
    return 0


def run_case(name: str, code: str, work: str) -> tuple[str, str, str]:
    """(seconds, peak MB, outcome) of ``code`` in a child, killed at the caps."""
    with open(os.path.join(work, "bench_rss_probe.py"), "w") as fh:
        fh.write(_PROBE)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (os.environ.get("PYTHONPATH"), work) if p)}
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-c", code + _TAIL], env=env, cwd=work, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    peak, killed = 0, ""
    while proc.poll() is None:
        peak = max(peak, _rss_mb(proc.pid))
        elapsed = time.monotonic() - started
        if elapsed > MAX_SECONDS:
            killed = f"> {MAX_SECONDS:.0f} s"
        elif peak > MAX_RSS_MB:
            killed = f"> {MAX_RSS_MB} MB"
        if killed:
            proc.kill()
            break
        time.sleep(0.05)
    out = proc.communicate()[0]
    elapsed = time.monotonic() - started
    if killed:
        return (f">{elapsed:.0f}" if "s" in killed.split()[-1] else f"{elapsed:.1f}",
                f">{peak}" if "MB" in killed else str(peak), f"killed ({killed})")
    line = next((ln for ln in out.splitlines() if ln.startswith("OUTCOME")), "OUTCOME ? -1")
    *words, child_peak = line.split()[1:]
    return f"{elapsed:.1f}", str(max(peak, int(child_peak))), " ".join(words)


def main(selected: list[str]) -> None:
    results: dict[str, tuple[str, str, str]] = {}
    with tempfile.TemporaryDirectory(prefix="qwenocr-hostile-") as work:
        fake = os.path.join(work, "scan.png")
        with open(fake, "wb") as fh:
            fh.truncate(2 * 1024**3)  # sparse: no disk used
        tree = os.path.join(work, "tree")
        os.makedirs(os.path.join(tree, "a", "b"))
        for rel in ("x.png", "a/y.png", "a/b/z.png"):
            with open(os.path.join(tree, rel), "wb") as fh:
                fh.write(b"\x89PNG\r\n\x1a\n")
        os.symlink(tree, os.path.join(tree, "a", "b", "up"))
        os.symlink(os.path.join(tree, "a"), os.path.join(tree, "a", "b", "loop"))
        cases = {
            "drip_answer": ("drip", _REALTIME, {"TIMEOUT": "5.0"}),
            "endless_answer": ("endless", _REALTIME, {"TIMEOUT": "20.0"}),
            "fetch_drip": ("drip", _FETCH, {}),
            "fetch_endless": ("endless", _FETCH, {}),
            "fake_png": (None, _FAKE_PNG, {"PATH": repr(fake)}),
            "glob_loops": (None, _GLOB, {"PATTERN": repr(os.path.join(tree, "**", "*.png"))}),
        }
        for name, (mode, body, consts) in cases.items():
            if selected and name not in selected:
                continue
            server = hostile_server(mode) if mode else None
            if server:
                consts = {**consts, "BASE": repr(server.base_url)}
            prelude = "".join(f"{k} = {v}\n" for k, v in consts.items())
            try:
                results[name] = run_case(name, prelude + textwrap.dedent(body), work)
            finally:
                if server:
                    server.stop()
            s, mb, outcome = results[name]
            print(f"{name}: {s} s, peak {mb} MB, {outcome}", flush=True)
    print(" ".join(f"{n}_s={s} {n}_mb={mb}" for n, (s, mb, _) in results.items()))


if __name__ == "__main__":
    main(sys.argv[1:])
