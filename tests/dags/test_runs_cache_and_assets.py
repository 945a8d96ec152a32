"""Manual runs with per-run templated outputs: the default cache is shared across runs, the asset is emitted.

The DAG is written to a temporary DAG bundle (Airflow 3 ``dag.test()`` serialises DAGs from bundles). On
Airflow 3 each run is started with no logical date — what a manual trigger from the UI does — so a template
needing one (``{{ ds }}``) would fail the task here.
"""

from __future__ import annotations

import json
import pathlib
import textwrap
import uuid

import pytest

from airflow_provider_qwenocr.runs.results_store import read_results

pytestmark = [pytest.mark.dags, pytest.mark.integration]

SAMPLES = pathlib.Path(__file__).resolve().parents[2] / "dags" / "sample_docs"
DOCS = ["receipt_01.png", "text_page.png"]

DAG_FILE = textwrap.dedent('''
    import datetime as dt
    import os

    try:
        from airflow.sdk import DAG
    except ImportError:
        from airflow.models import DAG
    try:
        from airflow.providers.standard.operators.empty import EmptyOperator
    except ImportError:
        from airflow.operators.empty import EmptyOperator

    from airflow_provider_qwenocr import QwenOcrOperator
    from airflow_provider_qwenocr.lineage import ocr_asset

    DAG_ID, SRC, OUT = os.environ["QWENOCR_RUNS_TEST_ARGS"].split("|")

    with DAG(DAG_ID, schedule=None, start_date=dt.datetime(2026, 1, 1), catchup=False) as dag:
        QwenOcrOperator(task_id="ocr", images=SRC,
                        output_uri=OUT + "/{{ run_id | replace(':', '-') | replace('+', '-') }}/text.jsonl")

    with DAG(DAG_ID + "_load", schedule=[ocr_asset(DAG_ID, "ocr")], start_date=dt.datetime(2026, 1, 1),
             catchup=False) as downstream:
        EmptyOperator(task_id="load")
''')


def _bundle(tmp_path, monkeypatch) -> pathlib.Path:
    from airflow.configuration import conf

    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "runs.py").write_text(DAG_FILE)
    bundles = json.loads(conf.get("dag_processor", "dag_bundle_config_list", fallback="[]") or "[]")
    bundles.append({"name": "qwenocr-runs-tests", "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
                    "kwargs": {"path": str(dags), "refresh_interval": 0}})
    monkeypatch.setenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", json.dumps(bundles))
    return dags / "runs.py"


def _manual_run(dag):
    """A manual run: no logical date on Airflow 3 (as the UI's trigger button), "now" on 2.x."""
    import inspect

    if "logical_date" in inspect.signature(dag.test).parameters:
        run = dag.test(logical_date=None)
    else:
        run = dag.test()
    assert str(run.state).lower().endswith("success"), run.state
    return run


def _asset_events(uri: str) -> list[dict]:
    from airflow.utils.session import create_session

    try:
        from airflow.models.asset import AssetEvent as Event
        from airflow.models.asset import AssetModel as Model
        link = Event.asset_id
    except ImportError:  # Airflow 2.x
        from airflow.models.dataset import DatasetEvent as Event
        from airflow.models.dataset import DatasetModel as Model
        link = Event.dataset_id
    with create_session() as session:
        rows = session.query(Event).join(Model, link == Model.id).filter(Model.uri == uri).all()
        return [dict(e.extra or {}) for e in rows]


def test_two_manual_runs_over_the_same_documents_second_makes_no_calls(airflow_db, emulator, emulator_conn,
                                                                       tmp_path, monkeypatch):
    from tests.fixtures.airflow import load_dag

    monkeypatch.delenv("AIRFLOW__QWENOCR__CACHE_URI")  # the built-in default location, not the tests' one
    dag_id = f"qwen_ocr_runs_{uuid.uuid4().hex[:8]}"
    src = tmp_path / "in"
    src.mkdir()
    for name in DOCS:
        (src / name).write_bytes((SAMPLES / name).read_bytes())
    out = tmp_path / "out"
    monkeypatch.setenv("QWENOCR_RUNS_TEST_ARGS", f"{dag_id}|{src}|{out}")
    path = _bundle(tmp_path, monkeypatch)
    dag = load_dag(dag_id, path)
    if hasattr(dag, "sync_to_db"):  # Airflow 2.x dag.test() does not register the DAGs' datasets itself
        for d in (dag, load_dag(dag_id + "_load", path)):
            d.sync_to_db()

    emulator.reset_stats()
    _manual_run(dag)
    assert emulator.stats()["ocr_calls"] == len(DOCS)
    emulator.reset_stats()
    _manual_run(dag)
    assert emulator.stats()["ocr_calls"] == 0, "the second run over the same documents was billed again"

    files = sorted(out.glob("*/text.jsonl"))
    assert len(files) == 2, files  # one results file per run (the output is templated by run_id) ...
    for f in files:  # ... each with every document, the second one served from the cache
        rows = list(read_results(str(f)))
        assert sorted(pathlib.Path(r["source"]).name for r in rows) == DOCS and all(r["status"] == "ok" for r in rows)
    home = pathlib.Path(airflow_db)
    assert (home / "qwenocr" / dag_id / "_cache").is_dir()  # the documented default, not beside the outputs
    assert not any(p.name == "_cache" for p in out.rglob("*"))

    events = _asset_events(f"qwenocr://{dag_id}/ocr")
    assert len(events) == 2, events  # one per successful run, for DAGs scheduled on the asset
    assert sorted(e["results_uri"] for e in events) == sorted(str(f) for f in files)
    assert [e["n_ok"] for e in events] == [len(DOCS)] * 2 and sorted(e["n_cached"] for e in events) == [0, 2]
