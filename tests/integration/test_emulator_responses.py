"""The official openai SDK's ``client.responses.create`` against the emulator's Responses API, unchanged.

What the documentation says (reference §10) is what is checked: qwen3.5-ocr only; whole PDFs by
``input_file.file_url`` (loopback URL, or the temporary-upload ``oss://`` path with
``X-DashScope-OssResourceResolve: enable``); per-page ``ocr_result.layouts``; a built-in task combined with
the user's prompt; ≤ 50 pages, ≤ 100 MB per PDF, ≤ 20 MB per image; refusals in the service's 400 shape.
OCR content is read by the real engine (session ``emulator``); limits run on the cheap ``echo`` engine.
"""

from __future__ import annotations

import base64
import io
import json
import unicodedata

import httpx
import pytest
from PIL import Image

openai = pytest.importorskip("openai")
pytest.importorskip("pypdfium2")

from tests.fixtures.pdfs import blank_pdf, pdf_of  # noqa: E402

pytestmark = pytest.mark.integration
MODEL = "qwen3.5-ocr"
MB = 1024 * 1024


def norm(text) -> str:
    return "".join(unicodedata.normalize("NFKC", str(text or "")).split())


def client(srv):
    sdk = openai.OpenAI(api_key="sk-test-emulator", base_url=srv.compatible_base, max_retries=0, timeout=120)
    if not hasattr(sdk, "responses"):  # the lowest-versions job: openai 1.40, the provider's floor
        pytest.skip(f"openai {openai.__version__} has no client.responses (it arrived in 1.66); the provider does "
                    "not use it (dashscope/responses.py posts itself), so these SDK checks of the emulator run in "
                    "the newest-version suites only")
    return sdk


def file_input(url: str, text: str | None = None) -> list[dict]:
    content = ([{"type": "input_text", "text": text}] if text else []) + [{"type": "input_file", "file_url": url}]
    return [{"role": "user", "content": content}]


def ocr_result(resp) -> dict:
    part = resp.output[0].content[0]
    assert part.type == "output_text"
    return part.ocr_result  # an extra field the SDK keeps as a plain dict


def refused(call, status: int = 400, code: str = "invalid_parameter_error") -> str:
    with pytest.raises(openai.APIStatusError) as err:
        call()
    assert err.value.status_code == status
    body = err.value.body if "code" in err.value.body else err.value.body["error"]
    assert body["code"] == code and body["type"] == "invalid_request_error"
    return body["message"]


# -- a whole PDF, read by the real engine ------------------------------------------------------------------
def test_pdf_by_url_with_document_parsing_gives_per_page_layouts(emulator, docs_dir, file_server):
    url = file_server.put("three.pdf", pdf_of(docs_dir, "paragraph_en", "mixed_notice", "table_zh_en"))
    before = emulator.stats()
    resp = client(emulator).responses.create(model=MODEL, input=file_input(url),
                                             extra_body={"ocr_options": {"task": "document_parsing"}})
    after = emulator.stats()
    assert (resp.object, resp.status, resp.model) == ("response", "completed", MODEL) and resp.id
    assert resp.output[0].type == "message" and resp.output[0].role == "assistant"
    assert resp.output_text.startswith("```latex") and "Quarterly" in resp.output_text
    layouts = ocr_result(resp)["layouts"]
    assert sorted({b["pageNum"] for b in layouts}) == [1, 2, 3]
    assert [b["pageNum"] for b in layouts] == sorted(b["pageNum"] for b in layouts), "pages in order"
    assert all(set(b) == {"pageNum", "type", "text", "markdownContent"} for b in layouts)
    page = {n: " ".join(b["text"] for b in layouts if b["pageNum"] == n) for n in (1, 2, 3)}
    assert "Quarterly" in page[1] and "Notice" in page[2] and "Banana" in page[3]
    (table,) = [b for b in layouts if b["pageNum"] == 3 and b["type"] == "table"]
    assert "| Banana 香蕉 | 7 | 1.20 |" in table["markdownContent"]
    assert resp.usage.input_tokens_details.image_tokens > 0
    assert resp.usage.total_tokens == resp.usage.input_tokens + resp.usage.output_tokens
    assert after["requests"]["responses"] - before["requests"].get("responses", 0) == 1
    assert after["pdf_pages"] - before["pdf_pages"] == 3 and after["ocr_calls"] - before["ocr_calls"] == 3


def test_custom_prompt_is_combined_with_the_task(emulator, docs_dir, file_server):
    url = file_server.put("invoice.pdf", pdf_of(docs_dir, "paragraph_en", "invoice_zh_en"))
    c = client(emulator)
    task_only = c.responses.create(model=MODEL, input=file_input(url),
                                   extra_body={"ocr_options": {"task": "document_parsing"}})
    prompt = 'Output only this JSON, filled from the document: {"乘车日期": "", "Total Amount": ""}'
    both = c.responses.create(model=MODEL, input=file_input(url, prompt),
                              extra_body={"ocr_options": {"task": "document_parsing"}})
    answer = json.loads(both.output_text.removeprefix("```json").removesuffix("```"))
    assert answer["乘车日期"] == "2013-06-29" and norm(answer["Total Amount"]) == "1,234.56USD"
    assert ocr_result(both)["layouts"] == ocr_result(task_only)["layouts"], "the task still runs, beside the prompt"
    assert both.usage.input_tokens_details.text_tokens > task_only.usage.input_tokens_details.text_tokens


def test_key_information_over_a_whole_pdf_is_one_answer(emulator, docs_dir, file_server):
    url = file_server.put("two.pdf", pdf_of(docs_dir, "paragraph_en", "invoice_zh_en"))
    schema = {"乘车日期": "", "Total Amount": "", "Phone": ""}
    resp = client(emulator).responses.create(model=MODEL, input=file_input(url), extra_body={
        "ocr_options": {"task": "key_information_extraction", "task_config": {"result_schema": schema}}})
    kv = ocr_result(resp)["kv_result"]
    assert kv["乘车日期"] == "2013-06-29" and norm(kv["Total Amount"]) == "1,234.56USD", "found on page 2"
    assert kv["Phone"] is None
    assert json.loads(resp.output_text.removeprefix("```json").removesuffix("```")) == kv


def test_several_images_give_one_result_per_image_in_order(emulator, docs_dir):
    def image(name):
        b64 = base64.b64encode((docs_dir / f"{name}.png").read_bytes()).decode()
        return {"type": "input_image", "image_url": f"data:image/png;base64,{b64}"}

    resp = client(emulator).responses.create(model=MODEL, input=[{"role": "user", "content": [
        image("table_zh_en"), image("paragraph_en")]}])
    layouts = ocr_result(resp)["layouts"]
    assert "Banana" in " ".join(b["text"] for b in layouts if b["pageNum"] == 1)
    assert "Quarterly" in " ".join(b["text"] for b in layouts if b["pageNum"] == 2)
    assert resp.output_text.index("Banana") < resp.output_text.index("Quarterly")


# -- limits and refusals (echo engine: nothing is recognised, the checks are the same) -------------------
@pytest.fixture
def echo(make_emulator):
    return make_emulator(engine="echo")


def test_51_pages_refused_50_accepted(echo, file_server):
    c = client(echo)
    ok = c.responses.create(model=MODEL, input=file_input(file_server.put("p50.pdf", blank_pdf(50))))
    assert sorted({b["pageNum"] for b in ocr_result(ok)["layouts"]}) == list(range(1, 51))
    assert echo.stats()["pdf_pages"] == 50
    message = refused(lambda: c.responses.create(model=MODEL, input=file_input(
        file_server.put("p51.pdf", blank_pdf(51)))))
    assert "51 pages" in message and "at most 50" in message
    stats = echo.stats()
    assert stats["pdf_pages"] == 50 and stats["requests"]["responses"] == 2 and stats["by_status"][400] == 1


def test_pdf_over_100_mb_refused(echo, file_server):
    big = blank_pdf(1) + b"%" + b"0" * (100 * MB)  # a comment after %%EOF: a valid PDF of 100 MB + a few KB
    message = refused(lambda: client(echo).responses.create(model=MODEL, input=file_input(
        file_server.put("big.pdf", big))))
    assert f"the limit is {100 * MB}" in message
    assert echo.stats()["ocr_calls"] == 0


def test_image_limit_is_20_mb_for_qwen35(echo, docs_dir, file_server):
    png = (docs_dir / "paragraph_en.png").read_bytes()
    c = client(echo)

    def ask(name, size):
        url = file_server.put(name, png + b"\0" * (size - len(png)))  # bytes after IEND: still the same PNG
        return c.responses.create(model=MODEL, input=[{"role": "user", "content": [
            {"type": "input_image", "image_url": url}]}])

    assert ask("15mb.png", 15 * MB).status == "completed", "over the 10 MB of the older models, under 20 MB"
    assert str(20 * MB) in refused(lambda: ask("21mb.png", 20 * MB + 1)), "the limit is named"


def test_older_and_unknown_models_refused(echo, file_server):
    c = client(echo)
    url = file_server.put("one.pdf", blank_pdf(1))
    message = refused(lambda: c.responses.create(model="qwen-vl-ocr", input=file_input(url)))
    assert "qwen3.5-ocr" in message
    refused(lambda: c.responses.create(model="qwen-vl-ocr-2025-11-20", input=file_input(url)))
    assert "can not be found" in refused(lambda: c.responses.create(model="qwen-ocr-nope", input=file_input(url)),
                                         status=404, code="model_not_found")
    assert echo.stats()["ocr_calls"] == 0


def test_pdf_through_the_temporary_upload(echo):
    pdf = blank_pdf(3)
    http = httpx.Client(headers={"Authorization": "Bearer sk-test-emulator"}, trust_env=False)
    policy = http.get(echo.native_base + "/uploads", params={"action": "getPolicy", "model": MODEL}).json()["data"]
    key = policy["upload_dir"] + "/contract.pdf"
    up = http.post(policy["upload_host"], data={"key": key, "OSSAccessKeyId": policy["oss_access_key_id"],
                                                "policy": policy["policy"], "signature": policy["signature"]},
                   files={"file": ("contract.pdf", pdf, "application/pdf")})
    assert up.status_code == 200
    c = client(echo)
    resp = c.responses.create(model=MODEL, input=file_input("oss://" + key),
                              extra_headers={"X-DashScope-OssResourceResolve": "enable"},
                              extra_body={"ocr_options": {"task": "document_parsing"}})
    layouts = ocr_result(resp)["layouts"]
    assert [b["pageNum"] for b in layouts] == [1, 2, 3]
    assert len({b["text"] for b in layouts}) == 3, "each page read on its own"
    message = refused(lambda: c.responses.create(model=MODEL, input=file_input("oss://" + key)))
    assert "X-DashScope-OssResourceResolve" in message


def test_inputs_the_documentation_does_not_show_are_refused(echo, file_server):
    c = client(echo)
    png_url = file_server.put("x.png", _png())
    assert "not a PDF" in refused(lambda: c.responses.create(model=MODEL, input=file_input(png_url)))
    inline = {"type": "input_file", "filename": "a.pdf",
              "file_data": "data:application/pdf;base64," + base64.b64encode(blank_pdf(1)).decode()}
    assert "file_data" in refused(lambda: c.responses.create(model=MODEL, input=[{"role": "user", "content": [inline]}]))
    assert "input_image or input_file" in refused(lambda: c.responses.create(model=MODEL, input="hello"))


def test_a_follow_up_question_reads_the_earlier_document(echo, file_server):
    url = file_server.put("two.pdf", blank_pdf(2))
    c = client(echo)
    first = c.responses.create(model=MODEL, input=file_input(url))
    follow = c.responses.create(model=MODEL, input=[
        *file_input(url, "Read the document."),
        {"role": "assistant", "content": [{"type": "output_text", "text": first.output_text}]},
        {"role": "user", "content": [{"type": "input_text", "text": "And page 2 again, please."}]}])
    assert [b["pageNum"] for b in ocr_result(follow)["layouts"]] == [1, 2]
    assert ocr_result(follow)["layouts"] == ocr_result(first)["layouts"]


def test_max_output_tokens_cuts_the_answer(echo, file_server):
    url = file_server.put("five.pdf", blank_pdf(5))
    c = client(echo)
    full = c.responses.create(model=MODEL, input=file_input(url))
    cut = c.responses.create(model=MODEL, input=file_input(url), max_output_tokens=16)
    assert full.status == "completed" and full.usage.output_tokens > 16
    assert cut.status == "incomplete" and cut.incomplete_details.reason == "max_output_tokens"
    assert cut.usage.output_tokens <= 16 and full.output_text.startswith(cut.output_text)
    assert getattr(cut.output[0].content[0], "ocr_result", None) is None


def test_help_names_the_responses_api_and_the_list_filters():
    from qwenocr_emulator.__main__ import build_parser

    text = build_parser().format_help()
    assert "/compatible-mode/v1/responses" in text and "input_file_ids" in text and "pdf_pages" in text


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 32), "white").save(buf, "PNG")
    return buf.getvalue()
