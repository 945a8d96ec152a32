"""Redshift: COPY the results JSONL from S3 into a staging table, then MERGE into ``ocr_results``.

Why staging + MERGE: Redshift has no ``ON CONFLICT``; its ``MERGE`` (GA since 2023) is the upsert, and COPY
is the only fast way in. The COPY itself is done by the amazon provider's ``S3ToRedshiftOperator`` (it
handles credentials/IAM role and the transaction); this module only supplies the staging DDL, the COPY
options and the MERGE. Nested values (``kv``, ``words``, ``usage``, ``error``) land as ``SUPER`` and are
unpacked in the MERGE. Cost is the row's own ``cost`` (priced by the client from the model catalogue, batch
rows at half price — the same figures the embedded loader stores), so no price appears in the SQL; a cost
the catalogue cannot price is NULL, and a ledger sum over a NULL is NULL, never a smaller number. The cost
ledger line is inserted just before the MERGE, from the staged rows not yet ``ok`` in the table (what this
run pays for). Identifiers are fixed here; only the run and DAG ids (bound by the SQL operator's
``parameters``) vary.
"""

from __future__ import annotations

from airflow_provider_qwenocr.warehouse.tables import LEDGER_TABLE, RESULTS_TABLE

REDSHIFT_STAGING_TABLE = "ocr_results_staging"

#: Top-level JSON keys of a results row that COPY … JSON 'auto' maps onto the staging columns.
STAGING_COLUMNS: list[tuple[str, str]] = [
    ("key", "VARCHAR(64)"), ("source", "VARCHAR(4096)"), ("page", "INTEGER"), ("sha256", "VARCHAR(64)"),
    ("task", "VARCHAR(64)"), ("model", "VARCHAR(128)"), ("status", "VARCHAR(16)"), ("text", "VARCHAR(65535)"),
    ("kv", "SUPER"), ("words", "SUPER"), ("html", "VARCHAR(65535)"), ("latex", "VARCHAR(65535)"),
    ("usage", "SUPER"), ("error", "SUPER"), ("request_id", "VARCHAR(128)"), ("width", "INTEGER"),
    ("height", "INTEGER"), ("finish_reason", "VARCHAR(32)"), ("cost", "SUPER"),
]

#: The ``copy_options`` of ``S3ToRedshiftOperator`` for the results JSONL (gzip off: the operator writes plain
#: JSONL); its ``table`` is :data:`REDSHIFT_STAGING_TABLE`.
REDSHIFT_COPY_OPTIONS = ["FORMAT AS JSON 'auto ignorecase'", "TIMEFORMAT 'auto'", "TRUNCATECOLUMNS", "STATUPDATE OFF",
                "COMPUPDATE OFF"]


def redshift_setup_sql(schema: str = "public") -> list[str]:
    """The statements that create ``ocr_results``, the staging table and the cost ledger (if missing), for a
    ``SQLExecuteQueryOperator`` run once before the COPY."""
    return [results_ddl(schema), staging_ddl(schema), ledger_ddl(schema)]


def redshift_merge_sql(schema: str = "public", *, mode: str = "realtime") -> list[str]:
    """The statements to run after the COPY, in one transaction: the run's cost-ledger line (rows not yet
    paid for), then the MERGE into ``ocr_results``. Bind ``run_id`` and ``dag_id`` as the SQL operator's
    ``parameters``; ``mode="batch"`` for rows landed from the Batch API."""
    return [ledger_sql(schema, mode=mode), merge_sql(schema, mode=mode)]


def staging_ddl(schema: str = "public") -> str:
    cols = ", ".join(f'"{n}" {t}' for n, t in STAGING_COLUMNS)
    return f'CREATE TABLE IF NOT EXISTS {schema}.{REDSHIFT_STAGING_TABLE} ({cols})'


def results_ddl(schema: str = "public") -> str:
    """The Redshift twin of ``ocr_results`` (same columns as the embedded table; JSON kept as SUPER)."""
    return (
        f"CREATE TABLE IF NOT EXISTS {schema}.{RESULTS_TABLE} ("
        '"key" VARCHAR(64) NOT NULL PRIMARY KEY, "source" VARCHAR(4096), "page" INTEGER, "sha256" VARCHAR(64), '
        '"task" VARCHAR(64), "model" VARCHAR(128), "status" VARCHAR(16), "text" VARCHAR(65535), "kv" SUPER, '
        '"words" SUPER, "html" VARCHAR(65535), "latex" VARCHAR(65535), "error_code" VARCHAR(128), '
        '"error_message" VARCHAR(4096), "request_id" VARCHAR(128), "width" INTEGER, "height" INTEGER, '
        '"finish_reason" VARCHAR(32), "input_tokens" BIGINT, "output_tokens" BIGINT, "image_tokens" BIGINT, '
        '"total_tokens" BIGINT, "mode" VARCHAR(16), "cost_cny" DOUBLE PRECISION, "cost_usd" DOUBLE PRECISION, '
        '"results_uri" VARCHAR(4096), "dag_id" VARCHAR(250), "first_run_id" VARCHAR(250), '
        '"last_run_id" VARCHAR(250), "first_loaded_at" VARCHAR(40), "last_loaded_at" VARCHAR(40))'
    )


def _known_sum(column: str) -> str:
    """SUM that is NULL when any summed value is NULL (SQL's SUM would skip them and under-report)."""
    return f"(CASE WHEN COUNT({column}) = COUNT(*) THEN SUM({column}) END)"


def _source_select(schema: str) -> str:
    return (
        f'SELECT "key", "source", "page", "sha256", "task", "model", "status", "text", "kv", "words", "html", '
        f'"latex", "error".code::VARCHAR AS error_code, "error".message::VARCHAR AS error_message, "request_id", '
        f'"width", "height", "finish_reason", "usage".input_tokens::BIGINT AS input_tokens, '
        f'"usage".output_tokens::BIGINT AS output_tokens, "usage".image_tokens::BIGINT AS image_tokens, '
        f'"usage".total_tokens::BIGINT AS total_tokens, "cost".cny::DOUBLE PRECISION AS cost_cny, '
        f'"cost".usd::DOUBLE PRECISION AS cost_usd FROM {schema}.{REDSHIFT_STAGING_TABLE} '
        # MERGE refuses duplicate source keys: the same image in two chunk files is one row.
        f'QUALIFY ROW_NUMBER() OVER (PARTITION BY "key" ORDER BY "request_id") = 1'
    )


def ledger_ddl(schema: str = "public") -> str:
    return (f"CREATE TABLE IF NOT EXISTS {schema}.{LEDGER_TABLE} (\"dag_id\" VARCHAR(250), \"run_id\" VARCHAR(250), "
            '"task" VARCHAR(64), "model" VARCHAR(128), "mode" VARCHAR(16), "n_rows" BIGINT, "n_billed" BIGINT, '
            '"input_tokens" BIGINT, "output_tokens" BIGINT, "image_tokens" BIGINT, "total_tokens" BIGINT, '
            '"cost_cny" DOUBLE PRECISION, "cost_usd" DOUBLE PRECISION, "updated_at" VARCHAR(40))')


def ledger_sql(schema: str = "public", *, mode: str = "realtime") -> str:
    """Run BEFORE the MERGE: one ledger line per (task, model) for the staged rows not yet ``ok`` in the
    table — the rows this run pays for (same rule as the embedded loader). Sum lines per run when reading."""
    t = f"{schema}.{RESULTS_TABLE}"
    billed = "(t.\"key\" IS NULL OR t.\"status\" <> 'ok')"
    return (
        f"INSERT INTO {schema}.{LEDGER_TABLE} SELECT %(dag_id)s, %(run_id)s, s.task, s.model, '{mode}', "
        f"SUM(CASE WHEN t.\"key\" IS NULL THEN 1 ELSE 0 END), COUNT(*), SUM(s.input_tokens), SUM(s.output_tokens), "
        f"SUM(s.image_tokens), SUM(s.total_tokens), {_known_sum('s.cost_cny')}, {_known_sum('s.cost_usd')}, "
        f"GETDATE()::VARCHAR "
        f"FROM ({_source_select(schema)}) AS s LEFT JOIN {t} AS t ON t.\"key\" = s.key "
        f"WHERE {billed} AND s.status = 'ok' GROUP BY s.task, s.model"
    )


def merge_sql(schema: str = "public", *, mode: str = "realtime") -> str:
    """MERGE staging → ``ocr_results`` keyed by ``key``; first_run_id survives updates.

    Bound parameters: ``%(run_id)s`` and ``%(dag_id)s``. Cost per row: the row's own (NULL when unknown).
    """
    t = f"{schema}.{RESULTS_TABLE}"
    cost_cny, cost_usd = "s.cost_cny", "s.cost_usd"
    updates = ", ".join(f'"{c}" = s.{c}' for c in (
        "source", "page", "sha256", "task", "model", "status", "text", "kv", "words", "html", "latex",
        "error_code", "error_message", "request_id", "width", "height", "finish_reason", "input_tokens",
        "output_tokens", "image_tokens", "total_tokens"))
    return (
        f"MERGE INTO {t} USING ({_source_select(schema)}) AS s ON {t}.\"key\" = s.key "
        f"WHEN MATCHED THEN UPDATE SET {updates}, \"mode\" = '{mode}', \"cost_cny\" = {cost_cny}, "
        f"\"cost_usd\" = {cost_usd}, \"last_run_id\" = %(run_id)s, \"last_loaded_at\" = GETDATE()::VARCHAR "
        f"WHEN NOT MATCHED THEN INSERT VALUES (s.key, s.source, s.page, s.sha256, s.task, s.model, s.status, "
        f"s.text, s.kv, s.words, s.html, s.latex, s.error_code, s.error_message, s.request_id, s.width, "
        f"s.height, s.finish_reason, s.input_tokens, s.output_tokens, s.image_tokens, s.total_tokens, '{mode}', "
        f"{cost_cny}, {cost_usd}, NULL, %(dag_id)s, %(run_id)s, %(run_id)s, GETDATE()::VARCHAR, "
        f"GETDATE()::VARCHAR)"
    )
