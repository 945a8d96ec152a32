"""Nightly, half price: new documents → DashScope Batch → deferrable sensor → the same warehouse tables.

1. ``list_new_documents``: the documents in ``params.input_dir`` whose bytes (sha256) have no ``ok`` row for
   this task in ``ocr_results`` yet — a night with nothing new skips the rest and bills nothing;
2. ``submit_batch``: ``QwenOcrBatchOperator(wait_for_completion=False)`` uploads the JSONL and creates the
   batch(es); it returns at once (ids in XCom), so no worker slot waits for up to 24 h;
3. ``wait_for_batch``: ``QwenOcrBatchSensor(deferrable=True)`` waits in the triggerer (idempotent, may
   retry freely), then downloads the output into result rows (JSONL);
4. the sensor's results Asset (``qwenocr://qwen_ocr_batch_nightly/wait_for_batch``) triggers
   ``qwen_ocr_results_to_warehouse``, which upserts into ``ocr_results`` / ``ocr_cost_ledger`` with
   ``mode="batch"`` (half price), keyed by the same idempotency key as the realtime DAGs.

Batch OCR is offered in the Beijing region only (``cn-beijing`` connection). Connections from the
environment: ``dashscope_default``, ``params.warehouse_conn_id`` (SQLite fallback as in the local DAG).
"""

from __future__ import annotations

import logging
import os
import pathlib
from datetime import datetime, timedelta

try:
    from airflow.sdk import Param, dag, task
except ImportError:  # Airflow 2.x
    from airflow.decorators import dag, task
    from airflow.models.param import Param

from airflow_provider_qwenocr import QwenOcrBatchOperator, QwenOcrBatchSensor

SAMPLE_DIR = pathlib.Path(__file__).resolve().parent / "sample_docs"
OUTPUT_DIR = os.path.join(os.environ.get("AIRFLOW_HOME") or os.path.expanduser("~/airflow"), "qwenocr")
RUN_DIR = "{{ dag_run.run_id | replace(':', '-') | replace('+', '-') }}"
OUTPUT_URI = "{{ params.output_dir }}/batch/" + RUN_DIR + "/results.jsonl"
#: Seconds between status polls (the docs suggest minutes for real batches; tests shorten it).
POLL_SECONDS = float(os.environ.get("QWENOCR_BATCH_POLL_SECONDS", "60"))
DOC_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".pdf")


@dag(
    dag_id="qwen_ocr_batch_nightly",
    schedule="0 2 * * *",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["qwenocr", "example", "batch"],
    params={
        "input_dir": Param(str(SAMPLE_DIR), type="string"),
        "task": Param("text_recognition", type="string"),
        "warehouse_conn_id": Param("qwenocr_warehouse", type="string"),
        "output_dir": Param(OUTPUT_DIR, type="string"),
    },
    doc_md=__doc__,
)
def qwen_ocr_batch_nightly():
    @task
    def list_new_documents(params=None) -> list[str]:
        import hashlib

        from airflow_provider_qwenocr import loaded_sha256s, warehouse_hook

        try:
            from airflow.sdk.exceptions import AirflowSkipException
        except ImportError:  # Airflow 2.x
            from airflow.exceptions import AirflowSkipException
        paths = sorted(str(p) for p in pathlib.Path(params["input_dir"]).rglob("*")
                       if p.is_file() and p.suffix.lower() in DOC_SUFFIXES)
        hook = warehouse_hook(params["warehouse_conn_id"], fallback_sqlite=True)
        done = loaded_sha256s(hook, task=params["task"])  # empty on the first night
        new = [p for p in paths if hashlib.sha256(pathlib.Path(p).read_bytes()).hexdigest() not in done]
        logging.getLogger(__name__).info("%d new of %d documents in %s", len(new), len(paths), params["input_dir"])
        if not new:
            raise AirflowSkipException("no new documents tonight")
        return new

    submit = QwenOcrBatchOperator(
        task_id="submit_batch",
        images=list_new_documents(),
        task="{{ params.task }}",
        output_uri=OUTPUT_URI,
        cache_uri="{{ params.output_dir }}/_cache",  # the realtime DAGs' cache: a document done there is free here
        wait_for_completion=False,
    )
    QwenOcrBatchSensor(
        task_id="wait_for_batch",
        batch_ids=submit.output["batch_ids"],  # the XCom the operator pushes the moment a batch exists
        output_uri=OUTPUT_URI,
        # The realtime DAGs' result cache: what the batch recognised tonight costs nothing there tomorrow.
        cache_uri="{{ params.output_dir }}/_cache",
        deferrable=True,
        poke_interval=POLL_SECONDS,
        timeout=timedelta(hours=25).total_seconds(),
    )

    # The warehouse load is its own DAG, scheduled on the sensor's results Asset
    # (qwenocr://qwen_ocr_batch_nightly/wait_for_batch): dags/qwen_ocr_results_to_warehouse.py.


example_dag = qwen_ocr_batch_nightly()
