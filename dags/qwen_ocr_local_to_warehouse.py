"""Local folder of documents → Qwen-VL-OCR → results JSONL → embedded warehouse (SQLite), idempotently.

What ``make demo`` runs. Three OCR tasks over ``params.input_dir`` (default: the sample documents shipped
beside this file):

* text recognition of every document,
* key information extraction with ``sample_docs/receipt_schema.json`` of the documents whose file names match
  ``params.kie_patterns`` (default: the sample receipts and train ticket; ``["*"]``: every document) → the
  typed table ``ocr_kie`` (fields the model could not read stay NULL),
* advanced recognition of the same documents, with the recognised boxes drawn on each image (PNG).

Any folder of images and PDFs works, whatever the file names: when no name matches ``kie_patterns``, the two
KIE tasks are skipped and the text rows are still loaded. The first task checks that the warehouse load can
run (its SQL provider is installed: ``pip install "airflow-provider-qwenocr[warehouse]"``) before any OCR
call is billed.

Then one load into ``ocr_results`` + ``ocr_kie`` + ``ocr_cost_ledger`` (upserts keyed by the idempotency
key), and a report that queries a few rows back and prints the run's usage and cost. Run it again: the OCR
operators find every image in their result cache (0 API calls) and the load adds 0 rows.

Connections (from the environment, e.g. ``AIRFLOW_CONN_DASHSCOPE_DEFAULT``): ``dashscope_default`` for the
service or the emulator; ``params.warehouse_conn_id`` (default ``qwenocr_warehouse``) for any common-sql
database with ON CONFLICT — when it is not defined, an SQLite file in ``$AIRFLOW_HOME`` is used.
"""

from __future__ import annotations

import fnmatch
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
KIE_PATTERNS = ["receipt_*", "*ticket*"]  # file-name globs: the sample documents that have the schema's fields
DOC_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".pdf")
RUN_DIR = "{{ dag_run.run_id | replace(':', '-') | replace('+', '-') }}"


@dag(
    dag_id="qwen_ocr_local_to_warehouse",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["qwenocr", "example"],
    params={
        "input_dir": Param(str(SAMPLE_DIR), type="string", description="Folder of documents to OCR"),
        "kie_patterns": Param(KIE_PATTERNS, type="array",
                              description="File-name globs (inside input_dir) of the documents for key "
                                          "information extraction and boxes; [\"*\"] = all; none matching skips them"),
        "warehouse_conn_id": Param("qwenocr_warehouse", type="string",
                                   description="common-sql connection (SQLite/Postgres/DuckDB) to load into"),
        "output_dir": Param(OUTPUT_DIR, type="string", description="Where results JSONL and drawings go"),
    },
    doc_md=__doc__,
)
def qwen_ocr_local_to_warehouse():
    @task
    def check_warehouse(params=None) -> str:
        """Fail now, before any OCR call is billed, if the load at the end cannot run (issue 20 item 15)."""
        from airflow_provider_qwenocr import check_warehouse

        return check_warehouse(params["warehouse_conn_id"], fallback_sqlite=True)

    @task
    def kie_documents(params=None) -> list[str]:
        """The documents of input_dir whose file names match kie_patterns; none → skip the KIE tasks."""
        try:
            from airflow.sdk.exceptions import AirflowSkipException
        except ImportError:  # Airflow 2.x
            from airflow.exceptions import AirflowSkipException

        patterns = params["kie_patterns"] or []
        found = []
        for folder, _dirs, files in os.walk(params["input_dir"]):  # no directory links followed: no loops
            found += [os.path.join(folder, f) for f in files
                      if os.path.splitext(f)[1].lower() in DOC_SUFFIXES
                      and any(fnmatch.fnmatch(f.lower(), pattern.lower()) for pattern in patterns)]
        if not found:
            raise AirflowSkipException(f"no document in {params['input_dir']} matches kie_patterns {patterns}")
        return sorted(found)

    checked = check_warehouse()
    common = {"cache_uri": "{{ params.output_dir }}/_cache", "max_failed_ratio": 0.5}
    text = QwenOcrOperator(
        task_id="ocr_text",
        images="{{ params.input_dir }}",
        task="text_recognition",
        output_uri=f"{{{{ params.output_dir }}}}/{RUN_DIR}/text.jsonl",
        **common,
    )
    kie_images = kie_documents()
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

    @task(trigger_rule="none_failed")  # the KIE tasks are skipped when no document matches kie_patterns
    def load_warehouse(outputs: list, params=None, dag_run=None) -> dict:
        from airflow_provider_qwenocr import load_result_files, warehouse_hook

        hook = warehouse_hook(params["warehouse_conn_id"], fallback_sqlite=True)
        return load_result_files(hook, outputs, dag_id=dag_run.dag_id, run_id=dag_run.run_id,
                                 result_schema=RESULT_SCHEMA)

    @task(trigger_rule="none_failed")
    def report(load: dict, outputs: list, params=None, dag_run=None) -> dict:
        from airflow_provider_qwenocr import warehouse_hook, warehouse_report

        hook = warehouse_hook(params["warehouse_conn_id"], fallback_sqlite=True)
        return warehouse_report(hook, dag_id=dag_run.dag_id, run_id=dag_run.run_id, ocr_outputs=outputs, load=load)

    checked >> [text, kie_images]
    outputs = [text.output, kie.output, boxes.output]
    report(load_warehouse(outputs), outputs)


example_dag = qwen_ocr_local_to_warehouse()
