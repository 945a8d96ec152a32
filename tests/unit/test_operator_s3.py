"""The operator with s3:// sources, results and cache on moto S3 (fake OCR client)."""

from __future__ import annotations

from airflow.providers.amazon.aws.hooks.s3 import S3Hook

from airflow_provider_qwenocr.ocr.images import smart_resize
from airflow_provider_qwenocr.runs.results_store import read_results
from tests.unit.test_operator_ocr import FakeClient, _context, _op, _png


def test_s3_in_s3_out_and_rerun_free(s3_conn, s3_bucket, tmp_path):
    hook = S3Hook(aws_conn_id=s3_conn)
    for i in range(4):
        hook.load_bytes(_png((40 + 8 * i, 40)), key=f"scans/{i}.png", bucket_name=s3_bucket, replace=True)
    out_uri = f"s3://{s3_bucket}/results/run1/ocr.jsonl"
    client = FakeClient()
    kw = dict(images=f"s3://{s3_bucket}/scans/", output_uri=out_uri, aws_conn_id=s3_conn,
              cache_uri=f"s3://{s3_bucket}/results/_cache/")
    out = _op(client, **kw).execute(_context(tmp_path))
    assert out["n_ok"] == 4 and len(client.calls) == 4 and out["results_uri"] == out_uri
    rows = sorted(read_results(out_uri, aws_conn_id=s3_conn), key=lambda r: r["source"])
    assert [r["source"] for r in rows] == [f"s3://{s3_bucket}/scans/{i}.png" for i in range(4)]
    h, w = smart_resize(40, 64, 32, 32 * 32 * 3, 32 * 32 * 8192)
    assert rows[3]["text"] == f"64x40->{w}x{h}"  # read from S3 and resized to the grid before the call
    cache_keys = hook.list_keys(bucket_name=s3_bucket, prefix="results/_cache/")
    assert len(cache_keys) == 4
    again = FakeClient()
    out2 = _op(again, **kw).execute(_context(tmp_path))
    assert again.calls == [] and out2["n_cached"] == 4
