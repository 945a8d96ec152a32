"""warehouse/documents: one row per document with typed KIE columns, in SQLite and a real local Postgres."""

from __future__ import annotations

import json

import pytest

from airflow_provider_qwenocr.ocr.document import document_row
from airflow_provider_qwenocr.ocr.plan import Identity
from airflow_provider_qwenocr.ocr.results import OcrResult, Usage
from airflow_provider_qwenocr.warehouse.documents import documents_report, load_documents
from airflow_provider_qwenocr.warehouse.loader import load_results, run_ledger
from airflow_provider_qwenocr.warehouse.tasks import query, warehouse_hook

pytestmark = pytest.mark.integration
SCHEMA = {"发票号码": "", "金额": {"合计金额": "number: total"}, "开票日期": "date:"}
TASK, MODEL = "key_information_extraction", "qwen-vl-ocr"


@pytest.fixture(params=["sqlite", "postgres"])
def hook(request, tmp_path, monkeypatch):
    if request.param == "sqlite":
        monkeypatch.setenv("AIRFLOW_CONN_WH_DOCS", json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "w.db")}))
        return warehouse_hook("wh_docs")
    return warehouse_hook(request.getfixturevalue("pg_warehouse"))


def invoice_rows(name: str, kv_pages, *, cost=(0.001, 0.007)) -> list[dict]:
    """Page rows + the document row of a 2-request document, as runs/documents writes them."""
    answers = [OcrResult(source=name, task=TASK, model=MODEL, text=f"p{i}", kv=kv, usage=Usage(500, 20, 480, 520),
                         cost=None if cost is None else {"usd": cost[0], "cny": cost[1]})
               for i, kv in enumerate(kv_pages, 1)]
    pages = [OcrResult(source=f"{name}#page={i}", task=TASK, model=MODEL, page=i, key=f"{name}-p{i}")
             for i in range(1, len(kv_pages) + 1)]
    doc = document_row(Identity(name, f"{name}-doc", "sha"), answers, pages)
    return [p.to_row() for p in pages] + [doc.to_row()]


def test_one_row_per_document_typed_fields_from_both_pages_idempotent(hook):
    rows = invoice_rows("/in/inv.pdf", [{"发票号码": "INV-7", "金额": {"合计金额": None}, "开票日期": "2026-03-14"},
                                        {"发票号码": None, "金额": {"合计金额": "1,234.50"}, "开票日期": None}])
    rows += invoice_rows("/in/other.pdf", [{"发票号码": "N/A"}])
    first = load_documents(hook, rows, result_schema=SCHEMA, dag_id="d", run_id="r1")
    assert (first["n_documents"], first["n_new"]) == (2, 2)
    assert first["columns"] == ["发票号码", "金额__合计金额", "开票日期"]
    got = {r["source"]: r for r in query(hook, 'SELECT * FROM "ocr_documents"')}
    inv = got["/in/inv.pdf"]
    assert inv["pages"] == 2 and inv["发票号码"] == "INV-7" and float(inv["金额__合计金额"]) == 1234.5
    assert str(inv["开票日期"]).startswith("2026-03-14") and inv["total_tokens"] == 1040
    assert inv["text"] == "p1\n\np2" and inv["cost_cny"] == pytest.approx(0.014)
    assert got["/in/other.pdf"]["发票号码"] is None, "a null word is NULL, never invented"

    again = load_documents(hook, rows, result_schema=SCHEMA, dag_id="d", run_id="r2")
    assert again["n_new"] == 0 and query(hook, 'SELECT COUNT(*) AS n FROM "ocr_documents"')[0]["n"] == 2
    row = query(hook, 'SELECT "first_run_id", "last_run_id" FROM "ocr_documents" WHERE "source" = \'/in/inv.pdf\'')
    assert row == [{"first_run_id": "r1", "last_run_id": "r2"}]


def test_unknown_price_is_null_and_the_ledger_counts_each_document_once(hook):
    rows = invoice_rows("/in/a.pdf", [{"发票号码": "1"}, {"发票号码": "2"}], cost=None)
    rows[-1]["cost"] = {"usd": None, "cny": None}
    load_documents(hook, rows, result_schema=SCHEMA, dag_id="d", run_id="r1")
    (doc,) = query(hook, 'SELECT "cost_usd", "cost_cny", "发票号码" FROM "ocr_documents"')
    assert doc == {"cost_usd": None, "cost_cny": None, "发票号码": "1"}
    lines: list[str] = []
    (row,) = documents_report(hook, columns=["发票号码"], printer=lines.append)
    assert "USD unknown / CNY unknown" in lines[1] and '"发票号码": "1"' in lines[1] and row["pages"] == 2
    report = load_results(hook, rows, dag_id="d", run_id="r1")  # pages + document into ocr_results
    assert report.n_rows == 3 and report.n_billed == 1 and report.usage["total_tokens"] == 1040
    (ledger,) = run_ledger(hook, dag_id="d")
    assert ledger["cost_usd"] is None and ledger["total_tokens"] == 1040


def test_a_new_schema_field_widens_the_table(hook):
    rows = invoice_rows("/in/a.pdf", [{"发票号码": "1", "币种": "CNY"}])
    load_documents(hook, rows, result_schema={"发票号码": ""}, run_id="r1")
    load_documents(hook, rows, result_schema={"发票号码": "", "币种": ""}, run_id="r2")
    assert query(hook, 'SELECT "币种" FROM "ocr_documents"') == [{"币种": "CNY"}]
