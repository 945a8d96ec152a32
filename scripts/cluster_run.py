"""``scripts/cluster.py run``: drive the example DAGs on the multi-worker cluster and check what landed.

1. ``qwen_ocr_s3_to_redshift`` (warehouse = the local Postgres) over ``--n`` distinct images in moto S3,
   mapped over chunks of ``--chunk``: every image lands exactly once, throughput ÷ quota (images ÷ the span
   from the first OCR task's start to the last one's end), the emulator's 429s ÷ calls, and the rows equal
   those of a single-worker run (``airflow dags test`` of the same DAG in one process, with its own SQLite
   metadata DB so the cluster's scheduler never sees that run, and its own warehouse DB).
2. ``qwen_ocr_batch_nightly``: its sensor is seen in ``deferred`` (on the real triggerer), then succeeds, and
   ``qwen_ocr_results_to_warehouse`` (scheduled on the sensor's Asset) loads the 5 rows into Postgres.
3. Unless ``--no-kill``: the realtime DAG again (fresh results prefix, so nothing is cached) and, once OCR
   tasks run, the Celery worker running the most of them is SIGKILLed by PID together with its child
   processes (the tasks it was running: a lost host). The scheduler notices the dead tasks (heartbeat timeout 30 s) and retries them elsewhere; the
   per-image cache makes a retry bill only what was in flight: printed as emulator calls vs images.

The state of tasks is read from the metadata DB (Postgres) directly: cheap, and no API auth to set up.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def _emu_stats(state: dict) -> dict:
    with urllib.request.urlopen(state["emulator_url"] + "/emulator/stats", timeout=10) as r:
        return json.loads(r.read())


def _db(state: dict, name: str):
    import psycopg2

    con = psycopg2.connect(host="127.0.0.1", port=state["pg_port"], user="postgres", dbname=name)
    con.autocommit = True
    return con


def _q(state: dict, db: str, sql: str, args=()) -> list[tuple]:
    con = _db(state, db)
    try:
        with con.cursor() as cur:
            cur.execute(sql, args)
            return cur.fetchall() if cur.description else []
    finally:
        con.close()


def _airflow(state: dict, *argv: str, timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    from cluster import BIN, airflow_env

    return subprocess.run([os.path.join(BIN, "airflow"), *argv], env={**airflow_env(state), **(env or {})},
                          capture_output=True, text=True, timeout=timeout)


def _single_worker(state: dict, conf: dict, timeout: float) -> subprocess.CompletedProcess:
    """``airflow dags test`` in one process, on its own SQLite metadata DB: the cluster's scheduler must not
    see (and co-schedule) that run; the connections (emulator, limiter, S3, warehouse) are the same."""
    home = os.path.join(state["dir"], "single-home")
    os.makedirs(home, exist_ok=True)
    env = {"AIRFLOW_HOME": home, "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
           "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
           "AIRFLOW__LOGGING__BASE_LOG_FOLDER": os.path.join(home, "logs")}
    migrated = _airflow(state, "db", "migrate", env=env, timeout=600)
    if migrated.returncode:
        return migrated
    return _airflow(state, "dags", "test", "qwen_ocr_s3_to_redshift", "--conf", json.dumps(conf), env=env,
                    timeout=timeout)


def _upload(state: dict, bucket: str, n: int) -> list[str]:
    import boto3

    from bench._common import small_document

    s3 = boto3.client("s3", endpoint_url=state["moto_url"], region_name="us-east-1", aws_access_key_id="testing",
                      aws_secret_access_key="testing")
    s3.create_bucket(Bucket=bucket)
    keys = [f"incoming/doc-{i:05d}.png" for i in range(n)]
    for i, key in enumerate(keys):
        s3.put_object(Bucket=bucket, Key=key, Body=small_document(i))
    return [f"s3://{bucket}/{k}" for k in keys]


def _wait_dag_parsed(state: dict, dag_ids: list[str], seconds: float = 300) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        rows = _q(state, "airflow", "SELECT dag_id FROM dag WHERE dag_id = ANY(%s)", (dag_ids,))
        if len(rows) == len(dag_ids):
            return
        time.sleep(2)
    raise RuntimeError(f"the dag-processor did not register {dag_ids} within {seconds:.0f} s")


def _trigger(state: dict, dag_id: str, run_id: str, conf: dict) -> None:
    done = _airflow(state, "dags", "trigger", dag_id, "--run-id", run_id, "--conf", json.dumps(conf))
    if done.returncode:
        raise RuntimeError(f"trigger {dag_id} failed: {done.stderr[-1500:]}")


def _run_state(state: dict, dag_id: str, run_id: str) -> str | None:
    rows = _q(state, "airflow", "SELECT state FROM dag_run WHERE dag_id = %s AND run_id = %s", (dag_id, run_id))
    return rows[0][0] if rows else None


def _tis(state: dict, dag_id: str, run_id: str, task_id: str | None = None) -> list[tuple]:
    sql = ("SELECT task_id, map_index, state, try_number, start_date, end_date, pid FROM task_instance "
           "WHERE dag_id = %s AND run_id = %s")
    args: tuple = (dag_id, run_id)
    if task_id:
        sql += " AND task_id = %s"
        args += (task_id,)
    return _q(state, "airflow", sql, args)


def _wait_run(state: dict, dag_id: str, run_id: str, seconds: float, on_poll=None) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        s = _run_state(state, dag_id, run_id)
        if on_poll:
            on_poll()
        if s in ("success", "failed"):
            return s
        time.sleep(1)
    return "timeout"


def _rows(state: dict, db: str) -> dict[str, tuple]:
    return {r[0]: r[1:] for r in _q(state, db, 'SELECT "source", "status", "text", "sha256" FROM "ocr_results"')}


def _ocr_span(state: dict, run_id: str) -> float:
    tis = [t for t in _tis(state, "qwen_ocr_s3_to_redshift", run_id, "ocr") if t[4] and t[5]]
    return (max(t[5] for t in tis) - min(t[4] for t in tis)).total_seconds() if tis else float("nan")


def _log_times(path: str) -> dict[str, float]:
    """Epoch seconds of the first task-log lines that open and close the OCR work (Airflow 3 JSON logs)."""
    from datetime import datetime

    marks: dict[str, float] = {}
    try:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                event, ts = str(rec.get("event", "")), rec.get("timestamp")
                for mark, prefix in (("parsed", "Worker startup parse complete"), ("ocr_start", "OCR of "),
                                     ("ocr_done", "OCR done")):
                    if ts and mark not in marks and event.startswith(prefix):
                        marks[mark] = datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
    except OSError:
        pass
    return marks


def task_phases(state: dict, dag_id: str, run_id: str) -> dict[str, float]:
    """Where the OCR tasks' span goes, from each mapped task's last attempt (DB times + its log): start-up
    (task start → the DAG parsed → "OCR of N image(s)", i.e. sources listed, probes done) and write-out
    ("OCR done" → task end). Medians over the tasks, seconds; what the issue's ratio pays besides calls."""
    import statistics

    base = os.path.join(state["dir"], "airflow", "logs", f"dag_id={dag_id}", f"run_id={run_id}", "task_id=ocr")
    parse, setup, write = [], [], []
    for _task, map_index, _st, try_number, start, end, _pid in _tis(state, dag_id, run_id, "ocr"):
        marks = _log_times(os.path.join(base, f"map_index={map_index}", f"attempt={try_number}.log"))
        if start and "parsed" in marks and "ocr_start" in marks:
            parse.append(marks["parsed"] - start.timestamp())
            setup.append(marks["ocr_start"] - marks["parsed"])
        if end and "ocr_done" in marks:
            write.append(end.timestamp() - marks["ocr_done"])
    return {name: round(statistics.median(xs), 1) if xs else None
            for name, xs in (("startup_parse_s", parse), ("startup_sources_s", setup), ("writeout_s", write))}


def _calls(before: dict, after: dict) -> tuple[int, int]:
    """(realtime OCR calls answered, of which 429) between two emulator stats snapshots.

    Counted on the native endpoint only: the nightly DAG's own scheduled run (it is unpaused) talks to the
    files/batches endpoints at the same time, and those answers are in ``by_status`` too."""
    calls = after["requests"].get("native", 0) - before["requests"].get("native", 0)
    return calls, after["by_status"].get("429", 0) - before["by_status"].get("429", 0)


class _CallClock:
    """Polled once a second while the run goes: when the emulator answered its first and its last OCR call of
    the run. The span between them leaves out what the OCR span includes before any call (a mapped task's
    DAG parse and S3 setup, 15–30 s on a loaded two-core box), so the two ratios separate pace from startup."""

    def __init__(self, state: dict, before: dict) -> None:
        self.state, self.base = state, before["requests"].get("native", 0)
        self.first = self.last = None
        self.count = self.base

    def __call__(self) -> None:
        native = _emu_stats(self.state)["requests"].get("native", 0)
        now = time.monotonic()
        if native > self.base and self.first is None:
            self.first = now
        if native > self.count:
            self.count, self.last = native, now

    @property
    def span(self) -> float:
        return (self.last - self.first) if self.first is not None and self.last is not None else 0.0


def _conf(bucket: str, prefix: str, chunk: int, wh: str) -> dict:
    return {"s3_prefix": f"s3://{bucket}/incoming/", "results_prefix": f"s3://{bucket}/{prefix}",
            "chunk_size": chunk, "warehouse": "postgres", "warehouse_conn_id": wh}


def run(state: dict, args) -> bool:
    t0 = time.monotonic()
    n, chunk, rpm = args.n, args.chunk, state["rpm"]
    checks: dict[str, bool] = {}
    figures: dict[str, object] = {"n": n, "chunk": chunk, "rpm": rpm, "workers": state["workers"]}
    _wait_dag_parsed(state, ["qwen_ocr_s3_to_redshift", "qwen_ocr_batch_nightly"])
    sources = _upload(state, "cluster-docs", n)

    # 1. the realtime DAG on all workers
    before = _emu_stats(state)
    _trigger(state, "qwen_ocr_s3_to_redshift", "cluster_main", _conf("cluster-docs", "results-main", chunk,
                                                                     "pg_warehouse"))
    calls_seen = _CallClock(state, before)
    result = _wait_run(state, "qwen_ocr_s3_to_redshift", "cluster_main", 120 + 3 * n * 60 / rpm, on_poll=calls_seen)
    after = _emu_stats(state)
    calls, r429 = _calls(before, after)
    rows = _rows(state, "warehouse")
    count = _q(state, "warehouse", 'SELECT COUNT(*), COUNT(DISTINCT "source") FROM "ocr_results"')[0] \
        if result == "success" else (0, 0)
    span = _ocr_span(state, "cluster_main")
    figures.update(run=result, rows=count[0], distinct_sources=count[1], calls=calls, r429=r429,
                   ocr_span_s=round(span, 1), throughput_ratio=round(n / span * 60 / rpm, 3) if span == span else None,
                   r429_ratio=round(r429 / max(1, calls), 4), call_span_s=round(calls_seen.span, 1),
                   call_throughput_ratio=round(n / calls_seen.span * 60 / rpm, 3) if calls_seen.span else None,
                   ocr_tasks=len(_tis(state, "qwen_ocr_s3_to_redshift", "cluster_main", "ocr")),
                   **task_phases(state, "qwen_ocr_s3_to_redshift", "cluster_main"))
    checks["all landed exactly once"] = result == "success" and count == (n, n) and set(rows) == set(sources)
    checks["429s <= 1% of calls"] = r429 <= 0.01 * max(1, calls)
    if getattr(args, "min_throughput", None):  # the full run's goal; a small N cannot amortise start-up
        checks[f"throughput ÷ quota over the OCR tasks' span >= {args.min_throughput}"] = (
            figures["throughput_ratio"] is not None and figures["throughput_ratio"] >= args.min_throughput)
    print(f"[run] realtime on {state['workers']} workers: {result}; {count[0]} rows / {n} images; {calls} calls, "
          f"{r429} 429s; throughput ÷ quota over the OCR tasks' span (first OCR task start → last OCR task "
          f"end, {span:.1f} s): {figures['throughput_ratio']} of the {rpm}/min quota; over the call span (first "
          f"call → last answer, {calls_seen.span:.1f} s): {figures['call_throughput_ratio']}; per task (median): "
          f"DAG parse {figures['startup_parse_s']} s, parse → first call scheduled {figures['startup_sources_s']} "
          f"s, write-out {figures['writeout_s']} s", flush=True)

    # ... and the same DAG in one process (the single-worker reference), own results prefix and warehouse
    single = _single_worker(state, _conf("cluster-docs", "results-single", chunk, "pg_warehouse_single"),
                            timeout=300 + 3 * n * 60 / rpm)
    single_rows = _rows(state, "warehouse_single") if single.returncode == 0 else {}
    checks["same rows as a single-worker run"] = bool(single_rows) and single_rows == rows
    print(f"[run] single-worker `airflow dags test`: rc={single.returncode}, {len(single_rows)} rows, "
          f"identical={single_rows == rows}", flush=True)
    if single.returncode:
        print(single.stderr[-2000:], file=sys.stderr)

    # 2. the nightly batch DAG deferring on the triggerer
    docs = os.path.join(state["dir"], "batch-docs")
    os.makedirs(docs, exist_ok=True)
    from bench._common import small_document

    for i in range(5):
        with open(os.path.join(docs, f"night-{i}.png"), "wb") as fh:
            fh.write(small_document(10_000 + i))
    # qwenocr_warehouse: the default of both DAGs' warehouse_conn_id, so the asset-triggered load
    # (qwen_ocr_results_to_warehouse, which takes no conf from the nightly run) lands in the same database
    _trigger(state, "qwen_ocr_batch_nightly", "cluster_batch",
             {"input_dir": docs, "warehouse_conn_id": "qwenocr_warehouse",
              "output_dir": os.path.join(state["dir"], "batch-out")})
    seen: set[str] = set()

    def watch():
        for t in _tis(state, "qwen_ocr_batch_nightly", "cluster_batch", "wait_for_batch"):
            if t[2]:
                seen.add(t[2])

    batch = _wait_run(state, "qwen_ocr_batch_nightly", "cluster_batch", 300, on_poll=watch)

    def landed() -> int:  # rows of this run's documents (the nightly's own scheduled run loads its samples)
        try:
            return _q(state, "warehouse_batch", 'SELECT COUNT(*) FROM "ocr_results" WHERE "mode" = \'batch\' '
                      'AND "source" LIKE %s', (docs + "%",))[0][0]
        except Exception:  # the table appears with the first load
            return 0

    deadline = time.monotonic() + 180
    while batch == "success" and landed() < 5 and time.monotonic() < deadline:
        time.sleep(2)
    batch_rows = landed()
    checks["batch sensor seen deferred, run succeeded, the asset-triggered load landed its rows"] = (
        "deferred" in seen and batch == "success" and batch_rows == 5)
    figures.update(batch=batch, batch_sensor_states=sorted(seen), batch_rows=batch_rows)
    print(f"[run] batch nightly: {batch}; sensor states seen {sorted(seen)}; {batch_rows} batch rows", flush=True)

    # 3. one worker killed mid-run
    if not args.no_kill:
        checks.update(_kill_run(state, args, sources, figures))
    figures["run_seconds"] = round(time.monotonic() - t0, 1)
    for name, ok in checks.items():
        print(f"[check] {'PASS' if ok else 'FAIL'} {name}")
    print(" ".join(f"{k}={v}" for k, v in figures.items() if not isinstance(v, list)).replace(" ", " "), flush=True)
    return all(checks.values())


def _kill_run(state: dict, args, sources: list[str], figures: dict) -> dict[str, bool]:
    n, rpm = args.n, state["rpm"]
    dag_id, run_id = "qwen_ocr_s3_to_redshift", "cluster_kill"
    before = _emu_stats(state)
    _trigger(state, dag_id, run_id, _conf("cluster-docs", "results-kill", args.chunk, "pg_warehouse_kill"))
    import psutil

    workers = {name: pid for name, pid in state["pids"].items() if name.startswith("worker-")}
    killed: dict = {}

    def owner(pid: int) -> str | None:
        """The Celery worker whose process tree holds ``pid`` (the task runs in a forked child)."""
        try:
            chain = [p.pid for p in psutil.Process(pid).parents()] + [pid]
        except psutil.NoSuchProcess:
            return None
        return next((name for name, wpid in workers.items() if wpid in chain), None)

    def maybe_kill():
        if killed:
            return
        done = _emu_stats(state)["requests"].get("native", 0) - before["requests"].get("native", 0)
        if done < n // 4:  # a quarter in: tasks with images in flight on every worker
            return
        running: dict[str, list[int]] = {}
        for t in _tis(state, dag_id, run_id, "ocr"):
            if t[2] == "running" and t[6] and (name := owner(t[6])):
                running.setdefault(name, []).append(t[1])
        if not running:
            return
        victim = max(running, key=lambda k: len(running[k]))
        proc = psutil.Process(workers[victim])
        tree = [proc, *proc.children(recursive=True)]
        for p in tree:
            try:
                p.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:
                pass
        killed.update(victim=victim, at_calls=done, tasks=sorted(running[victim]))
        print(f"[kill] SIGKILL {victim} (pid {workers[victim]} and its {len(tree) - 1} child processes) after "
              f"{done} calls; it ran mapped OCR tasks {killed['tasks']}", flush=True)

    result = _wait_run(state, dag_id, run_id, 300 + 4 * n * 60 / rpm, on_poll=maybe_kill)
    calls, r429 = _calls(before, _emu_stats(state))
    count = _q(state, "warehouse_kill", 'SELECT COUNT(*), COUNT(DISTINCT "source") FROM "ocr_results"')[0] \
        if result == "success" else (0, 0)
    retried = [t for t in _tis(state, dag_id, run_id, "ocr") if t[3] > 1]
    rebilled = calls - r429 - n
    # What was in flight when the worker died: at most max_concurrency (8) calls per task it was running.
    bound = 8 * len(killed.get("tasks", []))
    figures.update(kill_victim=killed.get("victim"), kill_at_calls=killed.get("at_calls"), kill_run=result, kill_rows=count[0], kill_calls=calls, kill_429=r429, kill_rebilled=rebilled,
                   kill_inflight_bound=bound, kill_retried_tasks=len(retried))
    print(f"[kill] run {result}; {count[0]} rows / {n} images; {calls} calls ({r429} 429s) for {n} images → "
          f"{rebilled} re-billed, in-flight bound {bound}; {len(retried)} OCR tasks retried", flush=True)
    return {
        "worker killed mid-run and its tasks retried": bool(killed) and len(retried) >= 1,
        "after the kill every image landed exactly once": result == "success" and count == (n, n),
        "retries re-billed only what was in flight": bool(killed) and 0 <= rebilled <= bound,
    }
