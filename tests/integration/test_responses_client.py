"""The provider's ResponsesClient against the emulator: whole documents in one request (qwen3.5-ocr).

What is checked (reference §10): a 3-page PDF by URL with ``document_parsing`` gives one result per page
and one for the document; a built-in task combined with the user's prompt; several page images in one
request; a local PDF through the service's temporary upload (``oss://`` + the resolve header); a 51-page
PDF and an unknown model refused with the service's errors, mapped to permanent errors.

The emulator's Responses route lands with the emulator branch: until then every test here that needs it
skips, saying so (a probe of the route), and the temporary-upload test runs on its own.
"""

from __future__ import annotations

import unicodedata

import pytest

from airflow_provider_qwenocr.dashscope.config import ClientConfig
from airflow_provider_qwenocr.dashscope.errors import PermanentError
from airflow_provider_qwenocr.dashscope.responses import FileInput, ResponsesClient
from airflow_provider_qwenocr.dashscope.uploads import temporary_upload
from airflow_provider_qwenocr.ocr.images import prepare_image
from airflow_provider_qwenocr.ocr.models import get_model
from tests.fixtures.emulator import EMULATOR_KEY
from tests.fixtures.pdfs import blank_pdf, pdf_of

pytestmark = pytest.mark.integration
MODEL = "qwen3.5-ocr"
PAGES = ("paragraph_en", "table_zh_en", "mixed_notice")


def norm(text) -> str:
    return "".join(unicodedata.normalize("NFKC", str(text or "")).split())


def client(srv, **kw) -> ResponsesClient:
    cfg = ClientConfig(api_key=EMULATOR_KEY, base_url=srv.base_url, default_model=MODEL, timeout=120,
                       max_retries=kw.pop("max_retries", 2), max_retry_seconds=60)
    return ResponsesClient(cfg, sleep=lambda s: None, **kw)


def test_temporary_upload_gives_an_oss_url_the_service_can_read(make_emulator, tmp_path):
    srv = make_emulator(engine="echo")
    path = tmp_path / "contract.pdf"
    path.write_bytes(b"%PDF-1.4 not really a pdf")
    cfg = ClientConfig(api_key=EMULATOR_KEY, base_url=srv.base_url, max_retries=0)
    url = temporary_upload(cfg, path, model=MODEL)
    assert url.startswith("oss://dashscope-instant/") and url.endswith("/contract.pdf")
    with pytest.raises(FileNotFoundError):
        temporary_upload(cfg, tmp_path / "missing.pdf", model=MODEL)


def test_a_3_page_pdf_by_url_gives_page_results_and_a_document(emulator, docs_dir, file_server):
    url = file_server.put("three.pdf", pdf_of(docs_dir, *PAGES))
    with client(emulator) as c:
        doc = c.recognize_document([FileInput(url, pages=3)], task="document_parsing", source="three.pdf")
    assert doc.ok and doc.document.page is None and doc.document.source == "three.pdf"
    assert [p.page for p in doc.pages] == [1, 2, 3]
    for page, name in zip(doc.pages, PAGES, strict=True):  # each page holds its own page's text, not its neighbours'
        assert norm(page.text) == norm((docs_dir / f"{name}.txt").read_text())
    assert doc.markdown and doc.document.usage.input_tokens > 0 and doc.document.cost == {"usd": None, "cny": None}
    assert all(p.usage.total_tokens == 0 for p in doc.pages)


def test_task_combined_with_a_prompt(emulator, docs_dir, file_server):
    url = file_server.put("invoice.pdf", pdf_of(docs_dir, "invoice_zh_en", "paragraph_en"))
    schema = {"invoice_number": "", "total": ""}
    with client(emulator) as c:
        doc = c.recognize_document([FileInput(url, pages=2)], task="key_information_extraction",
                                   result_schema=schema, prompt="Summarise the document in one line.")
    assert isinstance(doc.document.kv, dict) and set(doc.document.kv) == set(schema)  # the task's result
    assert doc.document.text and not doc.document.text.lstrip().startswith(("{", "```json"))  # the prompt's
    assert doc.page_count == 2


def test_several_page_images_in_one_request(emulator, docs_dir):
    spec = get_model(MODEL)
    images = [prepare_image((docs_dir / f"{n}.png").read_bytes(), spec) for n in PAGES[:2]]
    with client(emulator) as c:
        doc = c.recognize_document(images, task="text_recognition")
    assert c.calls == 1 and doc.page_count == 2
    assert norm(doc.pages[0].text) and norm(doc.pages[1].text)


def test_a_local_pdf_goes_through_the_temporary_upload(emulator, docs_dir, tmp_path):
    path = tmp_path / "local.pdf"
    path.write_bytes(pdf_of(docs_dir, *PAGES[:2]))
    with client(emulator) as c:
        doc = c.recognize_document([path], task="text_recognition")
    assert doc.ok and doc.document.source.startswith("oss://") and doc.page_count == 2


def test_a_51_page_pdf_is_refused_with_the_services_error(make_emulator, file_server):
    srv = make_emulator(engine="echo")
    pytest.importorskip("pypdfium2")
    url = file_server.put("long.pdf", blank_pdf(51))
    with client(srv) as c, pytest.raises(PermanentError) as ei:
        c.recognize_document([FileInput(url)], task="text_recognition")  # page count unknown client-side
    assert ei.value.status_code == 400 and c.calls == 1


def test_an_unknown_model_is_model_not_found(make_emulator):
    srv = make_emulator(engine="echo")
    with client(srv) as c, pytest.raises(PermanentError) as ei:
        c.recognize("https://127.0.0.1:9/a.png", model="qwen9-ocr-unknown")
    assert (ei.value.status_code, ei.value.code) == (404, "model_not_found") and c.calls == 1
