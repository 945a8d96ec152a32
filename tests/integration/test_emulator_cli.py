"""``qwenocr-emulator`` as a separate process: flags reach the server, /health answers. The emulator is its
own distribution only: the provider no longer carries an ``airflow_provider_qwenocr.emulator`` alias (1.0)."""

from __future__ import annotations

import base64
import io
import os
import shutil
import socket
import subprocess
import sys
import time

import httpx
import pytest
from PIL import Image
from qwenocr_emulator.__main__ import build_parser

pytestmark = pytest.mark.integration
NATIVE = "/api/v1/services/aigc/multimodal-generation/generation"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_every_documented_flag_parses():
    args = build_parser().parse_args([
        "--host", "127.0.0.1", "--port", "0", "--api-key", "k", "--engine", "echo", "--latency-ms", "5",
        "--rpm", "10", "--tpm", "1000", "--fail-rate-429", "0.1", "--fail-rate-500", "0.1",
        "--fail-rate-timeout", "0.1", "--seed", "3", "--batch-seconds", "0.5", "--batch-outcome", "expire",
        "--account-state", "prepaid-overdue", "--sse-throttling", "http"])
    assert (args.engine, args.rpm, args.tpm, args.seed, args.batch_outcome) == ("echo", 10, 1000, 3, "expire")
    assert (args.account_state, args.sse_throttling) == ("prepaid-overdue", "http")
    assert (args.fail_rate_429, args.fail_rate_500, args.fail_rate_timeout) == (0.1, 0.1, 0.1)


def _console_script() -> list[str]:
    """The installed ``qwenocr-emulator`` script next to this interpreter (what `make emulator` runs)."""
    script = os.path.join(os.path.dirname(sys.executable), "qwenocr-emulator")
    assert os.path.exists(script) or shutil.which("qwenocr-emulator"), "qwenocr-emulator is not installed"
    return [script if os.path.exists(script) else shutil.which("qwenocr-emulator")]


def test_cli_server_answers_with_its_key_and_knobs():
    port = free_port()
    cmd = _console_script()
    proc = subprocess.Popen([*cmd, "--host", "127.0.0.1",
                             "--port", str(port), "--api-key", "sk-cli", "--engine", "echo", "--rpm", "2",
                             "--log-level", "warning"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(base + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "the CLI emulator did not become healthy"
            time.sleep(0.1)
        buf = io.BytesIO()
        Image.new("RGB", (64, 64), "white").save(buf, "PNG")
        body = {"model": "qwen-vl-ocr", "input": {"messages": [{"role": "user", "content": [
            {"image": "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()}]}]}}
        wrong = httpx.post(base + NATIVE, json=body, headers={"Authorization": "Bearer nope"}, timeout=10)
        assert wrong.status_code == 401
        statuses = [httpx.post(base + NATIVE, json=body, headers={"Authorization": "Bearer sk-cli"},
                               timeout=10).status_code for _ in range(3)]
        assert statuses == [200, 200, 429]
        stats = httpx.get(base + "/emulator/stats", timeout=5).json()
        assert stats["by_status"] == {"401": 1, "200": 2, "429": 1}
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def test_the_provider_has_no_emulator_alias_any_more():
    """1.0 removed ``airflow_provider_qwenocr.emulator``: the only ways in are ``qwenocr-emulator`` /
    ``qwenocr_emulator``."""
    with pytest.raises(ModuleNotFoundError):
        __import__("airflow_provider_qwenocr.emulator")
    out = subprocess.run([sys.executable, "-m", "airflow_provider_qwenocr.emulator", "--help"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "No module named airflow_provider_qwenocr.emulator" in out.stderr


def test_emulator_imports_neither_airflow_nor_our_client():
    """Layering: the emulator runs without Airflow, the dashscope SDK and the provider."""
    code = (
        "import sys\n"
        "import qwenocr_emulator.app, qwenocr_emulator.server, qwenocr_emulator.__main__, qwenocr_emulator.loadtest\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('airflow', 'dashscope', 'airflow_provider_qwenocr')]\n"
        "print(bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"
