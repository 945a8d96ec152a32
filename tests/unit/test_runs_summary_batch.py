"""The one XCom summary (runs/summary.py) and the batch runner (runs/batch.py) without Airflow or a server."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest
from PIL import Image

from airflow_provider_qwenocr.dashscope.config import ClientConfig
from airflow_provider_qwenocr.ocr.request import build_ocr_request
from airflow_provider_qwenocr.ocr.results import OcrResult, Usage
from airflow_provider_qwenocr.runs.batch import BatchRunner, cancel_batches
from airflow_provider_qwenocr.runs.results_store import read_results
from airflow_provider_qwenocr.runs.summary import MAX_FAILED_IN_SUMMARY, SUMMARY_KEYS, OcrSummary


def _png(text_color=(0, 0, 0), size=(80, 40)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, text_color).save(buf, "PNG")
    return buf.getvalue()


def test_core_runners_and_summary_import_without_airflow():
    code = ("import sys\n"
            "import airflow_provider_qwenocr.runs.batch, airflow_provider_qwenocr.runs.realtime\n"
            "import airflow_provider_qwenocr.runs.summary, airflow_provider_qwenocr.ocr.request\n"
            "print('airflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_summary_counts_failures_in_one_shape_and_cached_rows_cost_nothing():
    s = OcrSummary()
    ok = OcrResult(source="a", task="text_recognition", model="qwen-vl-ocr", usage=Usage(100, 10, 80, 110),
                   cost={"usd": 0.001, "cny": 0.007})
    s.add(ok)
    s.add(ok, cached=True)
    for i in range(MAX_FAILED_IN_SUMMARY + 5):
        s.add(OcrResult.failure(f"bad{i}", "text_recognition", "qwen-vl-ocr", "InvalidImage", "cannot decode"))
    out = s.to_xcom("r.jsonl")
    assert tuple(out) == SUMMARY_KEYS and out["state"] == "done" and out["batch_ids"] == []
    assert (out["n_images"], out["n_ok"], out["n_cached"], out["n_failed"]) == (27, 2, 1, 25)
    assert out["usage"]["input_tokens"] == 100 and out["cost"] == {"usd": 0.001, "cny": 0.007, "unknown_rows": 0}
    assert len(out["failed"]) == MAX_FAILED_IN_SUMMARY
    assert out["failed"][0] == {"source": "bad0", "code": "InvalidImage", "error": "cannot decode"}


def test_the_summary_has_exactly_the_contract_keys_and_no_pre_1_0_ones():
    out = OcrSummary().to_xcom("r", batch_ids=["b"], state="submitted")
    assert tuple(out) == SUMMARY_KEYS
    with pytest.raises(TypeError, match="deprecated"):
        OcrSummary().to_xcom("r", deprecated={"output_uri": "r"})


class FakeBatchApi:
    """The Batch API calls the runner uses, in memory: every request line gets an answer naming its id."""

    config = ClientConfig(api_key="fake-batch-key")  # a batch client's config prices the landed rows

    def __init__(self, fail_create_at: int | None = None):
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict] = {}
        self.cancelled: list[str] = []
        self.deleted: list[str] = []
        self.fail_create_at = fail_create_at

    def upload_file(self, fh, filename="requests.jsonl"):
        fid = f"file-{sum(k.startswith('file-') for k in self.files)}"
        self.files[fid] = fh.read()
        return {"id": fid}

    def create_batch(self, file_id, *, metadata=None, completion_window="24h"):
        if self.fail_create_at is not None and len(self.batches) + 1 == self.fail_create_at:
            raise RuntimeError(f"create {self.fail_create_at} failed")
        lines = [json.loads(x) for x in self.files[file_id].decode().splitlines()]
        out = "".join(json.dumps({"custom_id": line["custom_id"], "response": {"status_code": 200, "body": {
            "model": line["body"]["model"], "usage": {"prompt_tokens": 50, "completion_tokens": 5},
            "choices": [{"message": {"content": f"text of {line['custom_id'][:6]}"}}]}}}) + "\n" for line in lines)
        bid = f"batch-{len(self.batches)}"
        self.files[f"out-{bid}"] = out.encode()
        self.batches[bid] = {"id": bid, "status": "in_progress", "input_file_id": file_id,
                             "output_file_id": f"out-{bid}", "request_counts": {"total": len(lines)}}
        return self.batches[bid]

    def get_batch(self, bid):
        return self.batches[bid]

    def cancel_batch(self, bid):
        self.cancelled.append(bid)

    def file_content(self, fid):
        return self.files[fid]

    def delete_file(self, fid):
        self.deleted.append(fid)


def test_runner_submits_lands_caches_and_deletes_through_any_batch_api(tmp_path):
    from airflow_provider_qwenocr.dashscope.batch_jsonl import BatchLimits

    api = FakeBatchApi()
    runner = BatchRunner(api, cache_uri=str(tmp_path / "cache"))
    request = build_ocr_request()
    sources = [("a.png", _png((0, 0, 0))), ("b.png", _png((9, 9, 9))), ("copy-of-a.png", _png((0, 0, 0))),
               ("bad.png", b"not an image")]
    manifest = str(tmp_path / "m.jsonl")
    sub = runner.submit(sources, request, manifest_uri=manifest, limits=BatchLimits(max_lines=1))
    assert (sub.n_images, sub.n_requests, sub.n_rejected, len(sub.batch_ids)) == (4, 2, 1, 2)
    submitted = sub.summary(str(tmp_path / "r.jsonl"))
    assert submitted["state"] == "submitted" and submitted["n_failed"] == 1 and submitted["n_ok"] == 0
    assert submitted["cost"] == {"usd": None, "cny": None, "unknown_rows": 2}
    assert submitted["failed"][0]["source"] == "bad.png" and submitted["failed"][0]["code"] == "InvalidImage"

    for b in api.batches.values():
        b["status"] = "completed"
    landed = runner.land(sub.batch_ids, output_uri=str(tmp_path / "r.jsonl"), manifest_uri=manifest,
                         delete_files=True)
    # copy-of-a.png is a.png's row under its own name: not billed again, counted like a cache hit
    assert (landed.n_images, landed.n_ok, landed.n_failed, landed.n_cached) == (4, 3, 1, 1)
    rows = {r["source"]: r for r in read_results(str(tmp_path / "r.jsonl"))}
    assert rows["copy-of-a.png"]["text"] == rows["a.png"]["text"] != rows["b.png"]["text"]
    assert landed.usage.input_tokens == 100  # two requests billed; the duplicate adds nothing
    assert sorted(api.deleted) == sorted(["file-0", "file-1", "out-batch-0", "out-batch-1"])

    again = BatchRunner(FakeBatchApi(), cache_uri=str(tmp_path / "cache")).submit(
        sources, request, manifest_uri=str(tmp_path / "m2.jsonl"))
    assert (again.n_cached, again.n_requests, again.batch_ids) == (3, 0, [])  # everything ok was cached


def test_a_failed_create_cancels_the_batches_already_created(tmp_path):
    from airflow_provider_qwenocr.dashscope.batch_jsonl import BatchLimits

    api = FakeBatchApi(fail_create_at=2)
    with pytest.raises(RuntimeError, match="create 2 failed"):
        BatchRunner(api).submit([("a.png", _png((0, 0, 0))), ("b.png", _png((9, 9, 9)))], build_ocr_request(),
                                manifest_uri=str(tmp_path / "m.jsonl"), limits=BatchLimits(max_lines=1))
    assert api.cancelled == ["batch-0"] and (tmp_path / "m.jsonl").exists()
    api.batches["batch-0"]["status"] = "cancelled"
    assert cancel_batches(api, ["batch-0"]) == []  # terminal: nothing sent again
