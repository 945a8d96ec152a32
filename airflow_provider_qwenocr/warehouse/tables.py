"""Warehouse table shapes: ``ocr_results``, the typed KIE table, the cost ledger — and row → record.

Why these columns: the stable row keys (DESIGN §6) become columns one to one; nested values (``kv``,
``words``) stay JSON text so nothing is lost, while the numbers people aggregate (tokens, cost) get their
own typed columns. ``first_run_id`` never changes after the first load: it says which run paid for a row,
which is what the ledger counts. Types are the portable subset SQLite, Postgres and DuckDB all accept.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from airflow_provider_qwenocr.ocr.flatten import Column
from airflow_provider_qwenocr.ocr.models import DEFAULT_REGION, get_model
from airflow_provider_qwenocr.ocr.results import idempotency_key

RESULTS_TABLE = "ocr_results"
LEDGER_TABLE = "ocr_cost_ledger"
KIE_TABLE_DEFAULT = "ocr_kie"

#: (column, SQL type) of ``ocr_results``; ``key`` is the primary key.
RESULT_COLUMNS: list[tuple[str, str]] = [
    ("key", "TEXT NOT NULL PRIMARY KEY"),
    ("source", "TEXT"), ("page", "INTEGER"), ("sha256", "TEXT"), ("task", "TEXT"), ("model", "TEXT"),
    ("status", "TEXT"), ("text", "TEXT"), ("kv", "TEXT"), ("words", "TEXT"), ("html", "TEXT"),
    ("latex", "TEXT"), ("error_code", "TEXT"), ("error_message", "TEXT"), ("request_id", "TEXT"),
    ("width", "INTEGER"), ("height", "INTEGER"), ("finish_reason", "TEXT"),
    ("input_tokens", "BIGINT"), ("output_tokens", "BIGINT"), ("image_tokens", "BIGINT"), ("total_tokens", "BIGINT"),
    ("mode", "TEXT"), ("cost_cny", "DOUBLE PRECISION"), ("cost_usd", "DOUBLE PRECISION"),
    ("results_uri", "TEXT"), ("dag_id", "TEXT"),
    ("first_run_id", "TEXT"), ("last_run_id", "TEXT"), ("first_loaded_at", "TEXT"), ("last_loaded_at", "TEXT"),
]
#: Columns an upsert must not overwrite: they record the first load.
KEEP_ON_UPDATE = ("key", "first_run_id", "first_loaded_at")

#: Fixed columns of the KIE table; the flattened schema columns follow them.
KIE_FIXED: list[tuple[str, str]] = [
    ("key", "TEXT NOT NULL PRIMARY KEY"), ("source", "TEXT"), ("page", "INTEGER"), ("sha256", "TEXT"),
    ("model", "TEXT"), ("status", "TEXT"), ("dag_id", "TEXT"), ("run_id", "TEXT"), ("loaded_at", "TEXT"),
]
KIE_RESERVED = frozenset(name for name, _ in KIE_FIXED)

LEDGER_COLUMNS: list[tuple[str, str]] = [
    ("dag_id", "TEXT NOT NULL"), ("run_id", "TEXT NOT NULL"), ("task", "TEXT NOT NULL"), ("model", "TEXT NOT NULL"),
    ("mode", "TEXT NOT NULL"), ("n_rows", "BIGINT"), ("n_billed", "BIGINT"), ("input_tokens", "BIGINT"),
    ("output_tokens", "BIGINT"), ("image_tokens", "BIGINT"), ("total_tokens", "BIGINT"),
    ("cost_cny", "DOUBLE PRECISION"), ("cost_usd", "DOUBLE PRECISION"), ("updated_at", "TEXT"),
]
LEDGER_KEY = ("dag_id", "run_id", "task", "model", "mode")
#: Ledger columns that accumulate across loads of the same run (a retried load adds only what it billed).
LEDGER_SUMS = ("n_rows", "n_billed", "input_tokens", "output_tokens", "image_tokens", "total_tokens",
               "cost_cny", "cost_usd")


def q(identifier: str) -> str:
    """Quote an identifier (double quotes: SQLite, Postgres, DuckDB, Redshift)."""
    return '"' + identifier.replace('"', '""') + '"'


def create_table_sql(table: str, columns: list[tuple[str, str]], primary_key: tuple[str, ...] = ()) -> str:
    body = [f"{q(name)} {sql_type}" for name, sql_type in columns]
    if primary_key:
        body.append(f"PRIMARY KEY ({', '.join(q(c) for c in primary_key)})")
    return f"CREATE TABLE IF NOT EXISTS {q(table)} ({', '.join(body)})"


def kie_columns_sql(columns: list[Column]) -> list[tuple[str, str]]:
    return KIE_FIXED + [(c.name, c.sql_type) for c in columns]


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def row_key(row: dict[str, Any]) -> str:
    """The row's idempotency key; rows written without one (e.g. unreadable input) get a stable fallback."""
    if row.get("key"):
        return str(row["key"])
    ident = row.get("sha256") or f"source:{row.get('source')}#{row.get('page')}"
    return idempotency_key(ident, str(row.get("task")), str(row.get("model")), {})


def row_cost(row: dict[str, Any], *, mode: str = "realtime", region: str = DEFAULT_REGION) -> dict[str, float | None]:
    """CNY and USD of one row; a currency nobody can price is None (NULL in the tables), never 0.

    The row's own ``cost`` comes first: the client computed it from the model catalogue when it parsed
    the answer (batch rows already at half price), so every loader — this one and the Redshift MERGE —
    uses the one price table without repeating it. Rows written before rows carried a cost are priced
    from their tokens with the same catalogue.
    """
    cost = row.get("cost")
    if isinstance(cost, dict):
        return {"cny": _price_or_none(cost.get("cny")), "usd": _price_or_none(cost.get("usd"))}
    usage = row.get("usage") or {}
    return get_model(row.get("model")).price(region).cost(
        int(usage.get("input_tokens") or 0), int(usage.get("output_tokens") or 0), batch=(mode == "batch"))


def _price_or_none(value: Any) -> float | None:
    return None if value is None or value == "" else float(value)


def result_record(row: dict[str, Any], *, mode: str, region: str, results_uri: str | None, dag_id: str | None,
                  run_id: str | None, loaded_at: str) -> dict[str, Any]:
    """One results-file row → the ``ocr_results`` record (column → value)."""
    usage = row.get("usage") or {}
    err = row.get("error") or {}
    cost = row_cost(row, mode=mode, region=region)
    return {
        "key": row_key(row), "source": row.get("source"), "page": row.get("page"), "sha256": row.get("sha256"),
        "task": row.get("task"), "model": row.get("model"), "status": row.get("status"),
        "text": row.get("text"), "kv": _json(row.get("kv")), "words": _json(row.get("words")),
        "html": row.get("html"), "latex": row.get("latex"),
        "error_code": err.get("code"), "error_message": err.get("message"), "request_id": row.get("request_id"),
        "width": row.get("width"), "height": row.get("height"), "finish_reason": row.get("finish_reason"),
        "input_tokens": int(usage.get("input_tokens") or 0), "output_tokens": int(usage.get("output_tokens") or 0),
        "image_tokens": int(usage.get("image_tokens") or 0), "total_tokens": int(usage.get("total_tokens") or 0),
        "mode": mode, "cost_cny": cost["cny"], "cost_usd": cost["usd"], "results_uri": results_uri,
        "dag_id": dag_id, "first_run_id": run_id, "last_run_id": run_id,
        "first_loaded_at": loaded_at, "last_loaded_at": loaded_at,
    }
