"""Results JSONL rows → warehouse tables, idempotently, with a cost ledger.

Embedded default: **SQLite through apache-airflow-providers-sqlite** (a common-sql ``DbApiHook``). Why not
DuckDB, which is nicer for analytics: every release of apache-airflow-providers-duckdb needs Airflow ≥ 2.11 (checked
with uv: unsatisfiable with apache-airflow==2.10.5, which we support), while the sqlite provider resolves on
2.10.5 and 3.3 alike. SQLite needs no server, lives in one file a user can open with any tool, and speaks the
same ``INSERT … ON CONFLICT (key) DO UPDATE`` as Postgres (and DuckDB), so one loader serves the embedded
warehouse, the Postgres stand-in and Postgres itself. Redshift has no ON CONFLICT: it gets COPY into a
staging table + MERGE (see :mod:`.redshift`).

Modules: :mod:`.tables` (DDL and row → record), :mod:`.loader` (upserts, KIE table, ledger),
:mod:`.redshift` (staging DDL, COPY options, MERGE SQL).
"""

from airflow_provider_qwenocr.warehouse.loader import LoadReport, load_results, run_ledger
from airflow_provider_qwenocr.warehouse.tables import KIE_TABLE_DEFAULT, LEDGER_TABLE, RESULTS_TABLE

__all__ = ["KIE_TABLE_DEFAULT", "LEDGER_TABLE", "RESULTS_TABLE", "LoadReport", "load_results", "run_ledger"]
