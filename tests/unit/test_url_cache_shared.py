"""A URL the service fetches is paid for once, whether realtime or batch recognised it first (one shared cache)."""

from __future__ import annotations

from airflow_provider_qwenocr.ocr.request import build_ocr_request
from airflow_provider_qwenocr.ocr.results import OcrResult, Usage
from airflow_provider_qwenocr.runs.batch import BatchRunner
from airflow_provider_qwenocr.runs.realtime import OcrJob, estimate_job_tokens, run
from airflow_provider_qwenocr.runs.results_store import ResultCache, ResultsWriter, read_results
from airflow_provider_qwenocr.runs.sources import Source
from tests.unit.test_runs_summary_batch import FakeBatchApi

URL = "https://example.invalid/scans/page-1.png"


class CountingClient:
    def __init__(self):
        self.calls = 0

    def recognize(self, image, *, request, identity):
        self.calls += 1
        assert image == URL  # sent by reference: the service fetches it
        return OcrResult(**identity.fields(), task=request.task.value, model=request.model, text="realtime text",
                         usage=Usage(40, 4, 30, 44))


def _realtime(tmp_path, name):
    client = CountingClient()
    with ResultsWriter(str(tmp_path / f"{name}.jsonl")) as writer:
        summary = run([Source(URL, is_remote_url=True)], OcrJob(build_ocr_request()), client, writer,
                      cache=ResultCache(str(tmp_path / "cache")))
    return client.calls, summary, read_results(str(tmp_path / f"{name}.jsonl"))


def test_realtime_first_then_batch_sends_nothing(tmp_path):
    calls, _, _ = _realtime(tmp_path, "rt")
    assert calls == 1
    api = FakeBatchApi()
    sub = BatchRunner(api, cache_uri=str(tmp_path / "cache")).submit(
        [Source(URL, is_remote_url=True)], build_ocr_request(), manifest_uri=str(tmp_path / "m.jsonl"))
    assert (sub.n_cached, sub.n_requests, sub.batch_ids, api.files) == (1, 0, [], {})


def test_batch_first_then_realtime_calls_nothing(tmp_path):
    api = FakeBatchApi()
    runner = BatchRunner(api, cache_uri=str(tmp_path / "cache"))
    sub = runner.submit([Source(URL, is_remote_url=True)], build_ocr_request(), manifest_uri=str(tmp_path / "m.jsonl"))
    assert sub.n_requests == 1
    for b in api.batches.values():
        b["status"] = "completed"
    runner.land(sub.batch_ids, output_uri=str(tmp_path / "b.jsonl"), manifest_uri=str(tmp_path / "m.jsonl"))
    job = OcrJob(build_ocr_request())
    assert estimate_job_tokens([Source(URL, is_remote_url=True)], job, ResultCache(str(tmp_path / "cache"))) == (0, 0, 1)
    calls, summary, rows = _realtime(tmp_path, "rt")
    rows = list(rows)
    assert calls == 0 and summary.n_cached == 1
    assert rows[0]["source"] == URL and rows[0]["text"].startswith("text of ")  # the batch's answer


def test_a_second_batch_of_the_same_url_sends_nothing(tmp_path):
    api = FakeBatchApi()
    runner = BatchRunner(api, cache_uri=str(tmp_path / "cache"))
    sub = runner.submit([Source(URL, is_remote_url=True)], build_ocr_request(), manifest_uri=str(tmp_path / "m.jsonl"))
    for b in api.batches.values():
        b["status"] = "completed"
    runner.land(sub.batch_ids, output_uri=str(tmp_path / "b.jsonl"), manifest_uri=str(tmp_path / "m.jsonl"))
    again = runner.submit([Source(URL, is_remote_url=True)], build_ocr_request(),
                          manifest_uri=str(tmp_path / "m2.jsonl"))
    assert (again.n_cached, again.n_requests) == (1, 0)
