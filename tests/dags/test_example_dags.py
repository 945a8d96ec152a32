"""Every example DAG green under ``dag.test()`` against the emulator (and moto S3 + a real Postgres).

Serial by nature (one SQLite metadata DB). What each test proves:
- local → warehouse: a row per document and task, KIE columns filled for the receipts and the ticket,
  NULL where the document has no such field; a second run makes 0 API calls and adds 0 rows.
- S3 → Redshift (generic path): mapped OCR over chunks, JSONL on S3, upserted into Postgres; re-run idempotent.
- The Redshift-only COPY step: the SQL the amazon provider's operator generates from this DAG's templates.
- Nightly batch: rows land at half price through the deferrable sensor, and the warehouse DAG scheduled on
  the sensor's results asset loads them; a night with nothing new skips.
"""

from __future__ import annotations

import json
import pathlib
import types

import pytest

from airflow_provider_qwenocr.warehouse.tasks import query, warehouse_hook

pytestmark = [pytest.mark.dags, pytest.mark.integration]

SAMPLES = pathlib.Path(__file__).resolve().parents[2] / "dags" / "sample_docs"
N_DOCS = len([p for p in SAMPLES.iterdir() if p.suffix in (".png", ".jpg")])
N_KIE = 3  # receipt_01, receipt_02, train_ticket


@pytest.fixture
def sqlite_wh(tmp_path, monkeypatch) -> str:
    monkeypatch.setenv("AIRFLOW_CONN_WH_LOCAL", json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "wh.db")}))
    return "wh_local"


def test_local_to_warehouse_rows_kie_and_zero_call_rerun(dag_runner, emulator, emulator_conn, sqlite_wh, tmp_path):
    conf = {"warehouse_conn_id": sqlite_wh, "output_dir": str(tmp_path / "out")}
    emulator.reset_stats()
    dag_runner("qwen_ocr_local_to_warehouse", conf)
    assert emulator.stats()["ocr_calls"] == N_DOCS + 2 * N_KIE  # text for all; KIE + boxes for 3

    hook = warehouse_hook(sqlite_wh)
    rows = query(hook, 'SELECT "source", "task", "status", "text", "cost_cny" FROM "ocr_results"')
    assert len(rows) == N_DOCS + 2 * N_KIE
    assert all(r["status"] == "ok" and r["cost_cny"] > 0 for r in rows)
    text = {pathlib.Path(r["source"]).name: r["text"] for r in rows if r["task"] == "text_recognition"}
    assert "31245678" in text["receipt_01.png"] and "G1234" in text["train_ticket.png"]

    kie = {pathlib.Path(r["source"]).name: r for r in query(hook, 'SELECT * FROM "ocr_kie"')}
    assert set(kie) == {"receipt_01.png", "receipt_02.png", "train_ticket.png"}
    assert kie["receipt_01.png"]["发票号码"] == "31245678"
    assert kie["receipt_01.png"]["金额__合计金额"] == pytest.approx(128.5)
    assert kie["receipt_01.png"]["开票日期"] == "2026-03-14"
    assert kie["train_ticket.png"]["车次"] == "G1234" and kie["train_ticket.png"]["票价"] == pytest.approx(553.0)
    # Not printed on the document → NULL, never invented.
    assert kie["receipt_02.png"]["发票号码"] is None
    assert kie["receipt_01.png"]["车次"] is None and kie["train_ticket.png"]["商户名称"] is None

    drawings = sorted(p.name.split(".", 1)[0] for p in (tmp_path / "out" / "boxes").iterdir())
    assert drawings == ["receipt_01", "receipt_02", "train_ticket"]  # <stem>.<hash of the URI>.boxes.png
    ledger1 = query(hook, 'SELECT SUM("n_billed") AS n, SUM("total_tokens") AS t FROM "ocr_cost_ledger"')[0]
    assert ledger1["n"] == N_DOCS + 2 * N_KIE and ledger1["t"] > 0

    emulator.reset_stats()
    dag_runner("qwen_ocr_local_to_warehouse", conf)
    assert emulator.stats()["ocr_calls"] == 0
    assert query(hook, 'SELECT COUNT(*) AS n FROM "ocr_results"')[0]["n"] == N_DOCS + 2 * N_KIE
    assert query(hook, 'SELECT COUNT(*) AS n FROM "ocr_kie"')[0]["n"] == N_KIE
    ledger2 = query(hook, 'SELECT SUM("n_billed") AS n, SUM("total_tokens") AS t FROM "ocr_cost_ledger"')[0]
    assert ledger2 == ledger1  # the second run billed nothing


def _upload_samples(bucket: str, endpoint: str) -> None:
    import boto3

    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                      aws_secret_access_key="testing")
    for path in sorted(SAMPLES.iterdir()):
        s3.put_object(Bucket=bucket, Key=f"incoming/{path.name}", Body=path.read_bytes())


def test_s3_to_postgres_mapped_chunks_idempotent(dag_runner, make_emulator, s3_bucket, moto_server, pg_warehouse,
                                                 monkeypatch):
    srv = make_emulator(engine="echo")
    monkeypatch.setenv("AIRFLOW_CONN_DASHSCOPE_DEFAULT", json.dumps(
        {"conn_type": "dashscope", "password": "sk-test-emulator", "host": srv.base_url}))
    _upload_samples(s3_bucket, moto_server)
    conf = {"s3_prefix": f"s3://{s3_bucket}/incoming/", "results_prefix": f"s3://{s3_bucket}/results",
            "chunk_size": 2, "warehouse": "postgres", "warehouse_conn_id": pg_warehouse}
    dag_runner("qwen_ocr_s3_to_redshift", conf)
    assert srv.stats()["ocr_calls"] == N_DOCS

    hook = warehouse_hook(pg_warehouse)
    rows = query(hook, 'SELECT "source", "status", "text", "first_run_id" FROM "ocr_results" ORDER BY "source"')
    assert [r["source"] for r in rows] == sorted(f"s3://{s3_bucket}/incoming/{p.name}" for p in SAMPLES.iterdir()
                                                 if p.suffix in (".png", ".jpg"))
    assert all(r["status"] == "ok" and r["text"].startswith("echo ") for r in rows)

    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    keys = S3Hook(aws_conn_id="aws_default").list_keys(s3_bucket, prefix="results/")
    chunks = [k for k in keys if k.endswith(".jsonl")]
    assert len(chunks) == -(-N_DOCS // 2)  # one JSONL per mapped chunk

    srv.reset_stats()
    dag_runner("qwen_ocr_s3_to_redshift", conf)
    assert srv.stats()["ocr_calls"] == 0
    again = query(hook, 'SELECT "source", "first_run_id" FROM "ocr_results" ORDER BY "source"')
    assert again == [{"source": r["source"], "first_run_id": r["first_run_id"]} for r in rows]


def test_redshift_copy_sql_generated_from_the_dag(s3_conn, monkeypatch):
    """The Redshift-only step: render this DAG's COPY task and capture the SQL the amazon operator sends."""
    import jinja2
    from airflow.providers.amazon.aws.hooks.redshift_sql import RedshiftSQLHook

    from tests.fixtures.airflow import load_dag

    dag = load_dag("qwen_ocr_s3_to_redshift")
    op = dag.get_task("copy_to_staging")
    params = {"results_prefix": "s3://acme-ocr/results/", "schema": "analytics", "warehouse_conn_id": "redshift_default"}
    ctx = {"params": params, "dag_run": types.SimpleNamespace(run_id="manual__2026-11-25T10:00:00+00:00")}
    env = jinja2.Environment()
    assert op.aws_conn_id == s3_conn
    for field in ("s3_bucket", "s3_key", "schema", "redshift_conn_id"):
        setattr(op, field, env.from_string(getattr(op, field)).render(**ctx))
    sent = []
    monkeypatch.setattr(RedshiftSQLHook, "run", lambda self, sql, autocommit=False, **kw: sent.append(sql))
    op.execute({})
    statements = sent[0]
    assert statements[0] == "BEGIN;" and statements[1] == "DELETE FROM analytics.ocr_results_staging;"
    copy = " ".join(statements[2].split())
    assert copy.startswith("COPY analytics.ocr_results_staging FROM "
                           "'s3://acme-ocr/results/manual__2026-11-25T10-00-00-00-00/'")
    assert "aws_access_key_id=testing;aws_secret_access_key=testing" in copy
    assert "FORMAT AS JSON 'auto ignorecase'" in copy and copy.endswith(";")
    assert statements[-1] == "COMMIT"

    merge = dag.get_task("merge_into_ocr_results")
    ledger_sql, sql = (env.from_string(s).render(**ctx) for s in merge.sql)
    assert ledger_sql.startswith("INSERT INTO analytics.ocr_cost_ledger SELECT")
    assert sql.startswith("MERGE INTO analytics.ocr_results USING (") and "analytics.ocr_results_staging" in sql
    assert "WHEN MATCHED THEN UPDATE SET" in sql and "WHEN NOT MATCHED THEN INSERT VALUES" in sql
    assert '"first_run_id"' not in sql.split("WHEN NOT MATCHED")[0]  # an update never rewrites who paid first


def test_batch_nightly_half_price_and_nothing_new_skips(dag_runner, make_emulator, sqlite_wh, tmp_path, monkeypatch):
    srv = make_emulator(engine="echo", batch_seconds=1.0)
    monkeypatch.setenv("AIRFLOW_CONN_DASHSCOPE_DEFAULT", json.dumps(
        {"conn_type": "dashscope", "password": "sk-test-emulator", "host": srv.base_url}))
    monkeypatch.setenv("QWENOCR_BATCH_POLL_SECONDS", "1")
    conf = {"warehouse_conn_id": sqlite_wh, "output_dir": str(tmp_path / "out")}
    from tests.fixtures.airflow import load_dag

    for dag_id in ("qwen_ocr_batch_nightly", "qwen_ocr_results_to_warehouse"):
        dag = load_dag(dag_id)
        if hasattr(dag, "sync_to_db"):  # Airflow 2.x dag.test() does not register the datasets itself
            dag.sync_to_db()
    dag_runner("qwen_ocr_batch_nightly", conf)
    # the load is its own DAG, scheduled on the sensor's results asset; it reads the latest event
    dag_runner("qwen_ocr_results_to_warehouse", {"warehouse_conn_id": sqlite_wh})

    hook = warehouse_hook(sqlite_wh)
    rows = query(hook, 'SELECT "source", "status", "mode", "input_tokens", "output_tokens", "cost_usd", "model" '
                       'FROM "ocr_results"')
    assert len(rows) == N_DOCS and all(r["status"] == "ok" and r["mode"] == "batch" for r in rows)
    from airflow_provider_qwenocr.ocr.models import get_model

    r = rows[0]
    full = get_model(r["model"]).price().cost(r["input_tokens"], r["output_tokens"])["usd"]
    assert r["cost_usd"] == pytest.approx(full / 2) and r["cost_usd"] > 0
    ledger = query(hook, 'SELECT "mode", "n_billed" FROM "ocr_cost_ledger"')
    assert ledger == [{"mode": "batch", "n_billed": N_DOCS}]
    cached = [p for p in (tmp_path / "out" / "_cache").rglob("*") if p.is_file()]
    assert len(cached) >= N_DOCS  # shared with the realtime DAGs: tomorrow's realtime run over these is free

    before = srv.stats()["requests"]
    dag_runner("qwen_ocr_batch_nightly", conf)  # nothing new tonight: skipped, no upload, no batch
    assert srv.stats()["requests"] == before
    assert query(hook, 'SELECT COUNT(*) AS n FROM "ocr_results"')[0]["n"] == N_DOCS
