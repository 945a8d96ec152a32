"""Redshift: COPY the results JSONL from S3 into a staging table, then MERGE into ``ocr_results``.

Why staging + MERGE: Redshift has no ``ON CONFLICT``; its ``MERGE`` (GA since 2023) is the upsert, and COPY
is the only fast way in. The COPY itself is done by the amazon provider's ``S3ToRedshiftOperator`` (it
handles credentials/IAM role and the transaction); this module only supplies the staging DDL, the COPY
options and the MERGE. Nested values (``kv``, ``words``, ``usage``, ``error``) land as ``SUPER`` and are
unpacked in the MERGE; cost is computed from the tokens with the same list prices as the embedded loader
(a CASE over the model catalogue, as literals). The cost ledger line is inserted just before the MERGE,
from the staged rows not yet ``ok`` in the table (what this run pays for). Identifiers are fixed here; only prices (floats) and the run id (bound by the SQL
operator's ``parameters``) vary.
"""

from __future__ import annotations

from airflow_provider_qwenocr.ocr.models import ALIASES, DEFAULT_REGION, MODELS, get_model
from airflow_provider_qwenocr.warehouse.tables import LEDGER_TABLE, RESULTS_TABLE

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


def _price_case(column: str, *, mode: str, region: str, tokens: str) -> str:
    """SQL CASE giving the per-token price of ``column``'s model (catalogue + aliases; unknown → default)."""
    factor = 0.5 if mode == "batch" else 1.0
    attr = {"usd_in": "usd_in", "usd_out": "usd_out", "cny_in": "cny_in", "cny_out": "cny_out"}[tokens]

    def per_token(name: str | None) -> str:
        rate = getattr(get_model(name).price(region), attr)
        return "NULL" if rate is None else repr(rate * factor / 1000)  # unknown price → NULL cost

    names = sorted(set(MODELS) | set(ALIASES))
    whens = " ".join(f"WHEN '{n}' THEN {per_token(n)}" for n in names)
    return f"(CASE {column} {whens} ELSE NULL END)"


def _cost(prefix: str, mode: str, region: str, currency: str) -> str:
    cin = _price_case(f"{prefix}model", mode=mode, region=region, tokens=f"{currency}_in")
    cout = _price_case(f"{prefix}model", mode=mode, region=region, tokens=f"{currency}_out")
    return f"({prefix}input_tokens * {cin} + {prefix}output_tokens * {cout})"


def _source_select(schema: str) -> str:
    return (
        f'SELECT "key", "source", "page", "sha256", "task", "model", "status", "text", "kv", "words", "html", '
        f'"latex", "error".code::VARCHAR AS error_code, "error".message::VARCHAR AS error_message, "request_id", '
        f'"width", "height", "finish_reason", "usage".input_tokens::BIGINT AS input_tokens, '
        f'"usage".output_tokens::BIGINT AS output_tokens, "usage".image_tokens::BIGINT AS image_tokens, '
        f'"usage".total_tokens::BIGINT AS total_tokens FROM {schema}.{STAGING_TABLE} '
        # MERGE refuses duplicate source keys: the same image in two chunk files is one row.
        f'QUALIFY ROW_NUMBER() OVER (PARTITION BY "key" ORDER BY "request_id") = 1'
    )


def ledger_ddl(schema: str = "public") -> str:
    return (f"CREATE TABLE IF NOT EXISTS {schema}.{LEDGER_TABLE} (\"dag_id\" VARCHAR(250), \"run_id\" VARCHAR(250), "
            '"task" VARCHAR(64), "model" VARCHAR(128), "mode" VARCHAR(16), "n_rows" BIGINT, "n_billed" BIGINT, '
            '"input_tokens" BIGINT, "output_tokens" BIGINT, "image_tokens" BIGINT, "total_tokens" BIGINT, '
            '"cost_cny" DOUBLE PRECISION, "cost_usd" DOUBLE PRECISION, "updated_at" VARCHAR(40))')


def ledger_sql(schema: str = "public", *, mode: str = "realtime", region: str = DEFAULT_REGION) -> str:
    """Run BEFORE the MERGE: one ledger line per (task, model) for the staged rows not yet ``ok`` in the
    table — the rows this run pays for (same rule as the embedded loader). Sum lines per run when reading."""
    t = f"{schema}.{RESULTS_TABLE}"
    billed = "(t.\"key\" IS NULL OR t.\"status\" <> 'ok')"
    return (
        f"INSERT INTO {schema}.{LEDGER_TABLE} SELECT %(dag_id)s, %(run_id)s, s.task, s.model, '{mode}', "
        f"SUM(CASE WHEN t.\"key\" IS NULL THEN 1 ELSE 0 END), COUNT(*), SUM(s.input_tokens), SUM(s.output_tokens), "
        f"SUM(s.image_tokens), SUM(s.total_tokens), SUM({_cost('s.', mode, region, 'cny')}), "
        f"SUM({_cost('s.', mode, region, 'usd')}), GETDATE()::VARCHAR "
        f"FROM ({_source_select(schema)}) AS s LEFT JOIN {t} AS t ON t.\"key\" = s.key "
        f"WHERE {billed} AND s.status = 'ok' GROUP BY s.task, s.model"
    )


def merge_sql(schema: str = "public", *, mode: str = "realtime", region: str = DEFAULT_REGION) -> str:
    """MERGE staging → ``ocr_results`` keyed by ``key``; first_run_id survives updates.

    Bound parameters: ``%(run_id)s`` and ``%(dag_id)s``. Cost per row from the model's list price (CASE over
    the catalogue), batch at half price.
    """
    t = f"{schema}.{RESULTS_TABLE}"
    cost_cny, cost_usd = _cost("s.", mode, region, "cny"), _cost("s.", mode, region, "usd")
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
