"""image_transport="url": s3:// sources go to the Batch service as presigned URLs (issue 11, batch at volume).

Against the emulator (which fetches the URL like the service) and moto S3 on loopback: the input file
holds URLs instead of base64, the service reads the images from the bucket, the rows name the s3:// URI
(never the signature), and local files in the same run still go inline.
"""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlparse

import boto3
import pytest

from airflow_provider_qwenocr.exceptions import QwenOcrSubmitRefusedError
from airflow_provider_qwenocr.operators.batch import QwenOcrBatchOperator
from airflow_provider_qwenocr.runs.presign import MAX_S3_EXPIRY_SECONDS, Presigner, expiry_seconds
from airflow_provider_qwenocr.runs.results_store import read_results
from tests.integration.batch_support import FakeTI, conn_fixture, png, server_fixture

pytestmark = pytest.mark.integration


server = server_fixture(batch_seconds=0.3)


conn = conn_fixture()


def _s3(moto_server):
    return boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def _input_lines(server, batch_id):
    from tests.integration.batch_support import _store

    store = _store(server)
    return [json.loads(x) for x in store.content[store.batches[batch_id]["input_file_id"]].decode().splitlines()]


def test_s3_sources_go_as_presigned_urls_and_land_as_rows(conn, server, s3_bucket, moto_server, tmp_path):
    s3 = _s3(moto_server)
    for name in ("alpha", "beta"):
        s3.put_object(Bucket=s3_bucket, Key=f"scans/{name}.png", Body=png(name))
    local = tmp_path / "local.png"
    local.write_bytes(png("gamma"))
    ti = FakeTI()
    op = QwenOcrBatchOperator(task_id="ocr_batch", images=[f"s3://{s3_bucket}/scans/", str(local)],
                              output_uri=str(tmp_path / "r.jsonl"), image_transport="url",
                              deferrable=False, poll_interval=0.1)
    summary = op.execute({"ti": ti})
    assert (summary["n_images"], summary["n_ok"]) == (3, 3)
    (batch_id,) = ti.xcom["batch_ids"]
    sent = [ln["body"]["messages"][0]["content"][0]["image_url"]["url"] for ln in _input_lines(server, batch_id)]
    urls = [u for u in sent if not u.startswith("data:")]
    assert len(urls) == 2 and len(sent) == 3  # the local file still goes inline
    for u in urls:
        q = parse_qs(urlparse(u).query)
        assert urlparse(u).path.startswith(f"/{s3_bucket}/scans/") and "X-Amz-Signature" in q
        assert int(q["X-Amz-Expires"][0]) == expiry_seconds("24h") > 24 * 3600
    rows = {r["source"]: r for r in read_results(summary["results_uri"])}
    assert set(rows) == {f"s3://{s3_bucket}/scans/alpha.png", f"s3://{s3_bucket}/scans/beta.png", str(local)}
    assert all(r["status"] == "ok" for r in rows.values())
    text = (tmp_path / "r.jsonl").read_text() + (tmp_path / "r.manifest.jsonl").read_text()
    assert "X-Amz-Signature" not in text  # the bearer URL is in the request line only


def test_url_rerun_keys_on_the_object_not_the_signature(conn, server, s3_bucket, moto_server, tmp_path):
    _s3(moto_server).put_object(Bucket=s3_bucket, Key="a.png", Body=png("delta"))
    kw = dict(task_id="ocr_batch", images=f"s3://{s3_bucket}/a.png", image_transport="url",
              cache_uri=str(tmp_path / "cache"), deferrable=False, poll_interval=0.1)
    first = QwenOcrBatchOperator(output_uri=str(tmp_path / "1.jsonl"), **kw).execute({"ti": FakeTI()})
    again = QwenOcrBatchOperator(output_uri=str(tmp_path / "2.jsonl"), **kw).execute({"ti": FakeTI()})
    assert first["n_ok"] == 1 and again["n_cached"] == 1 and again["batch_ids"] == []


def test_url_transport_refuses_a_token_budget_and_unknown_modes(conn, tmp_path):
    with pytest.raises(ValueError, match="image_transport"):
        QwenOcrBatchOperator(task_id="t", images=str(tmp_path), image_transport="carrier-pigeon")
    op = QwenOcrBatchOperator(task_id="t", images=str(tmp_path), image_transport="url", token_budget=10,
                              output_uri=str(tmp_path / "r.jsonl"), deferrable=False)
    (tmp_path / "x.png").write_bytes(png("x"))
    with pytest.raises(QwenOcrSubmitRefusedError, match="token_budget cannot be checked"):
        op.execute({"ti": FakeTI()})


def test_expiry_covers_the_window_and_stays_within_what_s3_signs():
    assert expiry_seconds("24h") == 86400 + 12 * 3600
    assert expiry_seconds(48) == 48 * 3600 + 12 * 3600  # read as the batch operator reads the window
    with pytest.raises(ValueError, match="168 h"):
        expiry_seconds("168h")
    with pytest.raises(ValueError):
        expiry_seconds("soon")
    assert expiry_seconds("144h", margin_seconds=86400) == MAX_S3_EXPIRY_SECONDS
    assert Presigner.supports("s3://b/k") and Presigner.supports("gs://b/k")
    assert not Presigner.supports("/tmp/x.png") and not Presigner.supports("https://h/x.png")
