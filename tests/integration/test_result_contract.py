"""One result contract: the realtime operator, the batch operator (waiting and not) and the sensor return the
same XCom summary (io/summary.py), against the emulator."""

from __future__ import annotations

import pytest

from airflow_provider_qwenocr.io.summary import DEPRECATED_KEYS, SUMMARY_KEYS
from airflow_provider_qwenocr.operators.batch import QwenOcrBatchOperator
from airflow_provider_qwenocr.operators.ocr import QwenOcrOperator
from airflow_provider_qwenocr.sensors.batch import QwenOcrBatchSensor
from tests.integration.batch_support import FakeTI, conn_env, png, start_server

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server():
    srv = start_server(batch_seconds=0.3)
    yield srv
    srv.stop()


@pytest.fixture
def images(tmp_path, server, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_DASHSCOPE_DEFAULT", conn_env(server.base_url))
    d = tmp_path / "in"
    d.mkdir()
    (d / "a.png").write_bytes(png("alpha"))
    (d / "b.png").write_bytes(png("beta", size=(260, 80)))
    (d / "broken.png").write_bytes(b"not an image at all")
    return str(d)


def _core(summary: dict) -> dict:
    """The summary without the keys kept for one release."""
    assert set(summary.get("deprecated_keys", [])) <= set(DEPRECATED_KEYS)
    return {k: v for k, v in summary.items() if k not in DEPRECATED_KEYS and k != "deprecated_keys"}


def test_all_four_producers_return_the_same_summary(images, tmp_path):
    common = {"images": images, "use_cache": False, "max_failed_ratio": 1.0}
    batch = {**common, "deferrable": False, "poll_interval": 0.1}
    realtime = QwenOcrOperator(task_id="rt", output_uri=str(tmp_path / "rt.jsonl"), **common).execute({})
    waited = QwenOcrBatchOperator(task_id="wait", output_uri=str(tmp_path / "b.jsonl"), **batch).execute(
        {"ti": FakeTI()})
    submitted = QwenOcrBatchOperator(task_id="submit", output_uri=str(tmp_path / "s.jsonl"),
                                     wait_for_completion=False, **batch).execute({"ti": FakeTI()})
    sensed = QwenOcrBatchSensor(task_id="sense", batch_ids=submitted["batch_ids"], output_uri=submitted["results_uri"],
                                poke_interval=0.1, timeout=60, deferrable=False, use_cache=False,
                                max_failed_ratio=1.0).execute({})

    producers = {"realtime": realtime, "batch": waited, "no-wait": submitted, "sensor": sensed}
    for name, summary in producers.items():
        assert tuple(_core(summary)) == SUMMARY_KEYS, name
        assert [sorted(f) for f in summary["failed"]] == [["code", "error", "source"]], name
        assert summary["failed"][0]["source"].endswith("broken.png") and summary["failed"][0]["code"], name
        assert set(summary["cost"]) == {"usd", "cny", "unknown_rows"}, name
    landed = [realtime, waited, sensed]
    assert {(s["n_images"], s["n_ok"], s["n_failed"], s["n_cached"]) for s in landed} == {(3, 2, 1, 0)}
    assert [s["state"] for s in (realtime, waited, submitted, sensed)] == ["done", "done", "submitted", "done"]
    assert realtime["batch_ids"] == [] and realtime["manifest_uri"] is None
    assert sensed["batch_ids"] == submitted["batch_ids"] == [submitted["batch_ids"][0]]
    assert sensed["manifest_uri"] == submitted["manifest_uri"] and sensed["verdict"] == "success"  # deprecated key; the batch itself had no failure
    assert (submitted["n_images"], submitted["n_failed"], submitted["n_requests"]) == (3, 1, 2)
    assert waited["cost"]["usd"] < realtime["cost"]["usd"]  # the batch price (half), known for qwen-vl-ocr
