"""Documents as a unit, end to end on the emulator (issue 18): QwenOcrOperator with ``unit="document"``.

- a 60-page PDF on ``qwen3.5-ocr``: two Responses requests (pages 1–50, 51–60, each through the temporary
  upload), 60 page rows + 1 document row; the re-run makes no request;
- a 2-page invoice with ``key_information_extraction`` and a schema: ONE document answer holding fields of
  page 1 (invoice number) and page 2 (total) — with ``qwen3.5-ocr`` (the whole PDF in one request) and with
  ``qwen-vl-ocr`` (both page images in one native request), and for a group of two image files;
- a change of unit or model pays again.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from airflow_provider_qwenocr.operators.ocr import QwenOcrOperator
from airflow_provider_qwenocr.runs.results_store import read_results

pdfium = pytest.importorskip("pypdfium2")
pytestmark = pytest.mark.integration
SAMPLES = Path(__file__).resolve().parents[2] / "dags" / "sample_pdfs"
SCHEMA = json.loads((SAMPLES.parent / "sample_docs" / "receipt_schema.json").read_text(encoding="utf-8"))


def _ctx(run_id="manual__1"):
    return {"ti": SimpleNamespace(dag_id="docs_it", task_id="ocr", run_id=run_id, map_index=-1), "run_id": run_id}


def _conn(monkeypatch, srv) -> str:
    conn = {"conn_type": "dashscope", "password": "sk-docs-test", "host": srv.base_url}
    monkeypatch.setenv("AIRFLOW_CONN_DASHSCOPE_DOCS", json.dumps(conn))
    return "dashscope_docs"


def _blank_pdf(n: int) -> bytes:
    doc = pdfium.PdfDocument.new()
    for i in range(n):
        doc.new_page(300 + i, 400).close()  # distinct sizes: every page is its own image
    buf = io.BytesIO()
    doc.save(buf)
    doc.close()
    return buf.getvalue()


def _requests(srv, kind: str) -> int:
    return int(srv.stats()["requests"].get(kind, 0))


def _split(rows):
    docs = [r for r in rows if r["page"] is None]
    pages = sorted((r for r in rows if r["page"] is not None), key=lambda r: r["page"])
    return docs, pages


def test_sixty_page_pdf_two_requests_sixty_page_rows_one_document_row_then_free(make_emulator, monkeypatch, tmp_path):
    srv = make_emulator(engine="echo")
    conn_id = _conn(monkeypatch, srv)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "contract.pdf").write_bytes(_blank_pdf(60))
    op = dict(task_id="ocr", images=str(tmp_path / "in"), model="qwen3.5-ocr", task="document_parsing",
              conn_id=conn_id, cache_uri=str(tmp_path / "cache"))
    out = QwenOcrOperator(output_uri=str(tmp_path / "r1.jsonl"), **op).execute(_ctx())
    assert _requests(srv, "responses") == 2
    assert srv.stats()["pdf_pages"] == 60
    docs, pages = _split(list(read_results(out["results_uri"])))
    assert [p["page"] for p in pages] == list(range(1, 61))
    assert pages[0]["source"].endswith("contract.pdf#page=1") and pages[59]["source"].endswith("#page=60")
    assert all(p["status"] == "ok" and p["text"] and p["usage"]["total_tokens"] == 0 for p in pages)
    (doc,) = docs
    assert doc["pages"] == 60 and doc["source"].endswith("contract.pdf") and doc["status"] == "ok"
    assert doc["usage"]["total_tokens"] > 0 and doc["usage"]["total_tokens"] == out["usage"]["total_tokens"]
    assert doc["cost"] == {"usd": None, "cny": None}, "qwen3.5-ocr has no published price: unknown, not 0"
    assert out["cost"]["usd"] is None and out["n_images"] == 60 and out["n_ok"] == 60
    (fig,) = out["documents"]
    assert (fig["pages"], fig["requests"], fig["cached"]) == (60, 2, False) and fig["cost"]["usd"] is None
    assert len({p["key"] for p in pages} | {doc["key"]}) == 61

    again = QwenOcrOperator(output_uri=str(tmp_path / "r2.jsonl"), **op).execute(_ctx("manual__2"))
    assert _requests(srv, "responses") == 2, "the re-run pays nothing"
    assert again["n_cached"] == 60 and again["usage"]["total_tokens"] == 0 and again["documents"][0]["cached"]
    docs2, pages2 = _split(list(read_results(again["results_uri"])))
    assert docs2[0]["key"] == doc["key"] and [p["key"] for p in pages2] == [p["key"] for p in pages]


def _kie_fields(doc: dict) -> tuple:
    kv = doc["kv"] or {}
    return kv.get("发票号码"), (kv.get("金额") or {}).get("合计金额")


def test_two_page_invoice_one_answer_qwen35_whole_pdf(emulator, monkeypatch, tmp_path):
    conn_id = _conn(monkeypatch, emulator)
    before = _requests(emulator, "responses")
    out = QwenOcrOperator(task_id="ocr", images=[str(SAMPLES / "invoice_2p.pdf")], model="qwen3.5-ocr",
                          task="key_information_extraction", result_schema=SCHEMA, conn_id=conn_id,
                          output_uri=str(tmp_path / "r.jsonl"), use_cache=False).execute(_ctx())
    assert _requests(emulator, "responses") - before == 1
    (doc,), pages = _split(list(read_results(out["results_uri"])))
    assert doc["pages"] == 2 and [p["page"] for p in pages] == [1, 2]
    number, total = _kie_fields(doc)
    assert "31245678" in str(number) and "128.50" in str(total), doc["kv"]


def test_two_page_invoice_one_answer_qwen_vl_ocr_several_images_one_request(emulator, monkeypatch, tmp_path):
    conn_id = _conn(monkeypatch, emulator)
    before = _requests(emulator, "native")
    out = QwenOcrOperator(task_id="ocr", images=[str(SAMPLES / "invoice_2p.pdf")], model="qwen-vl-ocr",
                          unit="document", task="key_information_extraction", result_schema=SCHEMA,
                          conn_id=conn_id, output_uri=str(tmp_path / "r.jsonl"), use_cache=False).execute(_ctx())
    assert _requests(emulator, "native") - before == 1, "both pages in one request"
    (doc,), pages = _split(list(read_results(out["results_uri"])))
    assert doc["pages"] == 2 and [p["page"] for p in pages] == [1, 2]
    assert all(p["kv"] is None and p["text"] is None and p["sha256"] for p in pages), "one answer for both pages"
    number, total = _kie_fields(doc)
    assert "31245678" in str(number) and "128.50" in str(total), doc["kv"]
    assert doc["cost"]["cny"] is not None and doc["usage"]["image_tokens"] > 0


def test_a_group_of_images_is_one_document_and_unit_or_model_change_pays_again(emulator, monkeypatch, tmp_path):
    conn_id = _conn(monkeypatch, emulator)
    d = tmp_path / "pages"
    d.mkdir()
    for i in range(2):
        bitmap = pdfium.PdfDocument(str(SAMPLES / "invoice_2p.pdf"))[i].render(scale=1).to_pil()
        bitmap.save(d / f"p{i + 1}.png")
    group = [[str(d / "p1.png"), str(d / "p2.png")]]
    common = dict(task_id="ocr", images=group, task="key_information_extraction", result_schema=SCHEMA,
                  conn_id=conn_id, cache_uri=str(tmp_path / "cache"))
    before = _requests(emulator, "native")
    out = QwenOcrOperator(model="qwen-vl-ocr", unit="document", output_uri=str(tmp_path / "a.jsonl"),
                          **common).execute(_ctx())
    (doc,), pages = _split(list(read_results(out["results_uri"])))
    assert _requests(emulator, "native") - before == 1 and doc["pages"] == 2
    assert [p["source"] for p in pages] == [str(d / "p1.png"), str(d / "p2.png")]
    number, total = _kie_fields(doc)
    assert "31245678" in str(number) and "128.50" in str(total), doc["kv"]

    same = QwenOcrOperator(model="qwen-vl-ocr", unit="document", output_uri=str(tmp_path / "b.jsonl"),
                           **common).execute(_ctx())
    assert _requests(emulator, "native") - before == 1 and same["n_cached"] == 2
    paged = QwenOcrOperator(model="qwen-vl-ocr", unit="page", output_uri=str(tmp_path / "c.jsonl"),
                            **common).execute(_ctx())
    assert _requests(emulator, "native") - before == 3 and paged["n_cached"] == 0, "another unit pays again"
    other = QwenOcrOperator(model="qwen-vl-ocr-2025-11-20", unit="document", output_uri=str(tmp_path / "d.jsonl"),
                            **common).execute(_ctx())
    assert _requests(emulator, "native") - before == 4 and other["n_cached"] == 0, "another model pays again"


def test_qwen35_page_unit_one_page_per_responses_request(make_emulator, monkeypatch, tmp_path):
    srv = make_emulator(engine="echo")
    conn_id = _conn(monkeypatch, srv)
    (tmp_path / "three.pdf").write_bytes(_blank_pdf(3))
    out = QwenOcrOperator(task_id="ocr", images=str(tmp_path / "three.pdf"), model="qwen3.5-ocr", unit="page",
                          conn_id=conn_id, output_uri=str(tmp_path / "r.jsonl"), use_cache=False).execute(_ctx())
    assert _requests(srv, "responses") == 3 and _requests(srv, "native") == 0, "qwen3.5-ocr: the Responses API"
    rows = sorted(read_results(out["results_uri"]), key=lambda r: r["page"])
    assert [r["page"] for r in rows] == [1, 2, 3] and all(r["pages"] is None and r["text"] for r in rows)
    assert "documents" not in out and out["usage"]["total_tokens"] > 0


def test_the_connections_own_price_prices_a_qwen35_document(make_emulator, monkeypatch, tmp_path):
    srv = make_emulator(engine="echo")
    conn = {"conn_type": "dashscope", "password": "sk-docs-test", "host": srv.base_url,
            "extra": {"price_input_per_mtok": 0.5, "price_output_per_mtok": 2.0, "price_currency": "CNY"}}
    monkeypatch.setenv("AIRFLOW_CONN_DASHSCOPE_PRICED", json.dumps(conn))
    (tmp_path / "two.pdf").write_bytes(_blank_pdf(2))
    out = QwenOcrOperator(task_id="ocr", images=str(tmp_path / "two.pdf"), model="qwen3.5-ocr", conn_id="dashscope_priced",
                          output_uri=str(tmp_path / "r.jsonl"), use_cache=False).execute(_ctx())
    (doc,), _ = _split(list(read_results(out["results_uri"])))
    usage = doc["usage"]
    expected = round((usage["input_tokens"] * 0.5 + usage["output_tokens"] * 2.0) / 1e6, 8)
    assert doc["cost"]["cny"] == pytest.approx(expected) and doc["cost"]["usd"] is None
    assert out["documents"][0]["cost"]["cny"] == pytest.approx(expected)
