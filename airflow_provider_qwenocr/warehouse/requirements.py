"""Is the warehouse load going to be able to run? Checked before any OCR task spends anything.

Why: the example DAGs load their rows into a common-sql database at the END of the run. Without the SQL
provider for that database (``pip install airflow-provider-qwenocr`` alone does not bring the SQLite or
Postgres providers), the load failed with ``No module named 'airflow.providers.sqlite'`` after every image
had been paid for. :func:`check_warehouse` is called by the DAGs' first task, so the same mistake fails in
seconds, with the pip line that fixes it, and bills nothing.
"""

from __future__ import annotations

import importlib
from typing import Any

from airflow_provider_qwenocr.exceptions import QwenOcrConfigError

#: connection type → (module the load imports, the pip line that provides it).
SQL_PROVIDERS: dict[str, tuple[str, str]] = {
    "sqlite": ("airflow.providers.sqlite.hooks.sqlite", "airflow-provider-qwenocr[warehouse]"),
    "postgres": ("airflow.providers.postgres.hooks.postgres", "airflow-provider-qwenocr[warehouse]"),
    "redshift": ("airflow.providers.amazon.aws.hooks.redshift_sql", "airflow-provider-qwenocr[amazon]"),
}


def require_sql_provider(conn_type: str, *, conn_id: str | None = None) -> None:
    """Import the hook module the load needs for ``conn_type``; QwenOcrConfigError naming the pip line if absent.

    Types not in :data:`SQL_PROVIDERS` (DuckDB, MySQL …) are checked by :func:`check_warehouse` through the
    connection's own hook instead.
    """
    module, pip_line = SQL_PROVIDERS.get(conn_type, (None, None))
    if module is None:
        return
    try:
        importlib.import_module(module)
    except ImportError as exc:
        where = f"connection {conn_id!r} ({conn_type})" if conn_id else f"a {conn_type} warehouse"
        raise QwenOcrConfigError(
            f"the warehouse load into {where} needs {module.rsplit('.hooks', 1)[0]}, which is not installed "
            f"({exc}): pip install \"{pip_line}\". Checked before any OCR call, so nothing was billed."
        ) from exc


def check_warehouse(conn_id: str, *, fallback_sqlite: bool = False) -> str:
    """Check that the load into ``conn_id`` can run; return its connection type.

    An undefined ``conn_id`` with ``fallback_sqlite`` means the embedded SQLite warehouse
    (``warehouse.tasks.warehouse_hook``), so the SQLite provider is required. A defined connection of another
    type is checked by building its hook (which imports its provider).
    """
    from airflow_provider_qwenocr._compat import BaseHook

    try:
        conn = BaseHook.get_connection(conn_id)
    except Exception:
        if not fallback_sqlite:
            raise
        require_sql_provider("sqlite", conn_id=conn_id)
        return "sqlite"
    conn_type = conn.conn_type or ""
    require_sql_provider(conn_type, conn_id=conn_id)
    if conn_type not in SQL_PROVIDERS:
        _hook_of(conn, conn_id)
    return conn_type


def _hook_of(conn: Any, conn_id: str) -> Any:
    try:
        return conn.get_hook()
    except Exception as exc:
        raise QwenOcrConfigError(
            f"the warehouse connection {conn_id!r} ({conn.conn_type}) has no usable hook: {exc}. Install the "
            f"Airflow provider for {conn.conn_type!r}. Checked before any OCR call, so nothing was billed."
        ) from exc
