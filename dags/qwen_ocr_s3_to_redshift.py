"""S3 prefix → Qwen-VL-OCR mapped over chunks of keys → JSONL on S3 → Redshift (COPY + MERGE) or Postgres.

The production shape, with the amazon provider:

1. ``list_chunks`` lists the documents under ``params.s3_prefix`` and cuts them into chunks;
2. ``ocr`` is ``QwenOcrOperator.partial(...).expand(images=chunks)``: one mapped task per chunk, each
   writing its own ``chunk-<map_index>.jsonl`` under ``params.results_prefix/<run>/`` on S3; the result
   cache (``params.results_prefix/_cache``) is shared by all runs, so documents already done cost nothing;
3. ``params.warehouse`` picks the landing:

   * ``redshift``: ``S3ToRedshiftOperator`` COPYs the run's JSONL into ``ocr_results_staging`` (method
     REPLACE), then ``SQLExecuteQueryOperator`` adds the run's cost-ledger line and MERGEs the rows into
     ``ocr_results`` keyed by the idempotency key, in one transaction;
   * ``postgres`` (any common-sql DB with ON CONFLICT; what CI runs against a local Postgres): the rows are
     read from S3 and upserted into ``ocr_results`` + ``ocr_cost_ledger`` by the generic loader.

Connections from the environment: ``dashscope_default``, ``aws_default`` (S3; another id via
``QWENOCR_AWS_CONN_ID``), ``params.warehouse_conn_id``.
"""

from __future__ import annotations

import os
from datetime import datetime

try:
    from airflow.sdk import Param, dag, task
except ImportError:  # Airflow 2.x
    from airflow.decorators import dag, task
    from airflow.models.param import Param

from airflow.providers.amazon.aws.transfers.s3_to_redshift import S3ToRedshiftOperator
from airflow.providers.common.sql.operators.sql import SQLExecuteQueryOperator

from airflow_provider_qwenocr import (
    REDSHIFT_COPY_OPTIONS,
    REDSHIFT_STAGING_TABLE,
    QwenOcrOperator,
    redshift_merge_sql,
    redshift_setup_sql,
)

RUN_DIR = "{{ dag_run.run_id | replace(':', '-') | replace('+', '-') }}"
RESULTS = "{{ params.results_prefix.rstrip('/') }}"
#: Not a param: amazon provider 9.17 (the newest on Airflow 2.10) copies S3ToRedshiftOperator's aws_conn_id
#: in __init__, before templating, so a templated value would never reach the COPY.
AWS_CONN_ID = os.environ.get("QWENOCR_AWS_CONN_ID", "aws_default")
DOC_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".pdf")


@dag(
    dag_id="qwen_ocr_s3_to_redshift",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["qwenocr", "example", "s3", "redshift"],
    params={
        "s3_prefix": Param(os.environ.get("QWENOCR_S3_PREFIX", "s3://my-documents/incoming/"), type="string"),
        "results_prefix": Param(os.environ.get("QWENOCR_S3_RESULTS", "s3://my-documents/ocr-results"),
                                type="string"),
        "chunk_size": Param(25, type="integer", minimum=1),
        "task": Param("text_recognition", type="string"),
        "warehouse": Param("redshift", enum=["redshift", "postgres"]),
        "warehouse_conn_id": Param("redshift_default", type="string"),
        "schema": Param("public", type="string"),
    },
    doc_md=__doc__,
)
def qwen_ocr_s3_to_redshift():
    @task
    def list_chunks(params=None) -> list[list[str]]:
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        from airflow_provider_qwenocr import check_warehouse

        check_warehouse(params["warehouse_conn_id"])  # before any OCR call: the load at the end can run

        bucket, _, prefix = params["s3_prefix"].removeprefix("s3://").partition("/")
        keys = S3Hook(aws_conn_id=AWS_CONN_ID).list_keys(bucket_name=bucket, prefix=prefix) or []
        uris = sorted(f"s3://{bucket}/{k}" for k in keys if k.lower().endswith(DOC_SUFFIXES))
        if not uris:
            raise ValueError(f"no documents under {params['s3_prefix']}")
        size = int(params["chunk_size"])
        return [uris[i : i + size] for i in range(0, len(uris), size)]

    ocr = QwenOcrOperator.partial(
        task_id="ocr",
        task="{{ params.task }}",
        output_uri=f"{RESULTS}/{RUN_DIR}/chunk-{{{{ ti.map_index }}}}.jsonl",
        cache_uri=f"{RESULTS}/_cache",
        aws_conn_id=AWS_CONN_ID,
        max_failed_ratio=0.1,
    ).expand(images=list_chunks())

    @task.branch
    def choose_warehouse(params=None) -> str:
        return "create_redshift_tables" if params["warehouse"] == "redshift" else "load_generic"

    @task
    def load_generic(outputs, params=None, dag_run=None) -> dict:
        from airflow_provider_qwenocr import load_result_files, warehouse_hook, warehouse_report

        hook = warehouse_hook(params["warehouse_conn_id"])
        load = load_result_files(hook, outputs, aws_conn_id=AWS_CONN_ID,
                                 dag_id=dag_run.dag_id, run_id=dag_run.run_id)
        warehouse_report(hook, dag_id=dag_run.dag_id, run_id=dag_run.run_id, ocr_outputs=list(outputs), load=load)
        return load

    create_tables = SQLExecuteQueryOperator(
        task_id="create_redshift_tables",
        conn_id="{{ params.warehouse_conn_id }}",
        sql=redshift_setup_sql("{{ params.schema }}"),
    )
    copy_to_staging = S3ToRedshiftOperator(
        task_id="copy_to_staging",
        redshift_conn_id="{{ params.warehouse_conn_id }}",
        aws_conn_id=AWS_CONN_ID,
        schema="{{ params.schema }}",
        table=REDSHIFT_STAGING_TABLE,
        s3_bucket="{{ params.results_prefix.removeprefix('s3://').split('/', 1)[0] }}",
        s3_key="{{ params.results_prefix.removeprefix('s3://').partition('/')[2].rstrip('/') }}/" + RUN_DIR + "/",
        copy_options=REDSHIFT_COPY_OPTIONS,
        method="REPLACE",
    )
    merge = SQLExecuteQueryOperator(
        task_id="merge_into_ocr_results",
        conn_id="{{ params.warehouse_conn_id }}",
        # One transaction: the ledger line (rows not yet paid for) first, then the upsert.
        sql=redshift_merge_sql("{{ params.schema }}"),
        parameters={"run_id": "{{ dag_run.run_id }}", "dag_id": "{{ dag.dag_id }}"},
    )

    branch = choose_warehouse()
    ocr >> branch
    branch >> load_generic(ocr.output)
    branch >> create_tables >> copy_to_staging >> merge


example_dag = qwen_ocr_s3_to_redshift()
