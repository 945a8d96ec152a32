"""Redshift: COPY the results JSONL from S3 into a staging table, then MERGE into ``ocr_results``.

Why staging + MERGE: Redshift has no ``ON CONFLICT``; its ``MERGE`` (GA since 2023) is the upsert, and COPY
is the only fast way in. The COPY itself is done by the amazon provider's ``S3ToRedshiftOperator`` (it
handles credentials/IAM role and the transaction); this module only supplies the staging DDL, the COPY
options and the MERGE. Nested values (``kv``, ``words``, ``usage``, ``error``) land as ``SUPER`` and are
unpacked in the MERGE; cost is computed from the tokens with the same list prices as the embedded loader,
passed in as literals. Identifiers are fixed here; only prices (floats) and the run id (bound by the SQL
operator's ``parameters``) vary.
"""

from __future__ import annotations

from airflow_provider_qwenocr.ocr.models import DEFAULT_REGION, get_model
from airflow_provider_qwenocr.warehouse.tables import RESULTS_TABLE

STAGING_TABLE = "ocr_results_staging"

#: Top-level JSON keys of a results row that COPY … JSON 'auto' maps onto the staging columns.
STAGING_COLUMNS: list[tuple[str, str]] = [
    ("key", "VARCHAR(64)"), ("source", "VARCHAR(4096)"), ("page", "INTEGER"), ("sha256", "VARCHAR(64)"),
    ("task", "VARCHAR(64)"), ("model", "VARCHAR(128)"), ("status", "VARCHAR(16)"), ("text", "VARCHAR(65535)"),
    ("kv", "SUPER"), ("words", "SUPER"), ("html", "VARCHAR(65535)"), ("latex", "VARCHAR(65535)"),
    ("usage", "SUPER"), ("error", "SUPER"), ("request_id", "VARCHAR(128)"), ("width", "INTEGER"),
    ("height", "INTEGER"), ("finish_reason", "VARCHAR(32)"),
]

#: COPY options for newline-delimited JSON results (gzip off: the operator writes plain JSONL).
COPY_OPTIONS = ["FORMAT AS JSON 'auto ignorecase'", "TIMEFORMAT 'auto'", "TRUNCATECOLUMNS", "STATUPDATE OFF",
                "COMPUPDATE OFF"]


def staging_ddl(schema: str = "public") -> str:
    cols = ", ".join(f'"{n}" {t}' for n, t in STAGING_COLUMNS)
    return f'CREATE TABLE IF NOT EXISTS {schema}.{STAGING_TABLE} ({cols})'


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


def merge_sql(schema: str = "public", *, model: str | None = None, mode: str = "realtime",
              region: str = DEFAULT_REGION) -> str:
    """MERGE staging → ``ocr_results`` keyed by ``key``; first_run_id survives updates. Run id = ``%(run_id)s``."""
    price = get_model(model).price(region)
    factor = 0.5 if mode == "batch" else 1.0
    usd_in, usd_out = price.usd_in * factor / 1000, price.usd_out * factor / 1000
    cny_in = (price.cny_in or 0) * factor / 1000
    cny_out = (price.cny_out or 0) * factor / 1000
    s = f"{schema}.{STAGING_TABLE}"
    t = f"{schema}.{RESULTS_TABLE}"
    src = (
        f'SELECT "key", "source", "page", "sha256", "task", "model", "status", "text", "kv", "words", "html", '
        f'"latex", "error".code::VARCHAR AS error_code, "error".message::VARCHAR AS error_message, "request_id", '
        f'"width", "height", "finish_reason", "usage".input_tokens::BIGINT AS input_tokens, '
        f'"usage".output_tokens::BIGINT AS output_tokens, "usage".image_tokens::BIGINT AS image_tokens, '
        f'"usage".total_tokens::BIGINT AS total_tokens FROM {s} '
        # MERGE refuses duplicate source keys: the same image in two chunk files is one row.
        f'QUALIFY ROW_NUMBER() OVER (PARTITION BY "key" ORDER BY "request_id") = 1'
    )
    cost_cny = f"(s.input_tokens * {cny_in!r} + s.output_tokens * {cny_out!r})"
    cost_usd = f"(s.input_tokens * {usd_in!r} + s.output_tokens * {usd_out!r})"
    updates = ", ".join(f'"{c}" = s.{c}' for c in (
        "source", "page", "sha256", "task", "model", "status", "text", "kv", "words", "html", "latex",
        "error_code", "error_message", "request_id", "width", "height", "finish_reason", "input_tokens",
        "output_tokens", "image_tokens", "total_tokens"))
    return (
        f"MERGE INTO {t} USING ({src}) AS s ON {t}.\"key\" = s.key "
        f"WHEN MATCHED THEN UPDATE SET {updates}, \"mode\" = '{mode}', \"cost_cny\" = {cost_cny}, "
        f"\"cost_usd\" = {cost_usd}, \"last_run_id\" = %(run_id)s, \"last_loaded_at\" = GETDATE()::VARCHAR "
        f"WHEN NOT MATCHED THEN INSERT VALUES (s.key, s.source, s.page, s.sha256, s.task, s.model, s.status, "
        f"s.text, s.kv, s.words, s.html, s.latex, s.error_code, s.error_message, s.request_id, s.width, "
        f"s.height, s.finish_reason, s.input_tokens, s.output_tokens, s.image_tokens, s.total_tokens, '{mode}', "
        f"{cost_cny}, {cost_usd}, NULL, %(dag_id)s, %(run_id)s, %(run_id)s, GETDATE()::VARCHAR, "
        f"GETDATE()::VARCHAR)"
    )
