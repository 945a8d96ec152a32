"""A folder of PDFs → documents + pages tables in the embedded warehouse (issue 18: documents as a unit).

Each PDF is ONE document: with ``qwen3.5-ocr`` it goes to the service whole (the Responses API reads up
to 50 pages per request; a longer PDF is split, without rendering, into 50-page parts), uploaded through
the service's temporary upload — a local folder and a key are all it needs (the upload's ``oss://`` URLs
are valid 48 h). Two OCR tasks over ``params.input_dir`` (default: the sample PDFs beside this file):

* ``parse``: ``document_parsing`` of every PDF — a row per page (its text and markdown) and a row per
  document (the whole text, ``pages`` = N);
* ``extract``: ``key_information_extraction`` of the invoices with ``sample_docs/receipt_schema.json`` —
  ONE answer per document, so a field printed on page 2 sits beside one printed on page 1.

Then every row into ``ocr_results`` (pages and documents; ``page`` NULL on a document row) + the ledger,
the documents into ``ocr_documents`` (one row per document; the schema's fields as typed columns), and a
report. Tokens and cost are per document; ``qwen3.5-ocr``'s price is not published, so the cost reads
"unknown" (NULL), never 0 — set the connection's ``price_*`` extras to have it priced. A re-run makes no
request: every document is in the result cache.
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

HERE = pathlib.Path(__file__).resolve().parent
SAMPLE_DIR = HERE / "sample_pdfs"
RESULT_SCHEMA = json.loads((HERE / "sample_docs" / "receipt_schema.json").read_text(encoding="utf-8"))
OUTPUT_DIR = os.path.join(os.environ.get("AIRFLOW_HOME") or os.path.expanduser("~/airflow"), "qwenocr")
RUN_DIR = "{{ dag_run.run_id | replace(':', '-') | replace('+', '-') }}"


@dag(
    dag_id="qwen_ocr_pdf_documents",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["qwenocr", "example"],
    params={
        "input_dir": Param(str(SAMPLE_DIR), type="string", description="Folder of PDFs"),
        "invoices": Param("invoice*.pdf", type="string", description="Which PDFs get key information extraction"),
        "model": Param("qwen3.5-ocr", type="string", description="OCR model (qwen3.5-ocr: whole PDFs)"),
        "warehouse_conn_id": Param("qwenocr_warehouse", type="string",
                                   description="common-sql connection (SQLite/Postgres/DuckDB) to load into"),
        "output_dir": Param(OUTPUT_DIR, type="string", description="Where results JSONL go"),
    },
    doc_md=__doc__,
)
def qwen_ocr_pdf_documents():
    common = {"model": "{{ params.model }}", "unit": "document", "cache_uri": "{{ params.output_dir }}/_cache"}
    parse = QwenOcrOperator(
        task_id="parse",
        images="{{ params.input_dir }}/*.pdf",
        task="document_parsing",
        output_uri=f"{{{{ params.output_dir }}}}/{RUN_DIR}/parse.jsonl",
        **common,
    )
    extract = QwenOcrOperator(
        task_id="extract",
        images="{{ params.input_dir }}/{{ params.invoices }}",
        task="key_information_extraction",
        result_schema=RESULT_SCHEMA,
        output_uri=f"{{{{ params.output_dir }}}}/{RUN_DIR}/extract.jsonl",
        **common,
    )

    @task
    def load_warehouse(outputs: list, params=None, dag_run=None) -> dict:
        from airflow_provider_qwenocr import load_document_files, load_result_files, warehouse_hook

        hook = warehouse_hook(params["warehouse_conn_id"], fallback_sqlite=True)
        ids = {"dag_id": dag_run.dag_id, "run_id": dag_run.run_id, "result_schema": RESULT_SCHEMA}
        loaded = load_result_files(hook, outputs, **ids)  # page and document rows, and the ledger
        loaded["documents"] = load_document_files(hook, outputs, **ids)  # one row per document
        return loaded

    @task
    def report(load: dict, params=None) -> int:
        from airflow_provider_qwenocr import documents_report, warehouse_hook

        hook = warehouse_hook(params["warehouse_conn_id"], fallback_sqlite=True)
        return len(documents_report(hook, columns=load["documents"]["columns"], printer=print))

    outputs = [parse.output, extract.output]
    report(load_warehouse(outputs))


example_dag = qwen_ocr_pdf_documents()
