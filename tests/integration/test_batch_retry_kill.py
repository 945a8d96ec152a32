"""Issue 19: a batch task SIGKILLed right after its submit, then run again as the same task instance, pays once.

Real processes on loopback: the emulator runs in this test process (it counts the batches created and the
lines each carried); the task runs in a child process through ``dag.test()`` against the session's
metadata DB, with a fixed logical date so the second run is the *same* task instance (dag, task, run id,
map index). The child is SIGKILLed as soon as its batch exists — on Airflow ≥ 3.3 once the batch id is in
the task state store, on 2.10 (no store) once the emulator has the batch — or, on the deferrable path, once
the task has deferred and its trigger runs (``dag.test`` runs the trigger in its own process, so the kill
loses the trigger as a dead triggerer would). Then the same task instance runs again to the end. Measured: batches
created, lines sent, rows landed, and the log line naming the batch re-attached to.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

from tests.integration.batch_support import conn_env, png, start_server

pytestmark = pytest.mark.integration
N = 6

_DAG = textwrap.dedent("""
    import datetime, json, os
    from airflow_provider_qwenocr.operators.batch import QwenOcrBatchOperator
    try:
        from airflow.sdk import DAG
    except ImportError:
        from airflow import DAG
    cfg = json.loads(os.environ["REATTACH_TEST"])
    with DAG(cfg["dag_id"], schedule=None, start_date=datetime.datetime(2026, 1, 1), catchup=False) as dag:
        QwenOcrBatchOperator(task_id="ocr", images=cfg["images"], output_uri=cfg["output"], poll_interval=0.3,
                             deferrable=cfg["deferrable"])
""")

_RUN = textwrap.dedent("""
    # dag.test() on a fixed logical date. "again": the existing DAG run is kept (dag.test would delete and
    # re-create it, which is a new task instance, not a retry): the killed try is made schedulable again,
    # as the scheduler does with a dead worker's task, and run by the same code path: same task instance,
    # next try number, same task state store.
    import datetime, importlib.util, inspect, sys
    spec = importlib.util.spec_from_file_location("reattach_kill_dag", sys.argv[1])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    when = datetime.datetime(2026, 1, 2, tzinfo=datetime.timezone.utc)
    params = inspect.signature(module.dag.test).parameters
    kwargs = {"logical_date": when, "run_after": when} if "logical_date" in params else {"execution_date": when}
    if sys.argv[2] == "again":
        from sqlalchemy import select
        from airflow.models import dagrun as dagrun_module, dag as dag_module
        from airflow.models.dagrun import DagRun
        name = "get_or_create_dagrun" if hasattr(dagrun_module, "get_or_create_dagrun") else "_get_or_create_dagrun"
        owner = dagrun_module if name == "get_or_create_dagrun" else dag_module
        create = getattr(owner, name)

        def reuse(*args, **kw):
            session, dag = kw["session"], kw.get("dag") or args[0]
            date = DagRun.execution_date if hasattr(DagRun, "execution_date") else DagRun.logical_date
            found = session.scalar(select(DagRun).where(DagRun.dag_id == dag.dag_id, date == when))
            if found is None:
                return create(*args, **kw)
            found.dag = dag
            for ti in found.get_task_instances(session=session):  # what the scheduler does to a dead try:
                if str(ti.state).split(".")[-1].lower() in ("running", "restarting", "deferred", "queued"):
                    ti.state = None  # schedulable again, same task instance, next try number
                    ti.next_method = ti.next_kwargs = ti.trigger_id = None
            session.commit()
            return found

        setattr(owner, name, reuse)
    run = module.dag.test(**kwargs)
    print("DAG RUN STATE", run.state, flush=True)
""")



def _airflow_33() -> bool:
    import airflow
    from packaging.version import Version

    return Version(airflow.__version__) >= Version("3.3")


def _db(home: str) -> sqlite3.Connection:
    return sqlite3.connect(os.path.join(home, "airflow.db"), timeout=30)


def _state_store_has_batches(home: str, dag_id: str) -> bool:
    with _db(home) as db:
        return bool(db.execute("select count(*) from task_state_store where dag_id=? and key='qwenocr_batches'",
                               (dag_id,)).fetchone()[0])


def _lines_sent(srv) -> list[int]:
    from tests.integration.batch_support import _store

    store = _store(srv)
    return [len(store.content[b["input_file_id"]].splitlines()) for b in store.batches.values()]


@pytest.mark.parametrize("deferrable", [False, True], ids=["in-worker", "deferred"])
def test_sigkill_after_submit_then_same_task_instance_again_pays_once(airflow_db, tmp_path, monkeypatch,
                                                                      deferrable):
    srv = start_server(batch_seconds=6)
    try:
        images = tmp_path / "images"
        images.mkdir()
        for i in range(N):
            (images / f"p{i}.png").write_bytes(png(f"kill test page {i}"))
        dags = tmp_path / "dags"
        dags.mkdir()
        (dags / "reattach_kill.py").write_text(_DAG)
        output = tmp_path / "rows.jsonl"
        dag_id = f"reattach_kill_{'deferred' if deferrable else 'worker'}"  # one DAG run each in the session DB
        env = {**os.environ, "AIRFLOW_CONN_DASHSCOPE_DEFAULT": conn_env(srv.base_url),
               "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
               "REATTACH_TEST": json.dumps({"images": str(images), "output": str(output), "deferrable": deferrable,
                                             "dag_id": dag_id})}
        cmd = [sys.executable, "-c", _RUN, str(dags / "reattach_kill.py"), "first"]
        first_log = tmp_path / "first.log"
        with open(first_log, "wb") as log:
            proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 180
            while True:
                assert proc.poll() is None, first_log.read_text()[-3000:]
                assert time.monotonic() < deadline, "the first run never submitted"
                if deferrable:  # the task deferred and dag.test runs its trigger in this process
                    ready = b"running trigger in line" in first_log.read_bytes()
                elif _airflow_33():
                    ready = _state_store_has_batches(airflow_db, dag_id)
                else:
                    ready = srv.batch_creations() >= 1
                if ready:
                    break
                time.sleep(0.05)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        assert srv.batch_creations() == 1
        assert [b["status"] for b in srv.state.batch_store.batches.values()] != ["completed"], \
            "the batch must still be running when the task dies"

        second = subprocess.run(cmd[:-1] + ["again"], env=env, capture_output=True, text=True, timeout=200)
        out = second.stdout + second.stderr
        assert "DAG RUN STATE success" in out, out[-5000:]
        (tmp_path / "second.log").write_text(out)
        assert srv.batch_creations() == 1 and _lines_sent(srv) == [N], f"one batch, each image sent once:\n{out}"
        (batch_id,) = srv.state.batch_store.batches
        rows = [json.loads(x) for x in output.read_text().splitlines()]
        assert len(rows) == N and sorted(r["source"] for r in rows) == sorted(str(p) for p in images.iterdir())
        assert all(r["status"] == "ok" for r in rows)
        assert f"re-attached to {batch_id}" in out
        if _airflow_33():  # recorded before the kill, found again in the store
            assert f"re-attached to {batch_id} (recorded in the task state store)" in out
        else:  # no task state store before 3.3: found by the batch's metadata through the list filter
            assert f"re-attached to {batch_id} (found by its metadata)" in out
        print(f"deferrable={deferrable}: batches created 1, lines sent {_lines_sent(srv)}, rows {len(rows)}")
    finally:
        srv.stop()
