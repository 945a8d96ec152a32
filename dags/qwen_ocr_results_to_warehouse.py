"""Load new OCR results into the warehouse whenever the nightly batch lands them (scheduled on an Asset).

``qwen_ocr_batch_nightly``'s sensor declares the outlet ``qwenocr://qwen_ocr_batch_nightly/wait_for_batch``
(:func:`~airflow_provider_qwenocr.ocr_asset`); every run that lands rows emits an event whose extra
holds that run's ``results_uri``. This DAG is scheduled on the asset, so it runs once per landing, and it
reads the file from the latest event (``inlet_events``) — which also works for a manual run. Nothing here
knows the nightly DAG's run-specific paths.

Connections: ``params.warehouse_conn_id`` (default ``qwenocr_warehouse``), any common-sql database with ON
CONFLICT; when it is not defined, an SQLite file in ``$AIRFLOW_HOME`` is used.
"""

from __future__ import annotations

from datetime import datetime

try:
    from airflow.sdk import Param, dag, task
except ImportError:  # Airflow 2.x
    from airflow.decorators import dag, task
    from airflow.models.param import Param

from airflow_provider_qwenocr import ocr_asset

NIGHTLY_RESULTS = ocr_asset("qwen_ocr_batch_nightly", "wait_for_batch")


@dag(
    dag_id="qwen_ocr_results_to_warehouse",
    schedule=[NIGHTLY_RESULTS],
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["qwenocr", "example", "asset"],
    params={"warehouse_conn_id": Param("qwenocr_warehouse", type="string")},
    doc_md=__doc__,
)
def qwen_ocr_results_to_warehouse():
    @task(inlets=[NIGHTLY_RESULTS])
    def load_warehouse(params=None, inlet_events=None) -> dict:
        from airflow_provider_qwenocr import load_result_files, warehouse_hook, warehouse_report

        event = inlet_events[NIGHTLY_RESULTS][-1]  # the latest landing (IndexError: nothing landed yet)
        landed = dict(event.extra)
        # the ledger names the run that paid for the rows: the nightly run that produced the event
        dag_id, run_id = event.source_dag_id, event.source_run_id
        hook = warehouse_hook(params["warehouse_conn_id"], fallback_sqlite=True)
        load = load_result_files(hook, [landed["results_uri"]], dag_id=dag_id, run_id=run_id, mode="batch")
        warehouse_report(hook, dag_id=dag_id, run_id=run_id, ocr_outputs=[landed], load=load)
        return load

    load_warehouse()


example_dag = qwen_ocr_results_to_warehouse()
