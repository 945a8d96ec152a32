"""The batch trio inside a real Airflow run: ``dag.test()`` runs deferrable tasks' triggers inline.

Two shapes a nightly DAG uses: a deferrable operator that submits and waits, and a submit-only operator
followed by a deferrable sensor that takes the ids as an XComArg. The DAG is written to
a temporary DAG bundle (Airflow 3 ``dag.test()`` serialises DAGs from bundles; 2.x ignores the setting).
"""

from __future__ import annotations

import json
import textwrap

import pytest

from airflow_provider_qwenocr.runs.results_store import read_results
from tests.integration.batch_support import conn_env, png, start_server

pytestmark = [pytest.mark.integration, pytest.mark.dags]

DAG_FILE = textwrap.dedent('''
    import datetime as dt
    import os

    try:
        from airflow.sdk import DAG
    except ImportError:
        from airflow.models import DAG

    from airflow_provider_qwenocr import QwenOcrBatchOperator, QwenOcrBatchSensor

    SRC, OUT_A, OUT_B = os.environ["QWENOCR_BATCH_TEST_ARGS"].split("|")

    with DAG("qwen_ocr_batch_trio_test", schedule=None, start_date=dt.datetime(2026, 1, 1), catchup=False) as dag:
        # use_cache=False: both shapes submit the same images; with the shared cache the second would send none
        QwenOcrBatchOperator(task_id="submit_and_wait", images=SRC, output_uri=OUT_A, deferrable=True,
                             poll_interval=0.2, timeout=120, use_cache=False)
        submit = QwenOcrBatchOperator(task_id="submit", images=SRC, output_uri=OUT_B, wait_for_completion=False,
                                      use_cache=False)
        QwenOcrBatchSensor(task_id="wait", deferrable=True, poke_interval=0.2, timeout=120,
                           batch_ids=submit.output["batch_ids"], output_uri=OUT_B)
''')


def test_deferrable_operator_and_sensor_in_dag_test(airflow_db, tmp_path, monkeypatch):
    from airflow.configuration import conf

    from tests.fixtures.airflow import load_dag

    srv = start_server(batch_seconds=0.5)
    try:
        monkeypatch.setenv("AIRFLOW_CONN_DASHSCOPE_DEFAULT", conn_env(srv.base_url))
        src = tmp_path / "in"
        src.mkdir()
        for i, size in enumerate([(200, 64), (260, 80)]):
            (src / f"{i}.png").write_bytes(png(f"page {i}", size=size))
        out_a, out_b = str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl")
        monkeypatch.setenv("QWENOCR_BATCH_TEST_ARGS", f"{src}|{out_a}|{out_b}")
        dags = tmp_path / "dags"
        dags.mkdir()
        (dags / "batch_trio.py").write_text(DAG_FILE)
        bundles = json.loads(conf.get("dag_processor", "dag_bundle_config_list", fallback="[]") or "[]")
        bundles.append({"name": "qwenocr-batch-tests",
                        "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
                        "kwargs": {"path": str(dags), "refresh_interval": 0}})
        monkeypatch.setenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", json.dumps(bundles))

        dag = load_dag("qwen_ocr_batch_trio_test", dags / "batch_trio.py")
        run = dag.test()
        assert str(run.state).lower().endswith("success"), run.state
        for out in (out_a, out_b):
            rows = list(read_results(out))
            assert len(rows) == 2 and all(r["status"] == "ok" for r in rows)
        assert srv.batch_creations() == 2  # one per submitting task, none from the sensor
    finally:
        srv.stop()
