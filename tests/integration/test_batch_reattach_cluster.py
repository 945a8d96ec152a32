"""Issue 19 on a real Airflow 3 deployment: the triggerer SIGKILLed while the batch task is deferred, the task
cleared (a new try of the same task instance), a new triggerer started — one batch, rows landed once.

``scripts/cluster.py up`` on loopback (PostgreSQL, Redis, the emulator with 20-s batches, api-server,
scheduler, dag-processor, triggerer, one Celery worker). Needs the ``cluster`` extra (``make cluster``);
skipped without it. About 3 minutes, most of it the metadata DB migration.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request

import pytest

from tests.integration.batch_support import png

pytestmark = pytest.mark.integration
pytest.importorskip("airflow.providers.celery")
pytest.importorskip("airflow.sdk.bases.resumablejobmixin")  # Airflow >= 3.3: the task state store

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DAG_ID, RUN_ID, N = "reattach_cluster", "reattach_cluster_1", 6

_DAG = textwrap.dedent("""
    import datetime
    from airflow.sdk import DAG
    from airflow_provider_qwenocr.operators.batch import QwenOcrBatchOperator

    with DAG("reattach_cluster", schedule=None, start_date=datetime.datetime(2026, 1, 1), catchup=False):
        QwenOcrBatchOperator(task_id="ocr", images={images!r}, output_uri={output!r}, deferrable=True,
                             poll_interval=2)
""")


# What the UI's "Clear" does to the task instance (the CLI's date filter misses a run without a logical date).
_CLEAR = textwrap.dedent(f"""
    from sqlalchemy import select
    from airflow.models.taskinstance import TaskInstance, clear_task_instances
    from airflow.utils.session import create_session
    with create_session() as session:
        tis = session.scalars(select(TaskInstance).where(TaskInstance.dag_id == {DAG_ID!r},
                              TaskInstance.run_id == {RUN_ID!r}, TaskInstance.task_id == "ocr")).all()
        clear_task_instances(tis, session)
        print("cleared", len(tis))
""")


@pytest.fixture
def cluster():
    import pathlib
    import tempfile

    sys.path.insert(0, os.path.join(REPO, "scripts"))
    import cluster as cl

    tmp_path = pathlib.Path(tempfile.mkdtemp(prefix="qwenocr-reattach-"))  # PostgreSQL's user must enter it
    tmp_path.chmod(0o755)

    dags = tmp_path / "dags"
    dags.mkdir()
    images = tmp_path / "images"
    images.mkdir()
    for i in range(N):
        (images / f"p{i}.png").write_bytes(png(f"cluster page {i}"))
    output = tmp_path / "rows.jsonl"
    (dags / "reattach_cluster.py").write_text(_DAG.format(images=str(images), output=str(output)))
    args = argparse.Namespace(dir=str(tmp_path / "c"), workers=1, concurrency=2, rpm=600, tpm=10_000_000,
                              latency_ms=0, headroom=1.0, dags_folder=str(dags), keep=False)
    state = cl.up(args)
    try:
        yield cl, state, output
    finally:
        cl.down(args)
        import shutil

        shutil.rmtree(tmp_path, ignore_errors=True)


def _batches(state) -> list[dict]:
    req = urllib.request.Request(state["emulator_url"] + "/compatible-mode/v1/batches?limit=100",
                                 headers={"Authorization": "Bearer sk-cluster-emulator"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())["data"] or []


def _wait(what: str, check, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(1)


def test_triggerer_killed_while_deferred_then_task_cleared_pays_once(cluster):
    cl, state, output = cluster
    from cluster_run import _airflow, _q, _run_state, _tis, _trigger, _wait_dag_parsed

    _wait_dag_parsed(state, [DAG_ID])
    _airflow(state, "dags", "unpause", DAG_ID)
    _trigger(state, DAG_ID, RUN_ID, {})
    _wait("the task to defer", lambda: any(t[2] == "deferred" for t in _tis(state, DAG_ID, RUN_ID, "ocr")), 300)
    (first,) = _batches(state)
    assert first["status"] in ("validating", "in_progress")
    stored = _q(state, "airflow", "SELECT value FROM task_state_store WHERE dag_id = %s AND key = %s",
                (DAG_ID, "qwenocr_batches"))
    assert stored and first["id"] in stored[0][0]

    os.killpg(os.getpgid(state["pids"]["triggerer"]), signal.SIGKILL)  # the triggerer is lost
    env = cl.airflow_env(state)
    cleared = subprocess.run([sys.executable, "-c", _CLEAR], env=env, capture_output=True, text=True, timeout=120)
    assert cleared.returncode == 0 and "cleared 1" in cleared.stdout, cleared.stderr[-2000:]
    state["pids"]["triggerer-2"] = cl._spawn(state["dir"], "triggerer-2",
                                             [os.path.join(cl.BIN, "airflow"), "triggerer"], env)
    cl._save(state["dir"], state)  # so that down() stops it too
    _wait("the run to end", lambda: _run_state(state, DAG_ID, RUN_ID) in ("success", "failed"), 420)

    assert _run_state(state, DAG_ID, RUN_ID) == "success"
    ((_, _, ti_state, try_number, *_),) = _tis(state, DAG_ID, RUN_ID, "ocr")
    assert ti_state == "success" and try_number >= 2, "the cleared task ran again as a new try"
    batches = _batches(state)
    assert [b["id"] for b in batches] == [first["id"]], "one batch for the task instance, whatever the tries"
    assert batches[0]["request_counts"]["total"] == N
    rows = [json.loads(x) for x in output.read_text().splitlines()]
    assert len(rows) == N and len({r["source"] for r in rows}) == N and all(r["status"] == "ok" for r in rows)
    logs = [os.path.join(dp, f) for dp, _, fs in os.walk(os.path.join(state["dir"], "airflow", "logs"))
            for f in fs if "reattach_cluster" in dp]
    text = "".join(open(p, errors="replace").read() for p in logs)
    assert f"re-attached to {first['id']} (recorded in the task state store)" in text
    print(f"cluster: 1 batch ({first['id']}), {N} lines, {len(rows)} rows, try {try_number}")
