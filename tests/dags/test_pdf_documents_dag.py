"""The example DAG "folder of PDFs → documents + pages tables" green under ``dag.test()`` on the emulator.

Whole PDFs per request on ``qwen3.5-ocr`` through the temporary upload; a row per page and a row per
document in ``ocr_results``; one row per document in ``ocr_documents`` with the invoice's fields from both
pages as typed columns; the unknown price is NULL; the re-run makes 0 requests and adds 0 rows.
"""

from __future__ import annotations

import json
import pathlib

import pytest

from airflow_provider_qwenocr.warehouse.tasks import query, warehouse_hook

pytestmark = [pytest.mark.dags, pytest.mark.integration]
SAMPLES = pathlib.Path(__file__).resolve().parents[2] / "dags" / "sample_pdfs"


@pytest.fixture
def sqlite_wh(tmp_path, monkeypatch) -> str:
    monkeypatch.setenv("AIRFLOW_CONN_WH_PDF", json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "wh.db")}))
    return "wh_pdf"


def test_pdf_folder_to_documents_and_pages_then_free_rerun(dag_runner, emulator, emulator_conn, sqlite_wh, tmp_path):
    conf = {"warehouse_conn_id": sqlite_wh, "output_dir": str(tmp_path / "out")}
    emulator.reset_stats()
    dag_runner("qwen_ocr_pdf_documents", conf)
    stats = emulator.stats()
    assert stats["requests"].get("responses") == 3  # 2 PDFs parsed + 1 invoice extracted, each whole
    assert stats["pdf_pages"] == 2 + 3 + 2

    hook = warehouse_hook(sqlite_wh)
    docs = {(pathlib.Path(d["source"]).name, d["task"]): d for d in query(hook, 'SELECT * FROM "ocr_documents"')}
    assert set(docs) == {("invoice_2p.pdf", "document_parsing"), ("report_3p.pdf", "document_parsing"),
                         ("invoice_2p.pdf", "key_information_extraction")}
    invoice = docs[("invoice_2p.pdf", "key_information_extraction")]
    assert invoice["pages"] == 2 and invoice["发票号码"] == "31245678"  # page 1
    assert invoice["金额__合计金额"] == pytest.approx(128.5)  # page 2
    assert docs[("report_3p.pdf", "document_parsing")]["pages"] == 3
    assert all(d["cost_usd"] is None and d["total_tokens"] > 0 for d in docs.values()), "unknown price: NULL"

    pages = query(hook, 'SELECT "source", "page", "text", "total_tokens" FROM "ocr_results" WHERE "page" IS NOT NULL')
    assert len(pages) == 2 + 3 + 2 and all(p["total_tokens"] == 0 for p in pages)
    report_pages = sorted((p["page"], p["text"]) for p in pages if "report_3p" in p["source"])
    assert [n for n, _ in report_pages] == [1, 2, 3] and "G1234" in report_pages[2][1]
    doc_rows = query(hook, 'SELECT COUNT(*) AS n FROM "ocr_results" WHERE "page" IS NULL')[0]["n"]
    assert doc_rows == 3

    emulator.reset_stats()
    dag_runner("qwen_ocr_pdf_documents", conf)
    assert emulator.stats()["requests"].get("responses", 0) == 0
    assert query(hook, 'SELECT COUNT(*) AS n FROM "ocr_documents"')[0]["n"] == 3
    assert query(hook, 'SELECT COUNT(*) AS n FROM "ocr_results"')[0]["n"] == 2 + 3 + 2 + 3
