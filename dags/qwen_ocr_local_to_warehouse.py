"""Local folder of documents → Qwen-VL-OCR → results JSONL → embedded warehouse (SQLite), idempotently.

What ``make demo`` runs. Three OCR tasks over ``params.input_dir`` (default: the sample documents shipped
beside this file):

* text recognition of every document,
* key information extraction of the receipts and the train ticket with ``sample_docs/receipt_schema.json``
  (→ the typed table ``ocr_kie``; fields the model could not read stay NULL),
* advanced recognition of the same receipts, with the recognised boxes drawn on each image (PNG).

Then one load into ``ocr_results`` + ``ocr_kie`` + ``ocr_cost_ledger`` (upserts keyed by the idempotency
key), and a report that queries a few rows back and prints the run's usage and cost. Run it again: the OCR
operators find every image in their result cache (0 API calls) and the load adds 0 rows.

Connections (from the environment, e.g. ``AIRFLOW_CONN_DASHSCOPE_DEFAULT``): ``dashscope_default`` for the
service or the emulator; ``params.warehouse_conn_id`` (default ``qwenocr_warehouse``) for any common-sql
database with ON CONFLICT — when it is not defined, an SQLite file in ``$AIRFLOW_HOME`` is used.
"""

from __future__ import annotations

import json
import os
import pathlib
from datetime import datetime

try:
    from airflow.sdk import Param, dag, task
except ImportError:  # Airflow 2.x
    from airflow.decorators import dag, task
    from airflow.models.param import Param

from airflow_provider_qwenocr import QwenOcrOperator

SAMPLE_DIR = pathlib.Path(__file__).resolve().parent / "sample_docs"
RESULT_SCHEMA = json.loads((SAMPLE_DIR / "receipt_schema.json").read_text(encoding="utf-8"))
OUTPUT_DIR = os.path.join(os.environ.get("AIRFLOW_HOME") or os.path.expanduser("~/airflow"), "qwenocr")
KIE_DOCS = ["receipt_*", "*ticket*"]  # globs inside input_dir: each must match at least one file
RUN_DIR = "{{ dag_run.run_id | replace(':', '-') | replace('+', '-') }}"


@dag(
    dag_id="qwen_ocr_local_to_warehouse",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["qwenocr", "example"],
    params={
        "input_dir": Param(str(SAMPLE_DIR), type="string", description="Folder of documents to OCR"),
        "warehouse_conn_id": Param("qwenocr_warehouse", type="string",
                                   description="common-sql connection (SQLite/Postgres/DuckDB) to load into"),
        "output_dir": Param(OUTPUT_DIR, type="string", description="Where results JSONL and drawings go"),
    },
    doc_md=__doc__,
)
def qwen_ocr_local_to_warehouse():
    common = {"cache_uri": "{{ params.output_dir }}/_cache", "max_failed_ratio": 0.5}
    text = QwenOcrOperator(
        task_id="ocr_text",
        images="{{ params.input_dir }}",
        task="text_recognition",
        output_uri=f"{{{{ params.output_dir }}}}/{RUN_DIR}/text.jsonl",
        **common,
    )
    kie_images = [f"{{{{ params.input_dir }}}}/{pattern}" for pattern in KIE_DOCS]
    kie = QwenOcrOperator(
        task_id="ocr_key_information",
        images=kie_images,
        task="key_information_extraction",
        result_schema=RESULT_SCHEMA,
        output_uri=f"{{{{ params.output_dir }}}}/{RUN_DIR}/kie.jsonl",
        **common,
    )
    boxes = QwenOcrOperator(
        task_id="ocr_boxes",
        images=kie_images,
        task="advanced_recognition",
        output_uri=f"{{{{ params.output_dir }}}}/{RUN_DIR}/boxes.jsonl",
        draw_boxes_uri="{{ params.output_dir }}/boxes",
        **common,
    )

    @task
    def load_warehouse(outputs: list, params=None, dag_run=None) -> dict:
        from airflow_provider_qwenocr import load_result_files, warehouse_hook

        hook = warehouse_hook(params["warehouse_conn_id"], fallback_sqlite=True)
        return load_result_files(hook, outputs, dag_id=dag_run.dag_id, run_id=dag_run.run_id,
                                 result_schema=RESULT_SCHEMA)

    @task
    def report(load: dict, outputs: list, params=None, dag_run=None) -> dict:
        from airflow_provider_qwenocr import warehouse_hook, warehouse_report

        hook = warehouse_hook(params["warehouse_conn_id"], fallback_sqlite=True)
        return warehouse_report(hook, dag_id=dag_run.dag_id, run_id=dag_run.run_id, ocr_outputs=outputs, load=load)

    outputs = [text.output, kie.output, boxes.output]
    report(load_warehouse(outputs), outputs)


example_dag = qwen_ocr_local_to_warehouse()
