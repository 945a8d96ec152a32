"""``qwenocr-emulator`` as a separate process: flags reach the server, /health answers; the old
``python -m airflow_provider_qwenocr.emulator`` still starts it, with a deprecation message."""

from __future__ import annotations

import base64
import io
import os
import shutil
import socket
import subprocess
import sys
import time
import warnings

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


@pytest.mark.parametrize("launcher", ["console-script", "deprecated-module"])
def test_cli_server_answers_with_its_key_and_knobs(launcher):
    port = free_port()
    cmd = _console_script() if launcher == "console-script" else [sys.executable, "-m", "airflow_provider_qwenocr.emulator"]
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
    err = proc.stderr.read().decode()
    moved = "moved to the qwenocr-emulator distribution"
    assert (moved in err) == (launcher == "deprecated-module"), err[-2000:]


def test_old_import_path_warns_and_gives_the_new_classes():
    import qwenocr_emulator

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        from airflow_provider_qwenocr.emulator import EmulatorConfig, EmulatorServer
    assert EmulatorServer is qwenocr_emulator.EmulatorServer and EmulatorConfig is qwenocr_emulator.EmulatorConfig
    assert caught and all(issubclass(w.category, DeprecationWarning) for w in caught)
    assert "qwenocr-emulator" in str(caught[0].message)


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
