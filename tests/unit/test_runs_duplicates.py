"""The same bytes under two names in one task: one call, both rows, billed once — in the summary and in the
warehouse cost ledger (issue 20 item 6), realtime and batch."""

from __future__ import annotations

import io
import sqlite3
import threading
import time

import pytest
from PIL import Image

from airflow_provider_qwenocr.dashscope.errors import AccountError, PermanentError
from airflow_provider_qwenocr.ocr.models import DEFAULT_REGION
from airflow_provider_qwenocr.ocr.request import build_ocr_request
from airflow_provider_qwenocr.ocr.results import OcrResult, Usage, Word
from airflow_provider_qwenocr.runs.batch import BatchRunner
from airflow_provider_qwenocr.runs.realtime import OcrJob, estimate_job_tokens, run
from airflow_provider_qwenocr.runs.results_store import ResultCache, ResultsWriter, read_results
from airflow_provider_qwenocr.runs.sources import Source
from airflow_provider_qwenocr.warehouse.loader import load_results, run_ledger
from tests.unit.test_runs_summary_batch import FakeBatchApi


def _png(color) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), color).save(buf, "PNG")
    return buf.getvalue()


SAME, OTHER = _png((200, 200, 200)), _png((10, 10, 10))


def _sources():  # a/scan.png and b/scan.png are the same bytes; c.png differs
    return [Source("/in/a/scan.png", _reader=lambda: SAME), Source("/in/b/scan.png", _reader=lambda: SAME),
            Source("/in/c.png", _reader=lambda: OTHER)]


class SlowClient:
    """Each call takes 0.3 s, so both names of one image are in flight together; fails by marker."""

    def __init__(self, fail: type[Exception] | None = None):
        self.calls: list[str] = []
        self.lock = threading.Lock()
        self.fail = fail

    def recognize(self, image, *, request, identity):
        with self.lock:
            self.calls.append(identity.source)
        time.sleep(0.3)
        if self.fail is not None:
            raise self.fail("refused", code="Refused", status_code=400)
        usage = Usage(100 + image.width, 10, 80, 110 + image.width)
        return OcrResult(**identity.fields(), task=request.task.value, model=request.model, text=f"{image.sent_width}",
                         words=[Word("x", [1, 1, 20, 1, 20, 10, 1, 10], [10, 5, 19, 9, 0])], usage=usage, cost=request.spec.price(DEFAULT_REGION).cost(usage.input_tokens, 10),
                         request_id=f"req-{len(self.calls)}")


class SqliteHook:
    placeholder = "?"

    def __init__(self, path):
        self.path = str(path)

    def get_conn(self):
        return sqlite3.connect(self.path)


def _ledger_tokens(tmp_path, rows, mode):
    hook = SqliteHook(tmp_path / "wh.db")
    load_results(hook, rows, dag_id="d", run_id="r", mode=mode)
    return sum(r["total_tokens"] for r in run_ledger(hook))


@pytest.mark.parametrize("use_cache", [False, True])
def test_realtime_one_call_both_rows_billed_once(tmp_path, use_cache):
    client, drawn = SlowClient(), []
    cache = ResultCache(str(tmp_path / "cache")) if use_cache else None
    with ResultsWriter(str(tmp_path / "r.jsonl")) as writer:
        summary = run(_sources(), OcrJob(build_ocr_request()), client, writer, cache=cache, max_concurrency=4,
                      drawer=lambda data, row, src: drawn.append(src.uri))
    rows = {r["source"]: r for r in read_results(str(tmp_path / "r.jsonl"))}
    assert len(client.calls) == 2 and len(rows) == 3
    a, b = rows["/in/a/scan.png"], rows["/in/b/scan.png"]
    assert a["key"] == b["key"] and a["text"] == b["text"] and a["request_id"] == b["request_id"]
    assert a["usage"] == b["usage"] and a["cost"] == b["cost"]  # the one call's bill, as a cache hit carries it
    assert (summary.n_images, summary.n_ok, summary.n_cached) == (3, 3, 1)
    billed = rows["/in/c.png"]["usage"]["total_tokens"] + a["usage"]["total_tokens"]
    assert summary.usage.total_tokens == billed
    assert summary.cost["usd"] == pytest.approx(rows["/in/c.png"]["cost"]["usd"] + a["cost"]["usd"])
    assert _ledger_tokens(tmp_path, rows.values(), "realtime") == billed  # the ledger records what was billed
    assert sorted(drawn) == ["/in/a/scan.png", "/in/b/scan.png", "/in/c.png"]  # each name gets its picture


def test_realtime_a_twin_shares_its_firsts_failure_without_a_call(tmp_path):
    client = SlowClient(fail=PermanentError)
    with ResultsWriter(str(tmp_path / "r.jsonl")) as writer:
        summary = run(_sources()[:2], OcrJob(build_ocr_request()), client, writer, max_concurrency=2)
    rows = list(read_results(str(tmp_path / "r.jsonl")))
    assert len(client.calls) == 1 and summary.n_failed == 2 and summary.n_cached == 0
    assert {r["source"] for r in rows} == {"/in/a/scan.png", "/in/b/scan.png"}
    assert {r["error"]["code"] for r in rows} == {"Refused"}


def test_realtime_an_account_error_reaches_the_waiting_twin(tmp_path):
    client = SlowClient(fail=AccountError)
    with pytest.raises(AccountError):
        with ResultsWriter(str(tmp_path / "r.jsonl")) as writer:
            run(_sources()[:2], OcrJob(build_ocr_request()), client, writer, max_concurrency=2)
    assert len(client.calls) == 1


def test_the_estimate_counts_one_call_per_key():
    job = OcrJob(build_ocr_request())
    one = estimate_job_tokens(_sources()[:1], job, None)
    assert one[0] > 0 and estimate_job_tokens(_sources()[:2], job, None) == one


def test_batch_one_line_both_rows_billed_once_each_with_its_own_page(tmp_path):
    api = FakeBatchApi()
    runner = BatchRunner(api)
    pages = [Source("/in/a.pdf", page=1, _reader=lambda: SAME), Source("/in/b.pdf", page=3, _reader=lambda: SAME)]
    sub = runner.submit([*pages, Source("/in/c.png", _reader=lambda: OTHER)], build_ocr_request(),
                        manifest_uri=str(tmp_path / "m.jsonl"))
    assert (sub.n_images, sub.n_requests) == (3, 2)
    assert sum(len(f.splitlines()) for k, f in api.files.items() if k.startswith("file-")) == 2  # one line per key
    for b in api.batches.values():
        b["status"] = "completed"
    landed = runner.land(sub.batch_ids, output_uri=str(tmp_path / "r.jsonl"), manifest_uri=str(tmp_path / "m.jsonl"))
    rows = {r["source"]: r for r in read_results(str(tmp_path / "r.jsonl"))}
    a, b = rows["/in/a.pdf#page=1"], rows["/in/b.pdf#page=3"]
    assert (a["page"], b["page"]) == (1, 3) and a["key"] == b["key"] and a["text"] == b["text"]
    assert a["usage"] == b["usage"] and a["cost"] == b["cost"]
    assert (landed.n_images, landed.n_ok, landed.n_cached) == (3, 3, 1)
    assert landed.usage.total_tokens == 2 * 55  # two requests billed (FakeBatchApi: 50 + 5 tokens each)
    assert _ledger_tokens(tmp_path, rows.values(), "batch") == 2 * 55
