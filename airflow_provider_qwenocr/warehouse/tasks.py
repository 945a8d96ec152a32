"""The few Airflow-facing steps the example DAGs share: find the warehouse hook, load result files, report.

Why here and not in each DAG file: the three example DAGs land results the same way; keeping the load and
the read-back in one tested place keeps the DAG files short enough to read as documentation.
Thin glue only: the SQL lives in :mod:`.loader`, file reading in ``runs.results_store``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable
from contextlib import closing
from typing import Any

from airflow_provider_qwenocr.warehouse.loader import LoadReport, load_results, money_text, run_ledger
from airflow_provider_qwenocr.warehouse.tables import KIE_TABLE_DEFAULT, RESULTS_TABLE, q

log = logging.getLogger(__name__)

DEFAULT_WAREHOUSE_CONN_ID = "qwenocr_warehouse"


def default_sqlite_path() -> str:
    home = os.environ.get("AIRFLOW_HOME") or os.path.expanduser("~/airflow")
    return os.path.join(home, "qwenocr_warehouse.sqlite")


def warehouse_hook(conn_id: str = DEFAULT_WAREHOUSE_CONN_ID, *, fallback_sqlite: str | bool | None = None) -> Any:
    """The connection's DbApiHook. If ``conn_id`` is not defined and ``fallback_sqlite`` is given, a SQLite
    hook on that file (``True``: ``$AIRFLOW_HOME/qwenocr_warehouse.sqlite``) is returned instead (no
    connection is invented: nothing is written to the environment or the metadata DB), so the local
    example runs with no set-up."""
    from airflow_provider_qwenocr._compat import BaseHook

    if fallback_sqlite is True:
        fallback_sqlite = default_sqlite_path()
    try:
        conn = BaseHook.get_connection(conn_id)
    except Exception:
        if not fallback_sqlite:
            raise
        log.info("Connection %r is not defined; using the embedded SQLite warehouse %s", conn_id, fallback_sqlite)
        return embedded_sqlite_hook(fallback_sqlite, conn_id=conn_id)
    hook = conn.get_hook()
    if not hasattr(hook, "get_conn"):
        raise TypeError(f"connection {conn_id!r} ({conn.conn_type}) is not a DB-API (common-sql) connection")
    return hook


def embedded_sqlite_hook(path: str, *, conn_id: str = DEFAULT_WAREHOUSE_CONN_ID) -> Any:
    """A ``SqliteHook`` on ``path`` backed by an in-memory connection object, not a defined connection."""
    from airflow.providers.sqlite.hooks.sqlite import SqliteHook

    try:
        from airflow.sdk import Connection
    except ImportError:  # Airflow 2.x
        from airflow.models.connection import Connection

    connection = Connection(conn_id=conn_id, conn_type="sqlite", host=path)

    class EmbeddedSqliteHook(SqliteHook):
        def get_connection(self, _conn_id: str) -> Any:  # the hook asks for its connection by id
            return connection

    return EmbeddedSqliteHook(sqlite_conn_id=conn_id, connection=connection)


def result_uris(outputs: Iterable[Any]) -> list[str]:
    """``results_uri`` of each OCR operator output (XCom dicts; mapped outputs arrive as lists)."""
    uris: list[str] = []
    for out in outputs:
        if out is None:
            continue
        if isinstance(out, dict):
            if out.get("results_uri"):
                uris.append(out["results_uri"])
        elif isinstance(out, str):
            uris.append(out)
        else:
            uris.extend(result_uris(out))
    return list(dict.fromkeys(uris))


def load_result_files(hook: Any, outputs: Iterable[Any], *, aws_conn_id: str | None = "aws_default",
                      **kwargs: Any) -> dict[str, Any]:
    """Read every results file and upsert its rows (one load, so the ledger sees the run at once).

    ``outputs``: results URIs, or the OCR tasks' XCom summaries (``results_uri`` is read; mapped outputs
    arrive as lists) — e.g. ``[text.output, kie.output]``. ``kwargs`` go to ``warehouse.loader.load_results``
    (``dag_id``, ``run_id``, ``mode``, ``result_schema`` …)."""
    from airflow_provider_qwenocr.runs.results_store import read_results

    uris = result_uris(outputs)
    rows: list[dict] = []
    for uri in uris:
        rows.extend(read_results(uri, aws_conn_id=aws_conn_id))
    report: LoadReport = load_results(hook, rows, results_uri=uris[0] if len(uris) == 1 else None, **kwargs)
    out = report.to_dict()
    out["results_uris"] = uris
    return out


def loaded_sha256s(hook: Any, *, task: str) -> set[str]:
    """sha256 of every document with an ``ok`` row for ``task`` in ``ocr_results`` (empty before the first
    load): what a nightly DAG need not send again."""
    from airflow_provider_qwenocr.warehouse.loader import placeholder

    try:
        rows = query(hook, f"SELECT {q('sha256')} FROM {q(RESULTS_TABLE)} WHERE {q('task')} = {placeholder(hook)} "
                           f"AND {q('status')} = 'ok'", [task])
    except Exception:  # no table yet
        return set()
    return {r["sha256"] for r in rows}


def query(hook: Any, sql: str, params: Iterable[Any] = ()) -> list[dict[str, Any]]:
    with closing(hook.get_conn()) as conn:
        cur = conn.cursor()
        cur.execute(sql, list(params))
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def warehouse_report(hook: Any, *, dag_id: str, run_id: str, ocr_outputs: Iterable[dict] = (), load: dict | None = None,
           kie_table: str = KIE_TABLE_DEFAULT, limit: int = 8,
           printer: Callable[[str], Any] = log.info) -> dict[str, Any]:
    """Log a few rows queried back, the KIE table, and this run's usage + cost; return the figures.

    A cost the catalogue cannot price (NULL in the ledger) is reported as None ("unknown"), not as 0.
    """
    rows = query(hook, f"SELECT {q('source')}, {q('task')}, {q('status')}, {q('text')} FROM {q(RESULTS_TABLE)} "
                       f"ORDER BY {q('source')}, {q('task')} LIMIT {int(limit)}")
    printer(f"--- {RESULTS_TABLE}: {query(hook, f'SELECT COUNT(*) AS n FROM {q(RESULTS_TABLE)}')[0]['n']} rows; first {len(rows)}:")
    for r in rows:
        text = (r["text"] or "").replace("\n", " | ")
        printer(f"  {os.path.basename(str(r['source']))[:28]:28} {r['task']:26} {r['status']:5} {text[:60]}")
    kie: list[dict] = []
    try:
        kie = query(hook, f"SELECT * FROM {q(kie_table)} ORDER BY {q('source')} LIMIT {int(limit)}")
    except Exception:  # no KIE table yet (no KIE task in this DAG)
        pass
    if kie:
        printer(f"--- {kie_table} (typed key information; NULL = not read):")
        fixed = {"key", "sha256", "dag_id", "run_id", "loaded_at", "model", "page"}
        for r in kie:
            fields = {k: v for k, v in r.items() if k not in fixed and k != "source"}
            printer(f"  {os.path.basename(str(r['source']))[:20]:20} {json.dumps(fields, ensure_ascii=False, default=str)}")
    outputs = [o for o in ocr_outputs if isinstance(o, dict)]
    n_images = sum(int(o.get("n_images") or 0) for o in outputs)
    n_cached = sum(int(o.get("n_cached") or 0) for o in outputs)
    ledger = run_ledger(hook, dag_id=dag_id, run_id=run_id)
    tokens = sum(int(r["total_tokens"] or 0) for r in ledger)
    cny = _total(r["cost_cny"] for r in ledger)
    usd = _total(r["cost_usd"] for r in ledger)
    summary = {"n_images": n_images, "n_cached": n_cached, "api_calls": n_images - n_cached,
               "new_rows": (load or {}).get("n_new"), "billed_rows": sum(int(r["n_billed"] or 0) for r in ledger),
               "total_tokens": tokens, "cost_cny": _round(cny), "cost_usd": _round(usd)}
    printer(f"--- run {run_id}: {summary['api_calls']} API calls ({n_cached} of {n_images} images from cache), "
            f"{summary['new_rows']} new rows; billed {summary['billed_rows']} rows, {tokens} tokens, "
            f"CNY {money_text(cny)} / USD {money_text(usd)}")
    return summary


def _total(values: Iterable[Any]) -> float | None:
    """Sum of ledger costs; None (unknown) when any line is unknown."""
    total = 0.0
    for v in values:
        if v is None:
            return None
        total += float(v)
    return total


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 8)

