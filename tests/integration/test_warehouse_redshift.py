"""Redshift SQL (warehouse/redshift.py) that CI cannot execute: its shape must match the table it writes."""

from __future__ import annotations

import re

import pytest

from airflow_provider_qwenocr.ocr.models import MODELS
from airflow_provider_qwenocr.warehouse import redshift
from airflow_provider_qwenocr.warehouse.tables import RESULT_COLUMNS


def _columns(ddl: str) -> list[str]:
    return re.findall(r'"(\w+)" [A-Z]', ddl)


def test_results_ddl_mirrors_the_embedded_table():
    assert _columns(redshift.results_ddl("x")) == [c for c, _ in RESULT_COLUMNS]


def test_merge_insert_fills_every_column_in_order():
    sql = redshift.merge_sql("x")
    values = sql.split("WHEN NOT MATCHED THEN INSERT VALUES (", 1)[1].rstrip(")")
    depth, items, cur = 0, [], ""
    for ch in values:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            items.append(cur.strip())
            cur = ""
        else:
            cur += ch
    items.append(cur.strip())
    assert len(items) == len(RESULT_COLUMNS)
    assert items[0] == "s.key" and items[22] == "'realtime'" and items[27:29] == ["%(run_id)s", "%(run_id)s"]
    matched = sql.split("WHEN MATCHED THEN UPDATE SET", 1)[1].split("WHEN NOT MATCHED")[0]
    assert '"first_run_id"' not in matched and '"last_run_id" = %(run_id)s' in matched


def test_costs_come_from_the_rows_not_from_prices_in_sql():
    rt, bt = redshift.merge_sql(mode="realtime"), redshift.merge_sql(mode="batch")
    for sql in (rt, bt, redshift.ledger_sql(mode="batch")):
        assert "CASE s.model" not in sql and '"cost".cny::DOUBLE PRECISION AS cost_cny' in sql
        for name in MODELS:
            assert f"'{name}'" not in sql  # no price table repeated as SQL
    assert "'batch'" in bt and "'realtime'" in rt
    assert ("cost", "SUPER") in redshift.STAGING_COLUMNS
    ledger = redshift.ledger_sql("x")
    assert "(CASE WHEN COUNT(s.cost_cny) = COUNT(*) THEN SUM(s.cost_cny) END)" in ledger  # unknown stays NULL


def test_region_argument_is_gone_and_the_public_lists_keep_the_order():
    with pytest.raises(TypeError, match="region"):
        redshift.merge_sql("x", region="cn-beijing")
    assert redshift.redshift_setup_sql("x") == [redshift.results_ddl("x"), redshift.staging_ddl("x"),
                                                redshift.ledger_ddl("x")]
    assert redshift.redshift_merge_sql("x", mode="batch") == [redshift.ledger_sql("x", mode="batch"),
                                                              redshift.merge_sql("x", mode="batch")]


def test_ledger_counts_only_rows_not_yet_paid():
    sql = redshift.ledger_sql("x", mode="batch")
    assert sql.startswith("INSERT INTO x.ocr_cost_ledger SELECT %(dag_id)s, %(run_id)s")
    assert "LEFT JOIN x.ocr_results AS t" in sql and "t.\"status\" <> 'ok'" in sql and "'batch'" in sql
    assert redshift.ledger_ddl("x").count('" ') == sql.split(" FROM (")[0].count(",") + 1
