"""Issue 20 item 15: the warehouse load's SQL provider is checked before any OCR call is billed.

The load used to fail with ``No module named 'airflow.providers.sqlite'`` at the END of the run, after the
images were paid for. ``check_warehouse`` (the example DAGs' first task) must refuse at once, naming the pip
line; a missing provider is simulated by blocking its import (``sys.modules[name] = None``).
"""

from __future__ import annotations

import json
import sys

import pytest

from airflow_provider_qwenocr.exceptions import QwenOcrConfigError
from airflow_provider_qwenocr.warehouse.requirements import check_warehouse, require_sql_provider


def _block(monkeypatch, package: str) -> None:
    for name in [m for m in sys.modules if m == package or m.startswith(package + ".")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, package, None)  # import → ImportError, as when it is not installed


def test_embedded_sqlite_without_the_sqlite_provider_is_refused_with_the_extra(monkeypatch):
    _block(monkeypatch, "airflow.providers.sqlite")
    with pytest.raises(QwenOcrConfigError, match=r'pip install "airflow-provider-qwenocr\[warehouse\]"') as err:
        check_warehouse("qwenocr_wh_not_defined", fallback_sqlite=True)
    assert "airflow.providers.sqlite" in str(err.value) and "nothing was billed" in str(err.value)


def test_a_postgres_connection_without_the_postgres_provider_is_refused(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_WH_PG", json.dumps({"conn_type": "postgres", "host": "127.0.0.1"}))
    _block(monkeypatch, "airflow.providers.postgres")
    with pytest.raises(QwenOcrConfigError, match=r"'wh_pg' \(postgres\).*\[warehouse\]"):
        check_warehouse("wh_pg")


def test_installed_providers_pass_and_name_the_type(monkeypatch, tmp_path):
    assert check_warehouse("qwenocr_wh_not_defined", fallback_sqlite=True) == "sqlite"
    monkeypatch.setenv("AIRFLOW_CONN_WH_SQLITE", json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "w.db")}))
    assert check_warehouse("wh_sqlite") == "sqlite"
    require_sql_provider("duckdb")  # not in the table: left to the connection's own hook


def test_an_undefined_connection_without_fallback_still_fails_before_ocr():
    with pytest.raises(Exception, match="qwenocr_wh_not_defined"):
        check_warehouse("qwenocr_wh_not_defined")


def test_a_connection_type_whose_provider_is_missing_is_refused(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_WH_ODD", json.dumps({"conn_type": "nosuchdb", "host": "x"}))
    with pytest.raises(QwenOcrConfigError, match=r"'wh_odd' \(nosuchdb\) has no usable hook"):
        check_warehouse("wh_odd")
