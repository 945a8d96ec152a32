"""The fault matrix (issue #5): every image lands even when the service throttles, fails and times out.

All against the emulator's cheap ``echo`` engine on loopback, bounded in images and time; no timing
assertions. Operator level (QwenOcrOperator → hook → RealtimeClient → dashscope SDK → emulator).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time

import pytest
from PIL import Image

from airflow_provider_qwenocr.operators.ocr import QwenOcrOperator
from airflow_provider_qwenocr.runs.results_store import read_results

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

KEY = "sk-fault-matrix-secret-42"


def write_images(folder, n, *, start=0):
    """n distinct small PNGs (distinct bytes → distinct idempotency keys)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(start, start + n):
        img = Image.new("RGB", (64, 32), (i % 251, (i // 251) % 251, 200))
        img.save(folder / f"doc_{i:04d}.png")
    return folder


def set_conn(monkeypatch, srv, *, key=KEY, conn_id="dashscope_faults", **extra):
    extra = {"rpm": 100_000, "tpm": 100_000_000, "timeout": 1.0, **extra}
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(
        {"conn_type": "dashscope", "password": key, "host": srv.base_url, "extra": extra}))
    return conn_id


def rows_by_source(path):
    rows = list(read_results(str(path)))
    return rows, {r["source"]: r for r in rows}


def test_500_images_through_429_500_and_timeouts(make_emulator, monkeypatch, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    srv = make_emulator(engine="echo", fail_rate_429=0.20, fail_rate_500=0.05, fail_rate_timeout=0.02,
                        timeout_hold_seconds=2.0, seed=11)
    conn_id = set_conn(monkeypatch, srv, max_retries=12)
    folder = write_images(tmp_path / "in", 500)
    out = tmp_path / "out" / "results.jsonl"
    op = QwenOcrOperator(task_id="ocr", images=str(folder), output_uri=str(out), conn_id=conn_id,
                         max_concurrency=16)
    summary = op.execute({})

    rows, by_source = rows_by_source(out)
    assert summary["n_images"] == 500 and summary["n_ok"] == 500 and summary["n_failed"] == 0
    assert len(rows) == 500 and len(by_source) == 500  # every image exactly once: no duplicates, none lost
    assert len({r["key"] for r in rows}) == 500
    assert all(r["status"] == "ok" and r["error"] is None for r in rows)
    stats = srv.stats()
    # the faults really happened, and were retried
    assert stats["by_status"].get(429, 0) >= 50 and stats["by_status"].get(500, 0) >= 10
    assert stats["by_status"].get(200, 0) >= 500
    # the key is in no log line and no file we wrote
    assert all(KEY not in r.getMessage() for r in caplog.records)
    for path in tmp_path.rglob("*"):
        if path.is_file() and path.suffix in (".jsonl", ".json", ""):
            assert KEY.encode() not in path.read_bytes(), path


def test_permanent_errors_are_isolated_to_their_images(make_emulator, monkeypatch, tmp_path):
    srv = make_emulator(engine="echo", fail_rate_429=0.1, seed=3)
    conn_id = set_conn(monkeypatch, srv)
    folder = write_images(tmp_path / "in", 40)
    Image.new("RGB", (64, 48), (255, 0, 0)).save(folder / "red_flag.png")  # emulator: DataInspectionFailed
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    Image.new("RGB", (8, 8), "white").save(folder / "tiny.png")  # both sides must be > 10 px
    out = tmp_path / "results.jsonl"
    op = QwenOcrOperator(task_id="ocr", images=str(folder), output_uri=str(out), conn_id=conn_id,
                         max_concurrency=8, max_failed_ratio=0.5)
    summary = op.execute({})

    rows, by_source = rows_by_source(out)
    failed = {os.path.basename(s): r["error"]["code"] for s, r in by_source.items() if r["status"] == "error"}
    assert failed == {"red_flag.png": "DataInspectionFailed", "broken.png": "InvalidImage", "tiny.png": "InvalidImage"}
    assert summary["n_ok"] == 40 and summary["n_failed"] == 3 and len(rows) == 43
    # the refused image was sent once, not retried
    assert srv.stats()["by_status"].get(400, 0) == 1


def test_invalid_key_stops_the_task_at_once(make_emulator, monkeypatch, tmp_path):
    from airflow_provider_qwenocr._compat import AirflowException

    srv = make_emulator(engine="echo", api_key="sk-the-real-key")
    conn_id = set_conn(monkeypatch, srv, key="sk-a-wrong-key-123")
    folder = write_images(tmp_path / "in", 200)
    op = QwenOcrOperator(task_id="ocr", images=str(folder), output_uri=str(tmp_path / "r.jsonl"), conn_id=conn_id,
                         max_concurrency=4, max_failed_ratio=1.0)
    with pytest.raises(AirflowException) as ei:
        op.execute({})
    assert "sk-a-wrong-key-123" not in str(ei.value)
    calls = srv.stats()["by_status"].get(401, 0)
    assert 1 <= calls <= 4 * 3  # the in-flight calls at most, never the 200 images


_CHILD = r"""
import sys
from airflow_provider_qwenocr.operators.ocr import QwenOcrOperator
QwenOcrOperator(task_id="ocr", images=sys.argv[1], output_uri=sys.argv[2], cache_uri=sys.argv[3],
                conn_id="dashscope_faults", max_concurrency=4).execute({})
"""


def test_killed_task_retried_rebills_nothing_done(make_emulator, monkeypatch, tmp_path):
    n = 150
    srv = make_emulator(engine="echo", latency_ms=60, seed=5)
    set_conn(monkeypatch, srv)
    folder = write_images(tmp_path / "in", n)
    cache = tmp_path / "cache"
    env = {**os.environ}
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(folder), str(tmp_path / "run1.jsonl"), str(cache)],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while srv.stats()["by_status"].get(200, 0) < 40:
            assert child.poll() is None, child.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "child made no progress"
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)  # no cleanup, no flush: as the OOM killer or a lost worker would
        child.wait(30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    # let the calls that were in flight at the kill finish on the server side (they were billed too)
    billed_first = -1
    while billed_first != srv.stats()["by_status"].get(200, 0):
        billed_first = srv.stats()["by_status"].get(200, 0)
        time.sleep(0.5)
    assert billed_first < n  # it really died mid-run

    srv.reset_stats()
    out2 = tmp_path / "run2.jsonl"
    summary = QwenOcrOperator(task_id="ocr", images=str(folder), output_uri=str(out2), cache_uri=str(cache),
                              conn_id="dashscope_faults", max_concurrency=4).execute({})
    billed_second = srv.stats()["by_status"].get(200, 0)
    rows, by_source = rows_by_source(out2)
    assert len(by_source) == n and all(r["status"] == "ok" for r in rows)
    assert summary["n_cached"] > 0
    assert billed_second == n - summary["n_cached"]  # cached images were not sent again
    # everything billed in the first run, except the few calls in flight at the kill, was reused
    assert summary["n_cached"] >= billed_first - 4
    assert billed_first + billed_second <= n + 4
