"""The OCR loop without Airflow: bounded in-flight images (memory does not grow with the input), summary."""

from __future__ import annotations

import threading
import time

import pytest

from airflow_provider_qwenocr.ocr.request import build_ocr_request
from airflow_provider_qwenocr.ocr.results import OcrResult, Usage
from airflow_provider_qwenocr.runs.realtime import MAX_FAILED_KEPT, OcrJob, run
from airflow_provider_qwenocr.runs.results_store import ResultsWriter, read_results
from airflow_provider_qwenocr.runs.sources import Source
from tests.unit.test_operator_ocr import _png


class Counting:
    """Counts bytes read but not yet written: the images the loop holds at once."""

    def __init__(self):
        self.lock = threading.Lock()
        self.read = self.written = self.peak = 0

    def reader(self, data):
        def read():
            with self.lock:
                self.read += 1
                self.peak = max(self.peak, self.read - self.written)
            return data

        return read


class SlowClient:
    def recognize(self, image, *, request, identity):
        time.sleep(0.002)
        return OcrResult(**identity.fields(), task=request.task.value, model=request.model, text="t", usage=Usage(10, 1, 8, 11))


class CountingWriter(ResultsWriter):
    def __init__(self, uri, counter):
        super().__init__(uri)
        self.counter = counter

    def write(self, result):
        super().write(result)
        with self.counter.lock:
            self.counter.written += 1


def test_in_flight_images_are_bounded(tmp_path):
    counter = Counting()
    data = _png((40, 40))
    n, workers = 300, 3
    sources = [Source(f"mem://{i}.png", _reader=counter.reader(data)) for i in range(n)]
    job = OcrJob(build_ocr_request(model="qwen-vl-ocr"))
    with CountingWriter(str(tmp_path / "r.jsonl"), counter) as w:
        summary = run(sources, job, SlowClient(), w, max_concurrency=workers)
    assert summary.n_ok == n and counter.read == n
    assert counter.peak <= 2 * workers, f"{counter.peak} images held at once"
    assert len(list(read_results(str(tmp_path / "r.jsonl")))) == n


def test_summary_keeps_a_bounded_list_of_failures(tmp_path):
    sources = [Source(f"mem://{i}.png", _reader=lambda: b"not an image") for i in range(MAX_FAILED_KEPT + 30)]
    job = OcrJob(build_ocr_request(model="qwen-vl-ocr"))
    with ResultsWriter(str(tmp_path / "r.jsonl")) as w:
        summary = run(sources, job, SlowClient(), w, max_concurrency=2)
    assert summary.n_failed == MAX_FAILED_KEPT + 30 and len(summary.failed) == MAX_FAILED_KEPT
    xcom = summary.to_xcom("x")
    assert len(xcom["failed"]) == 20 and xcom["failed"][0]["code"] == "InvalidImage" \
        and xcom["failed"][0]["error"].startswith("cannot decode")


class RefusingClient:
    """Answers ``ok_first`` calls, then refuses every call as an account in a billing state; counts calls."""

    def __init__(self, ok_first: int):
        self.ok_first = ok_first
        self.calls = 0
        self.lock = threading.Lock()

    def recognize(self, image, *, request, identity):
        from airflow_provider_qwenocr.dashscope.errors import AccountError

        with self.lock:
            self.calls += 1
            n = self.calls
        time.sleep(0.01)
        if n > self.ok_first:
            raise AccountError("Prepaid bill overdue", code="PrepaidBillOverdue", status_code=429)
        return OcrResult(**identity.fields(), task=request.task.value, model=request.model, text="t", usage=Usage(10, 1, 8, 11))


def test_an_account_error_stops_queued_images_before_they_start(tmp_path):
    """One worker, a window of two: the image queued behind the refused one must not be sent."""
    from airflow_provider_qwenocr.dashscope.errors import AccountError

    data = _png((40, 40))
    sources = [Source(f"mem://{i}.png", _reader=lambda: data) for i in range(10)]
    job = OcrJob(build_ocr_request(model="qwen-vl-ocr"))
    client = RefusingClient(ok_first=3)
    with pytest.raises(AccountError):
        with ResultsWriter(str(tmp_path / "r.jsonl")) as w:
            run(sources, job, client, w, max_concurrency=1)
    assert client.calls == 4, "3 answered, 1 refused, nothing after it"
    assert not (tmp_path / "r.jsonl").exists()


def test_an_account_error_with_many_workers_still_surfaces_as_the_account_error(tmp_path):
    from airflow_provider_qwenocr.dashscope.errors import AccountError

    data = _png((40, 40))
    sources = [Source(f"mem://{i}.png", _reader=lambda: data) for i in range(200)]
    job = OcrJob(build_ocr_request(model="qwen-vl-ocr"))
    client = RefusingClient(ok_first=5)
    try:
        with ResultsWriter(str(tmp_path / "r.jsonl")) as w:
            run(sources, job, client, w, max_concurrency=4)
    except AccountError as exc:
        assert exc.code == "PrepaidBillOverdue"
    else:
        raise AssertionError("the account error must stop the run")
    assert client.calls <= 5 + 4, f"{client.calls} calls: only those already in flight may follow the refusal"


def test_the_runner_writes_the_clients_row_as_it_came(tmp_path):
    """The client builds the finished row (identity from the plan it was given, usage, cost in its region):
    the run writes it untouched — it used to overwrite source/sha256/key/page and fill a missing cost."""
    returned = []

    class Finishing:
        def recognize(self, image, *, request, identity):
            row = OcrResult(**identity.fields(), task=request.task.value, model=request.model, text="t",
                            usage=Usage(10, 1, 8, 11), cost=None, request_id="r-1")
            returned.append(row.to_row())
            return row

    src = Source("/in/doc.pdf", page=2, _reader=lambda: _png())
    with ResultsWriter(str(tmp_path / "r.jsonl")) as w:
        run([src], OcrJob(build_ocr_request()), Finishing(), w)
    (row,) = read_results(str(tmp_path / "r.jsonl"))
    assert row == returned[0] and row["page"] == 2 and row["cost"] is None  # no second pricing by the run
