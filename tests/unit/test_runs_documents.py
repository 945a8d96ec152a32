"""runs/documents + runs/document_send without a server: units, keys, grouping, packing, cache, failures."""

from __future__ import annotations

import io
from types import SimpleNamespace

import pytest
from PIL import Image

from airflow_provider_qwenocr.dashscope.config import ClientConfig
from airflow_provider_qwenocr.dashscope.errors import PermanentError
from airflow_provider_qwenocr.dashscope.realtime import RealtimeClient
from airflow_provider_qwenocr.ocr.models import get_model
from airflow_provider_qwenocr.ocr.plan import document_key
from airflow_provider_qwenocr.ocr.request import build_ocr_request
from airflow_provider_qwenocr.ocr.results import OcrResult, Usage
from airflow_provider_qwenocr.runs import document_send
from airflow_provider_qwenocr.runs.documents import (
    DocumentRun,
    expand_documents,
    process_document,
    resolve_unit,
    run_documents,
)
from airflow_provider_qwenocr.runs.results_store import ResultCache, ResultsWriter, read_results


def png(tmp_path, name, size=(640, 480), shade=255):
    path = tmp_path / name
    Image.new("L", size, shade).save(path)
    return str(path)


def test_unit_default_follows_the_model_and_typos_are_refused():
    assert resolve_unit(None, get_model("qwen3.5-ocr")) == "document"
    assert resolve_unit(None, get_model("qwen-vl-ocr")) == "page"
    assert resolve_unit("document", get_model("qwen-vl-ocr")) == "document"
    with pytest.raises(ValueError, match="unit must be"):
        resolve_unit("pages", get_model("qwen-vl-ocr"))


def test_document_key_differs_from_the_page_key_and_by_model():
    a = build_ocr_request(model="qwen-vl-ocr")
    b = build_ocr_request(model="qwen-vl-ocr-2025-11-20")
    assert document_key(a, "s") != a.key("s") and document_key(a, "s") != document_key(b, "s")
    assert document_key(a, "s") == document_key(build_ocr_request(model="qwen-vl-ocr"), "s")


def test_pack_pages_in_order_within_the_budget():
    assert document_send.pack_pages([8194] * 5, 29_900) == [[0, 1, 2], [3, 4]]
    assert document_send.pack_pages([40_000, 10, 10], 30_000) == [[0], [1, 2]]  # a big page goes alone
    assert document_send.pack_pages([1] * 120, 10**9, 50) == [list(range(50)), list(range(50, 100)),
                                                                list(range(100, 120))]


def test_expand_documents_a_list_in_the_list_is_one_document(tmp_path):
    a, b, c = (png(tmp_path, n) for n in ("a.png", "b.png", "c.png"))
    docs = expand_documents([[a, b], c])
    assert [(d.name, len(d.sources), d.group) for d in docs] == [(f"{a} + {b}", 2, True), (c, 1, False)]
    assert docs[0].page_name(2) == b and docs[1].page_name(1) == f"{c}#page=1"


class FakeNative:
    """Records the page groups of each request and answers with the pages' count as text and one kv."""

    def __init__(self):
        self.groups = []
        self.config = SimpleNamespace()

    def recognize_images(self, images, *, request, identity):
        self.groups.append(len(images))
        n = len(self.groups)
        return OcrResult(**identity.fields(), task=request.task.value, model=request.model, text=f"req{n}",
                         kv={"field": "v" if n == 2 else None, "first": f"r{n}"}, usage=Usage(100, 10, 90, 110),
                         cost={"usd": 0.001, "cny": 0.01}, request_id=f"id{n}")


def test_native_document_packs_pages_merges_kv_caches_and_rerun_is_free(tmp_path):
    pages = [png(tmp_path, f"p{i}.png", size=(2480, 3508), shade=200 + i) for i in range(5)]  # full A4 scans
    request = build_ocr_request(task="key_information_extraction", result_schema={"field": "x", "first": "y"},
                                model="qwen-vl-ocr")
    client, cache = FakeNative(), ResultCache(str(tmp_path / "cache"))
    run = DocumentRun(request, client, cache=cache)
    (doc,) = expand_documents([pages])
    document, rows, cached, requests = process_document(doc, run)
    assert client.groups == [3, 2] and requests == 2 and not cached  # 8,194 tokens a page, 30,000 a request
    assert document.pages == 5 and document.text == "req1\n\nreq2" and document.usage.total_tokens == 220
    assert document.kv == {"field": "v", "first": "r1"}, "first non-null per field across requests"
    assert [r.page for r in rows] == [1, 2, 3, 4, 5] and all(r.text is None and r.usage.total_tokens == 0
                                                                for r in rows)
    again = process_document(doc, run)
    assert again[2] is True and client.groups == [3, 2] and again[0].key == document.key


def test_a_cached_pdf_document_renders_no_page_on_the_rerun(tmp_path, monkeypatch):
    pdfium = pytest.importorskip("pypdfium2")
    doc = pdfium.PdfDocument.new()
    for _ in range(3):
        doc.new_page(300, 400).close()
    doc.save(str(tmp_path / "d.pdf"))
    doc.close()
    request = build_ocr_request(model="qwen-vl-ocr")
    client, cache = FakeNative(), ResultCache(str(tmp_path / "cache"))
    run = DocumentRun(request, client, cache=cache)
    (document,) = expand_documents(str(tmp_path / "d.pdf"))
    first = process_document(document, run)
    assert first[0].ok and first[0].pages == 3 and len(client.groups) == 1
    from airflow_provider_qwenocr.ocr import pdf

    def no_render(*a, **k):
        raise AssertionError("a cached document must not be rendered")

    monkeypatch.setattr(pdf, "render_pages", no_render)
    (document,) = expand_documents(str(tmp_path / "d.pdf"))
    again = process_document(document, run)
    assert again[2] is True and [r.page for r in again[1]] == [1, 2, 3] and again[1][0].sha256 == first[1][0].sha256


def test_a_failed_request_gives_error_rows_and_nothing_is_cached(tmp_path):
    class Refusing(FakeNative):
        def recognize_images(self, images, **kw):
            raise PermanentError("Input data may contain inappropriate content.", code="DataInspectionFailed")

    request = build_ocr_request(model="qwen-vl-ocr")
    run = DocumentRun(request, Refusing(), cache=ResultCache(str(tmp_path / "cache")))
    docs = expand_documents([[png(tmp_path, "a.png"), png(tmp_path, "b.png")]])
    with ResultsWriter(str(tmp_path / "r.jsonl")) as writer:
        summary, figures = run_documents(docs, run, writer)
    rows = list(read_results(str(tmp_path / "r.jsonl")))
    assert [r["status"] for r in rows] == ["error"] * 3 and rows[-1]["page"] is None and rows[-1]["pages"] == 2
    assert summary.n_failed == 2 and figures[0]["status"] == "error"
    assert not list((tmp_path / "cache").rglob("*.json"))


def test_recognize_images_sends_every_page_in_one_message(monkeypatch):
    client = RealtimeClient(ClientConfig(api_key="sk-x", base_url="http://127.0.0.1:9"), sleep=lambda s: None)
    request = build_ocr_request(task="key_information_extraction", result_schema={"a": "b"}, model="qwen-vl-ocr")
    buf = io.BytesIO()
    Image.new("L", (400, 300), 255).save(buf, "PNG")
    images = [request.prepare(buf.getvalue()) for _ in range(3)]
    sent = {}

    def call(model, messages, options=None, *, tokens=0):
        sent.update(messages=messages, options=options, tokens=tokens)
        return SimpleNamespace(output={"choices": [{"message": {"content": [{"text": "{}"}]},
                                                    "finish_reason": "stop"}]},
                               usage={"input_tokens": 10, "output_tokens": 1}, request_id="rid")

    monkeypatch.setattr(client, "call", call)
    from airflow_provider_qwenocr.ocr.plan import Identity

    row = client.recognize_images(images, request=request, identity=Identity("doc", "k", "s"))
    (message,) = sent["messages"]
    assert [("image" in item) for item in message["content"]] == [True, True, True]
    assert sent["options"]["task"] == "key_information_extraction"
    assert sent["tokens"] >= sum(i.tokens for i in images) and row.words is None and row.key == "k"
