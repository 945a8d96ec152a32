"""One result contract: the realtime operator, the batch operator (waiting and not) and the sensor return the
same XCom summary (runs/summary.py), against the emulator."""

from __future__ import annotations

import pytest

from airflow_provider_qwenocr.operators.batch import QwenOcrBatchOperator
from airflow_provider_qwenocr.operators.ocr import QwenOcrOperator
from airflow_provider_qwenocr.runs.summary import SUMMARY_KEYS
from airflow_provider_qwenocr.sensors.batch import QwenOcrBatchSensor
from tests.integration.batch_support import FakeTI, conn_env, png, server_fixture

pytestmark = pytest.mark.integration


server = server_fixture(batch_seconds=0.3)


@pytest.fixture
def images(tmp_path, server, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_DASHSCOPE_DEFAULT", conn_env(server.base_url))
    d = tmp_path / "in"
    d.mkdir()
    (d / "a.png").write_bytes(png("alpha"))
    (d / "b.png").write_bytes(png("beta", size=(260, 80)))
    (d / "broken.png").write_bytes(b"not an image at all")
    return str(d)


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
        assert tuple(summary) == SUMMARY_KEYS, name
        assert [sorted(f) for f in summary["failed"]] == [["code", "error", "source"]], name
        assert summary["failed"][0]["source"].endswith("broken.png") and summary["failed"][0]["code"], name
        assert set(summary["cost"]) == {"usd", "cny", "unknown_rows"}, name
    landed = [realtime, waited, sensed]
    assert {(s["n_images"], s["n_ok"], s["n_failed"], s["n_cached"]) for s in landed} == {(3, 2, 1, 0)}
    assert [s["state"] for s in (realtime, waited, submitted, sensed)] == ["done", "done", "submitted", "done"]
    assert realtime["batch_ids"] == [] and realtime["manifest_uri"] is None
    assert sensed["batch_ids"] == submitted["batch_ids"] == [submitted["batch_ids"][0]]
    assert sensed["manifest_uri"] == submitted["manifest_uri"]
    assert (submitted["n_images"], submitted["n_failed"], submitted["cost"]["unknown_rows"]) == (3, 1, 2)
    assert waited["cost"]["usd"] < realtime["cost"]["usd"]  # the batch price (half), known for qwen-vl-ocr


def test_sensor_without_output_uri_returns_the_request_counts(images, tmp_path):
    submitted = QwenOcrBatchOperator(task_id="submit", images=images, output_uri=str(tmp_path / "s.jsonl"),
                                     wait_for_completion=False, use_cache=False).execute({"ti": FakeTI()})
    out = QwenOcrBatchSensor(task_id="sense", batch_ids=submitted["batch_ids"], poke_interval=0.1, timeout=60,
                             deferrable=False).execute({})
    assert tuple(out) == SUMMARY_KEYS and out["state"] == "ended" and out["results_uri"] is None
    assert (out["n_images"], out["n_ok"], out["n_failed"]) == (2, 2, 0)  # the 2 requests sent, not the 3 images
    assert out["cost"] == {"usd": None, "cny": None, "unknown_rows": 2}  # billed, not priced here


def test_hook_recognize_takes_the_request_or_its_arguments(images):
    from pathlib import Path

    from airflow_provider_qwenocr.hooks.qwenocr import QwenOcrHook

    hook = QwenOcrHook()
    path = str(Path(images) / "a.png")
    by_arguments = hook.recognize(path, prompt="Read the word")  # a prompt with the default task: custom
    request = hook.ocr_request(task="custom", prompt="Read the word")
    by_request = hook.recognize(path, request=request)
    assert by_arguments.task == by_request.task == "custom" and by_arguments.source == by_request.source == path
    assert by_arguments.key == by_request.key == request.key(by_request.sha256)
    with pytest.raises(TypeError, match="not both"):
        hook.recognize(path, request=request, prompt="other")
    with pytest.raises(ValueError, match="needs a prompt"):
        hook.recognize(path, "custom")


def test_sensor_lands_error_rows_of_a_failed_batch_as_the_operator_does(images, tmp_path):
    from airflow_provider_qwenocr.exceptions import QwenOcrBatchError
    from airflow_provider_qwenocr.runs.results_store import read_results

    output = str(tmp_path / "s.jsonl")
    submitted = QwenOcrBatchOperator(task_id="submit", images=images, output_uri=output, use_cache=False,
                                     model="qwen-vl-ocr-2099-01-01",  # the service's validation refuses it
                                     wait_for_completion=False).execute({"ti": FakeTI()})
    sensor = QwenOcrBatchSensor(task_id="sense", batch_ids=submitted["batch_ids"], output_uri=output,
                                poke_interval=0.1, timeout=60, deferrable=False)
    with pytest.raises(QwenOcrBatchError, match="batch failed"):
        sensor.execute({})
    rows = list(read_results(output))
    assert len(rows) == 3 and all(r["status"] == "error" for r in rows)  # 2 never processed + 1 rejected
