"""Idempotent loads of result rows into any common-sql ``DbApiHook`` that speaks ``ON CONFLICT`` (SQLite,
Postgres, DuckDB): ``ocr_results``, the typed KIE table and the cost ledger.

Why ``INSERT … ON CONFLICT (key) DO UPDATE`` and not ``DbApiHook.insert_rows(replace=True)``: for SQLite
``replace=True`` means ``REPLACE INTO`` (delete + insert) which would forget which run first paid for a row,
and Postgres needs a ``replace_index`` and differs again. One ON CONFLICT statement means the same upsert
semantics everywhere; identifiers are quoted and values always bound as parameters (the hook's placeholder).

Idempotency: the primary key is the idempotency key (image sha256 + task + model + params). Loading the
same results twice leaves the table unchanged except ``last_run_id``/``last_loaded_at``. The ledger counts
a row's tokens once — in the load that first brought it in as ``ok`` (``n_billed``) — and accumulates per
(dag_id, run_id, task, model, mode), so a retried load task adds nothing and a cached re-run bills 0.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from contextlib import closing
from dataclasses import asdict, dataclass, field
from typing import Any

from airflow_provider_qwenocr.ocr.flatten import Column, kv_values, schema_columns
from airflow_provider_qwenocr.ocr.models import DEFAULT_REGION
from airflow_provider_qwenocr.ocr.tasks import OcrTask
from airflow_provider_qwenocr.warehouse.tables import (
    KEEP_ON_UPDATE,
    KIE_RESERVED,
    KIE_TABLE_DEFAULT,
    LEDGER_COLUMNS,
    LEDGER_KEY,
    LEDGER_SUMS,
    LEDGER_TABLE,
    RESULT_COLUMNS,
    RESULTS_TABLE,
    create_table_sql,
    kie_columns_sql,
    now_iso,
    q,
    result_record,
)

log = logging.getLogger(__name__)
_CHUNK = 500


@dataclass
class LoadReport:
    """What one load did; JSON-safe so a task can return it to XCom."""

    n_rows: int = 0  # distinct keys in the input
    n_new: int = 0  # keys the table did not have
    n_updated: int = 0  # keys already present (re-loaded; no new rows)
    n_kie: int = 0  # rows upserted into the typed KIE table
    n_billed: int = 0  # rows whose tokens this load put on the ledger
    usage: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("input_tokens", "output_tokens", "image_tokens", "total_tokens"), 0))
    cost: dict[str, float | None] = field(default_factory=lambda: {"cny": 0.0, "usd": 0.0})  # None: unknown
    kie_table: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def placeholder(hook: Any) -> str:
    """The hook's bind-parameter marker (``?`` for SQLite, ``%s`` for psycopg2)."""
    ph = getattr(hook, "placeholder", None)
    if not isinstance(ph, str):
        ph = getattr(hook, "_placeholder", "%s")
    return ph


def upsert_sql(table: str, columns: list[str], key: tuple[str, ...], ph: str, *,
               keep: tuple[str, ...] = (), add: tuple[str, ...] = ()) -> str:
    """``INSERT … ON CONFLICT (key) DO UPDATE``: ``keep`` columns are left alone, ``add`` columns accumulate."""
    updates = []
    for col in columns:
        if col in key or col in keep:
            continue
        if col in add:
            updates.append(f"{q(col)} = COALESCE({q(table)}.{q(col)}, 0) + COALESCE(excluded.{q(col)}, 0)")
        else:
            updates.append(f"{q(col)} = excluded.{q(col)}")
    action = f"DO UPDATE SET {', '.join(updates)}" if updates else "DO NOTHING"
    return (f"INSERT INTO {q(table)} ({', '.join(q(c) for c in columns)}) "
            f"VALUES ({', '.join([ph] * len(columns))}) ON CONFLICT ({', '.join(q(k) for k in key)}) {action}")


def _existing_columns(cur: Any, table: str) -> list[str]:
    cur.execute(f"SELECT * FROM {q(table)} WHERE 1 = 0")
    return [d[0] for d in cur.description]


def _ensure_table(cur: Any, table: str, columns: list[tuple[str, str]], primary_key: tuple[str, ...] = ()) -> None:
    """Create the table; add columns a newer schema brought (never drop: old columns keep their data)."""
    cur.execute(create_table_sql(table, columns, primary_key))
    have = {c.lower() for c in _existing_columns(cur, table)}
    for name, sql_type in columns:
        if name.lower() not in have:
            log.info("Adding column %s %s to %s", name, sql_type, table)
            cur.execute(f"ALTER TABLE {q(table)} ADD COLUMN {q(name)} {sql_type.replace(' NOT NULL', '')}")


def _ok_keys(cur: Any, table: str, keys: list[str], ph: str) -> dict[str, str]:
    """key → status for the keys already in ``table``."""
    found: dict[str, str] = {}
    for i in range(0, len(keys), _CHUNK):
        chunk = keys[i : i + _CHUNK]
        cur.execute(f"SELECT {q('key')}, {q('status')} FROM {q(table)} WHERE {q('key')} IN "
                    f"({', '.join([ph] * len(chunk))})", chunk)
        found.update({k: s for k, s in cur.fetchall()})
    return found


def load_results(
    hook: Any,
    rows: Iterable[dict[str, Any]],
    *,
    dag_id: str | None = None,
    run_id: str | None = None,
    mode: str = "realtime",
    region: str = DEFAULT_REGION,
    results_uri: str | None = None,
    result_schema: dict | str | None = None,
    kie_table: str = KIE_TABLE_DEFAULT,
    results_table: str = RESULTS_TABLE,
    ledger_table: str = LEDGER_TABLE,
) -> LoadReport:
    """Upsert ``rows`` (results-file dicts) into ``results_table``; KIE rows also into the typed ``kie_table``
    when ``result_schema`` is given; add what this load billed to ``ledger_table``. One transaction."""
    if mode not in ("realtime", "batch"):
        raise ValueError(f"mode must be 'realtime' or 'batch', not {mode!r}")
    loaded_at = now_iso()
    records: dict[str, dict[str, Any]] = {}
    raw: dict[str, dict[str, Any]] = {}
    for row in rows:
        rec = result_record(row, mode=mode, region=region, results_uri=results_uri, dag_id=dag_id,
                            run_id=run_id, loaded_at=loaded_at)
        records[rec["key"]] = rec  # the same image twice in one file: last wins
        raw[rec["key"]] = row
    report = LoadReport(n_rows=len(records))
    columns: list[Column] = schema_columns(result_schema, reserved=KIE_RESERVED) if result_schema else []
    ph = placeholder(hook)
    with closing(hook.get_conn()) as conn:
        cur = conn.cursor()
        _ensure_table(cur, results_table, RESULT_COLUMNS)
        _ensure_table(cur, ledger_table, LEDGER_COLUMNS, LEDGER_KEY)
        if columns:
            _ensure_table(cur, kie_table, kie_columns_sql(columns))
            report.kie_table = kie_table
        before = _ok_keys(cur, results_table, list(records), ph)
        report.n_new = sum(1 for k in records if k not in before)
        report.n_updated = report.n_rows - report.n_new
        if records:
            names = [c for c, _ in RESULT_COLUMNS]
            cur.executemany(upsert_sql(results_table, names, ("key",), ph, keep=KEEP_ON_UPDATE),
                            [[rec[c] for c in names] for rec in records.values()])
        if columns:
            kie_rows = [_kie_record(raw[k], rec, columns, run_id, loaded_at) for k, rec in records.items()
                        if rec["task"] == OcrTask.KEY_INFORMATION_EXTRACTION.value]
            if kie_rows:
                names = list(kie_rows[0])
                cur.executemany(upsert_sql(kie_table, names, ("key",), ph),
                                [[r[c] for c in names] for r in kie_rows])
            report.n_kie = len(kie_rows)
        ledger = _ledger_rows(records, before, dag_id, run_id, mode, loaded_at, report)
        if ledger:
            names = [c for c, _ in LEDGER_COLUMNS]
            cur.executemany(upsert_sql(ledger_table, names, LEDGER_KEY, ph, add=LEDGER_SUMS),
                            [[r[c] for c in names] for r in ledger])
        conn.commit()
    log.info("Loaded %d rows into %s: %d new, %d already there; %d KIE rows; billed %d rows, %s tokens, "
             "CNY %s / USD %s", report.n_rows, results_table, report.n_new, report.n_updated, report.n_kie,
             report.n_billed, report.usage["total_tokens"], money_text(report.cost["cny"]), money_text(report.cost["usd"]))
    return report


def money_text(value: float | None) -> str:
    """A cost for a log line: six decimals, or ``unknown`` for a cost nobody could price."""
    return "unknown" if value is None else f"{value:.6f}"


def _kie_record(row: dict, rec: dict, columns: list[Column], run_id: str | None, loaded_at: str) -> dict[str, Any]:
    values = kv_values(row.get("kv") if rec["status"] == "ok" else None, columns)
    return {"key": rec["key"], "source": rec["source"], "page": rec["page"], "sha256": rec["sha256"],
            "model": rec["model"], "status": rec["status"], "dag_id": rec["dag_id"], "run_id": run_id,
            "loaded_at": loaded_at, **values}


def _ledger_rows(records: dict[str, dict], before: dict[str, str], dag_id: str | None, run_id: str | None,
                 mode: str, loaded_at: str, report: LoadReport) -> list[dict[str, Any]]:
    """Per (task, model): new rows, and the tokens/cost of rows not already in the table as ``ok``."""
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for key, rec in records.items():
        g = groups.setdefault((rec["task"] or "", rec["model"] or ""), {
            "dag_id": dag_id or "", "run_id": run_id or "", "task": rec["task"] or "", "model": rec["model"] or "",
            "mode": mode, "updated_at": loaded_at, **dict.fromkeys(LEDGER_SUMS, 0)})
        g["n_rows"] += key not in before
        if before.get(key) == "ok" or not rec["total_tokens"] and not rec["input_tokens"]:
            continue  # already paid for in an earlier load (or nothing was billed: e.g. invalid input)
        g["n_billed"] += 1
        report.n_billed += 1
        for tok in ("input_tokens", "output_tokens", "image_tokens", "total_tokens"):
            g[tok] += rec[tok]
            report.usage[tok] += rec[tok]
        for cur in ("cny", "usd"):  # one row the catalogue cannot price makes the sum unknown, not smaller
            g[f"cost_{cur}"] = _add(g[f"cost_{cur}"], rec[f"cost_{cur}"])
            report.cost[cur] = _add(report.cost[cur], rec[f"cost_{cur}"])
    report.cost = {k: None if v is None else round(v, 8) for k, v in report.cost.items()}
    return [g for g in groups.values() if g["n_rows"] or g["n_billed"]]


def _add(total: float | None, value: float | None) -> float | None:
    return None if total is None or value is None else total + value


def run_ledger(hook: Any, *, dag_id: str | None = None, run_id: str | None = None,
               ledger_table: str = LEDGER_TABLE) -> list[dict[str, Any]]:
    """Ledger rows (as dicts), optionally for one DAG and/or run."""
    ph = placeholder(hook)
    where, params = [], []
    for col, val in (("dag_id", dag_id), ("run_id", run_id)):
        if val is not None:
            where.append(f"{q(col)} = {ph}")
            params.append(val)
    sql = f"SELECT * FROM {q(ledger_table)}" + (f" WHERE {' AND '.join(where)}" if where else "")
    with closing(hook.get_conn()) as conn:
        cur = conn.cursor()
        cur.execute(sql + f" ORDER BY {q('run_id')}, {q('task')}", params)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
