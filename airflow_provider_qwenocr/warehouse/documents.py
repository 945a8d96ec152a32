"""The documents table beside ``ocr_results``: one row per document, with typed key-information columns.

Why a table of its own: ``ocr_results`` holds every row — each page and each document row (``page`` NULL)
— so nothing is lost; analysts asking "what did invoice X say" want one row per document with its
fields as columns (``SELECT 发票号码, 金额__合计金额 FROM ocr_documents``). Those columns come from the
``result_schema`` by the one naming and typing rule of ``ocr/flatten.py`` (the typed KIE table's rule),
filled from the document's ONE answer (``ocr/document.py``), never from a page's.

Document rows are the results rows with ``page`` NULL and ``pages`` set (``runs/documents.py``). Same
upsert as the other tables (``INSERT … ON CONFLICT (key)``; SQLite, Postgres, DuckDB): the key is the
document's cache key, so a re-load or a cached re-run changes nothing but ``last_run_id``/``last_loaded_at``.
Tokens and cost are the document's requests' (NULL cost = unknown price, never 0); the ledger is
``load_results``' job and already counts them once, through the same document rows.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable
from contextlib import closing
from typing import Any

from airflow_provider_qwenocr.ocr.flatten import Column, kv_values, schema_columns
from airflow_provider_qwenocr.ocr.models import DEFAULT_REGION
from airflow_provider_qwenocr.warehouse.loader import _ensure_table, placeholder, upsert_sql
from airflow_provider_qwenocr.warehouse.tables import KEEP_ON_UPDATE, _json, now_iso, q, row_cost, row_key

log = logging.getLogger(__name__)

DOCUMENTS_TABLE = "ocr_documents"

#: Fixed columns of the documents table; the schema's typed columns follow them.
DOCUMENT_COLUMNS: list[tuple[str, str]] = [
    ("key", "TEXT NOT NULL PRIMARY KEY"), ("source", "TEXT"), ("sha256", "TEXT"), ("task", "TEXT"),
    ("model", "TEXT"), ("status", "TEXT"), ("pages", "INTEGER"), ("text", "TEXT"), ("markdown", "TEXT"),
    ("kv", "TEXT"), ("error_code", "TEXT"), ("error_message", "TEXT"), ("request_id", "TEXT"),
    ("finish_reason", "TEXT"), ("input_tokens", "BIGINT"), ("output_tokens", "BIGINT"),
    ("image_tokens", "BIGINT"), ("total_tokens", "BIGINT"), ("cost_cny", "DOUBLE PRECISION"),
    ("cost_usd", "DOUBLE PRECISION"), ("results_uri", "TEXT"), ("dag_id", "TEXT"),
    ("first_run_id", "TEXT"), ("last_run_id", "TEXT"), ("first_loaded_at", "TEXT"), ("last_loaded_at", "TEXT"),
]
DOCUMENT_RESERVED = frozenset(name for name, _ in DOCUMENT_COLUMNS)


def is_document_row(row: dict[str, Any]) -> bool:
    """A document row: no page of its own, and the number of pages it covers."""
    return row.get("page") is None and row.get("pages") is not None


def document_columns(result_schema: dict | str | None) -> list[Column]:
    """The typed columns of ``result_schema`` (``ocr/flatten.py``'s rule), clear of the fixed names."""
    return schema_columns(result_schema, reserved=DOCUMENT_RESERVED) if result_schema else []


def document_record(row: dict[str, Any], columns: list[Column], *, region: str, results_uri: str | None,
                    dag_id: str | None, run_id: str | None, loaded_at: str) -> dict[str, Any]:
    """One document row of a results file → its ``ocr_documents`` record (column → value)."""
    usage = row.get("usage") or {}
    err = row.get("error") or {}
    cost = row_cost(row, region=region)
    ok = row.get("status") == "ok"
    return {
        "key": row_key(row), "source": row.get("source"), "sha256": row.get("sha256"), "task": row.get("task"),
        "model": row.get("model"), "status": row.get("status"), "pages": row.get("pages"),
        "text": row.get("text"), "markdown": row.get("markdown"), "kv": _json(row.get("kv")),
        "error_code": err.get("code"), "error_message": err.get("message"), "request_id": row.get("request_id"),
        "finish_reason": row.get("finish_reason"),
        **{t: int(usage.get(t) or 0) for t in ("input_tokens", "output_tokens", "image_tokens", "total_tokens")},
        "cost_cny": cost["cny"], "cost_usd": cost["usd"], "results_uri": results_uri, "dag_id": dag_id,
        "first_run_id": run_id, "last_run_id": run_id, "first_loaded_at": loaded_at, "last_loaded_at": loaded_at,
        **kv_values(row.get("kv") if ok else None, columns),
    }


def load_documents(hook: Any, rows: Iterable[dict[str, Any]], *, result_schema: dict | str | None = None,
                   dag_id: str | None = None, run_id: str | None = None, region: str = DEFAULT_REGION,
                   results_uri: str | None = None, table: str = DOCUMENTS_TABLE) -> dict[str, Any]:
    """Upsert the document rows among ``rows`` into ``table`` (created, and widened when a schema brings new
    fields); page rows are skipped. Returns ``{"table", "n_documents", "n_new", "columns"}``."""
    columns = document_columns(result_schema)
    loaded_at = now_iso()
    records: dict[str, dict[str, Any]] = {}
    for row in rows:
        if is_document_row(row):
            rec = document_record(row, columns, region=region, results_uri=results_uri, dag_id=dag_id,
                                  run_id=run_id, loaded_at=loaded_at)
            records[rec["key"]] = rec
    ph = placeholder(hook)
    names = [c for c, _ in DOCUMENT_COLUMNS] + [c.name for c in columns]
    with closing(hook.get_conn()) as conn:
        cur = conn.cursor()
        _ensure_table(cur, table, DOCUMENT_COLUMNS + [(c.name, c.sql_type) for c in columns])
        have: set[str] = set()
        keys = list(records)
        for i in range(0, len(keys), 500):
            chunk = keys[i: i + 500]
            cur.execute(f"SELECT {q('key')} FROM {q(table)} WHERE {q('key')} IN ({', '.join([ph] * len(chunk))})",
                        chunk)
            have.update(k for (k,) in cur.fetchall())
        if records:
            cur.executemany(upsert_sql(table, names, ("key",), ph, keep=KEEP_ON_UPDATE),
                            [[rec[c] for c in names] for rec in records.values()])
        conn.commit()
    return {"table": table, "n_documents": len(records), "n_new": len(set(records) - have),
            "columns": [c.name for c in columns]}


def load_document_files(hook: Any, outputs: Iterable[Any], *, aws_conn_id: str | None = "aws_default",
                        **kwargs: Any) -> dict[str, Any]:
    """``load_documents`` over results files: ``outputs`` are results URIs or the OCR tasks' XCom summaries
    (as for ``load_result_files``); ``kwargs``: ``result_schema``, ``dag_id``, ``run_id``, ``region``, ``table``."""
    from airflow_provider_qwenocr.runs.results_store import read_results
    from airflow_provider_qwenocr.warehouse.tasks import result_uris

    rows = [row for uri in result_uris(outputs) for row in read_results(uri, aws_conn_id=aws_conn_id)]
    return load_documents(hook, rows, **kwargs)


def documents_report(hook: Any, *, columns: Iterable[str] = (), table: str = DOCUMENTS_TABLE, limit: int = 20,
                     printer: Callable[[str], Any] = log.info) -> list[dict[str, Any]]:
    """Log the documents read back — pages, tokens, cost (``unknown`` for a NULL cost, never 0) and the
    typed ``columns`` that were read — and return those rows."""
    from airflow_provider_qwenocr.warehouse.loader import money_text
    from airflow_provider_qwenocr.warehouse.tasks import query

    docs = query(hook, f"SELECT * FROM {q(table)} ORDER BY {q('source')}, {q('task')} LIMIT {int(limit)}")
    printer(f"--- {table}: {len(docs)} document(s)")
    for d in docs:
        fields = {c: d.get(c) for c in columns if d.get(c) is not None}
        printer(f"  {os.path.basename(str(d['source']))[:24]:24} {d['task']:26} {d['pages']} page(s), "
                f"{d['total_tokens']} tokens, USD {money_text(d['cost_usd'])} / CNY {money_text(d['cost_cny'])} "
                f"{json.dumps(fields, ensure_ascii=False, default=str)}")
    return docs


__all__ = ["DOCUMENTS_TABLE", "DOCUMENT_COLUMNS", "document_columns", "document_record", "documents_report",
           "is_document_row", "load_document_files", "load_documents"]
