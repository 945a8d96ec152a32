"""QwenOcrOperator(image_transport="url"): s3:// sources go to the realtime service as presigned URLs.

Against the emulator (which downloads the URL as the service does) and moto S3 on loopback: the worker
never reads the object (its reader is made to fail), the text comes back, the row names the s3:// URI and
never the signature, a re-run (a new signature) is a cache hit, and the token budget is measured from a
ranged GET of the header.
"""

from __future__ import annotations

import io
from pathlib import Path
from types import SimpleNamespace

import boto3
import pytest
from PIL import Image

from airflow_provider_qwenocr.exceptions import QwenOcrConfigError
from airflow_provider_qwenocr.ocr.images import estimate_tokens
from airflow_provider_qwenocr.ocr.models import get_model
from airflow_provider_qwenocr.ocr.request import build_ocr_request
from airflow_provider_qwenocr.operators.ocr import QwenOcrOperator
from airflow_provider_qwenocr.runs import realtime as runner
from airflow_provider_qwenocr.runs import sources
from airflow_provider_qwenocr.runs.presign import REALTIME_EXPIRY_SECONDS, Presigner
from airflow_provider_qwenocr.runs.results_store import read_results

pytestmark = pytest.mark.integration
DOCS = Path(__file__).resolve().parents[1] / "data" / "docs"


def _ctx():
    return {"ti": SimpleNamespace(dag_id="url_it", task_id="ocr", run_id="manual", map_index=-1), "run_id": "manual"}


def _s3(moto_server):
    return boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


@pytest.fixture
def no_local_read(monkeypatch):
    """Any read of a source's bytes by the worker becomes an error row (SourceReadError)."""
    def refuse(self):
        raise AssertionError(f"the worker read {self.uri}")
    monkeypatch.setattr(sources.Source, "read", refuse)


def test_s3_source_is_fetched_by_the_service_not_the_worker(emulator, emulator_conn, s3_bucket, moto_server,
                                                          no_local_read, tmp_path):
    _s3(moto_server).put_object(Bucket=s3_bucket, Key="scans/p.png", Body=(DOCS / "paragraph_en.png").read_bytes())
    uri = f"s3://{s3_bucket}/scans/p.png"
    kw = dict(task_id="ocr", images=f"s3://{s3_bucket}/scans/", image_transport="url",
              cache_uri=str(tmp_path / "cache"))
    calls = emulator.stats()["ocr_calls"]
    out = QwenOcrOperator(output_uri=str(tmp_path / "a.jsonl"), **kw).execute(_ctx())
    (row,) = read_results(out["results_uri"])
    assert row["source"] == uri and row["status"] == "ok", row
    assert "Quarterly" in row["text"]
    assert row["width"] is None, "the service fetched the object: the worker never saw its pixels"
    assert emulator.stats()["ocr_calls"] == calls + 1
    stored = (tmp_path / "a.jsonl").read_text() + "".join(p.read_text() for p in (tmp_path / "cache").rglob("*")
                                                           if p.is_file())
    assert "X-Amz-Signature" not in stored and "Quarterly" in stored
    again = QwenOcrOperator(output_uri=str(tmp_path / "b.jsonl"), **kw).execute(_ctx())
    assert (again["n_cached"], emulator.stats()["ocr_calls"]) == (1, calls + 1), "keyed on the object, not the URL"


def test_inline_default_still_reads_locally(emulator, emulator_conn, s3_bucket, moto_server, no_local_read, tmp_path):
    _s3(moto_server).put_object(Bucket=s3_bucket, Key="p.png", Body=(DOCS / "paragraph_en.png").read_bytes())
    out = QwenOcrOperator(task_id="ocr", images=f"s3://{s3_bucket}/p.png", output_uri=str(tmp_path / "a.jsonl"),
                          use_cache=False, max_failed_ratio=1.0).execute(_ctx())
    (row,) = read_results(out["results_uri"])
    assert row["status"] == "error" and row["error"]["code"] == "SourceReadError"  # the guard works


def _jpeg(size, *, app_bytes=0) -> bytes:
    buf = io.BytesIO()
    extra = {"icc_profile": b"\0" * app_bytes} if app_bytes else {}
    Image.new("RGB", size, (250, 250, 250)).save(buf, "JPEG", quality=80, **extra)
    return buf.getvalue()


def test_budget_from_a_ranged_get_of_the_header(s3_conn, s3_bucket, moto_server):
    s3 = _s3(moto_server)
    small, big_header = _jpeg((2480, 3508)), _jpeg((1200, 900), app_bytes=200_000)  # ICC pushes SOF past 64 KB
    s3.put_object(Bucket=s3_bucket, Key="a.jpg", Body=small)
    s3.put_object(Bucket=s3_bucket, Key="b.jpg", Body=big_header)
    spec = get_model("qwen-vl-ocr")
    job = runner.OcrJob(build_ocr_request(model="qwen-vl-ocr"),
                        presigner=Presigner(aws_conn_id=s3_conn, expires_in=REALTIME_EXPIRY_SECONDS))
    srcs = sources.expand_sources(f"s3://{s3_bucket}/", aws_conn_id=s3_conn)
    tokens, unknown, cached = runner.estimate_job_tokens(srcs, job, None)
    assert (unknown, cached) == (1, 0)
    assert tokens == estimate_tokens(small, spec) + spec.max_image_tokens
    assert estimate_tokens(big_header, spec) < spec.max_image_tokens  # so the maximum is the safe count


def test_operator_refuses_an_unknown_transport():
    with pytest.raises(ValueError, match="image_transport"):
        QwenOcrOperator(task_id="ocr", images="x.png", image_transport="link")


def test_budget_exceeded_before_any_call(emulator, emulator_conn, s3_bucket, moto_server, tmp_path):
    _s3(moto_server).put_object(Bucket=s3_bucket, Key="p.jpg", Body=_jpeg((2480, 3508)))
    calls = emulator.stats()["ocr_calls"]
    with pytest.raises(QwenOcrConfigError, match="token_budget"):
        QwenOcrOperator(task_id="ocr", images=f"s3://{s3_bucket}/p.jpg", image_transport="url", token_budget=100,
                        output_uri=str(tmp_path / "a.jsonl")).execute(_ctx())
    assert emulator.stats()["ocr_calls"] == calls


def test_a_source_that_cannot_be_signed_is_an_error_row_not_a_crash():
    class Broken:
        def supports(self, uri):
            return True

        def url(self, uri):
            raise RuntimeError("no credentials")

    class NoCalls:
        def recognize(self, *a, **k):
            raise AssertionError("nothing may be sent")

    job = runner.OcrJob(build_ocr_request(model="qwen-vl-ocr"), presigner=Broken())
    src = sources.Source("s3://bucket/a.jpg")
    row, cached = runner.process_one(src, job, NoCalls(), None)
    assert (row.ok, cached, row.error.code) == (False, False, "SourceReadError")
    assert "no credentials" in row.error.message
    # the run sends nothing for it (an error row), so the budget estimate counts nothing for it either
    assert runner.estimate_job_tokens([src], job, None) == (0, 0, 0)
