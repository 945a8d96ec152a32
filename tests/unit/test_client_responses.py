"""ResponsesClient (``POST /compatible-mode/v1/responses``) against a scripted loopback stub.

Checks the request body the service documents (reference §10: ``input_image`` / ``input_file`` /
``input_text`` parts, ``ocr_options`` as an extra body field, task combined with a prompt), the answer →
results mapping (``ocr_result.layouts`` → one result per page + the document's), and that the call goes
behind the same policy as the native client: 429 retried, 400/404 permanent, the wall-clock deadline,
the breaker, the limiter's charge and refund, and the key never in a message.
"""

from __future__ import annotations

import json
import time

import pytest

from airflow_provider_qwenocr.dashscope.breaker import CircuitBreaker
from airflow_provider_qwenocr.dashscope.config import ClientConfig
from airflow_provider_qwenocr.dashscope.errors import (
    InvalidApiKeyError,
    PermanentError,
    RetryableError,
    ServiceUnavailableError,
)
from airflow_provider_qwenocr.dashscope.limits import RateLimiter
from airflow_provider_qwenocr.dashscope.responses import FileInput, ResponsesClient
from airflow_provider_qwenocr.ocr.images import prepare_image
from airflow_provider_qwenocr.ocr.models import get_model
from airflow_provider_qwenocr.ocr.request import build_ocr_request
from tests.fixtures.hostile import HostileServer
from tests.unit.dashscope_stub import StubServer
from tests.unit.test_client_realtime import png

KEY = "sk-unit-test-secret-0123456789"
PATH = "/compatible-mode/v1/responses"
MODEL = "qwen3.5-ocr"
LAYOUTS = [
    {"pageNum": 1, "type": "title", "text": "Invoice 42", "markdownContent": "# Invoice 42"},
    {"pageNum": 1, "type": "text", "text": "Seller: ACME", "markdownContent": "Seller: ACME"},
    {"pageNum": 3, "type": "table", "text": "Total 12.50", "markdownContent": "| Total | 12.50 |"},
]


def answer(text="doc text", ocr_result=None, usage=None, status="completed", **extra) -> bytes:
    content = {"type": "output_text", "text": text, "annotations": []}
    if ocr_result is not None:
        content["ocr_result"] = ocr_result
    return json.dumps({
        "id": "resp_1", "object": "response", "status": status, "model": MODEL,
        "output": [{"type": "message", "id": "msg_1", "role": "assistant", "status": status, "content": [content]}],
        "usage": usage or {"input_tokens": 3000, "output_tokens": 40, "total_tokens": 3040,
                           "input_tokens_details": {"image_tokens": 2900}},
        "error": None, **extra,
    }).encode()


def err(code, message="nope"):
    return json.dumps({"error": {"code": code, "message": message, "type": "invalid_request_error"},
                       "request_id": "req-e"}).encode()


@pytest.fixture
def stub():
    srv = StubServer().start()
    srv.respond((200, None, answer(ocr_result={"layouts": LAYOUTS})))
    yield srv
    srv.stop()


def client_for(base_url, **kw) -> ResponsesClient:
    cfg = ClientConfig(api_key=KEY, base_url=base_url, timeout=kw.pop("timeout", 5.0), default_model=MODEL,
                       max_retries=kw.pop("max_retries", 3), max_retry_seconds=30.0,
                       workspace_id=kw.pop("workspace_id", None))
    return ResponsesClient(cfg, sleep=kw.pop("sleep", lambda s: None), **kw)


def test_builtin_task_request_shape_with_images_and_a_document(stub):
    prep = prepare_image(png(), get_model(MODEL))
    doc = client_for(stub.base_url, workspace_id="ws-9").recognize_document(
        [prep, "https://example.com/p2.png", FileInput("oss://dashscope-instant/x/doc.pdf", pages=1)],
        task="document_parsing")
    req = stub.requests[-1]
    assert req["path"] == PATH
    h = req["headers"]
    assert h["Authorization"] == f"Bearer {KEY}" and h["X-DashScope-WorkSpace"] == "ws-9"
    assert h["X-DashScope-OssResourceResolve"] == "enable"  # an oss:// input needs it
    body = req["body"]
    assert body["model"] == MODEL and body["ocr_options"] == {"task": "document_parsing"}
    (message,) = body["input"]
    assert message["role"] == "user"
    assert message["content"] == [
        {"type": "input_image", "image_url": prep.data_url},
        {"type": "input_image", "image_url": "https://example.com/p2.png"},
        {"type": "input_file", "file_url": "oss://dashscope-instant/x/doc.pdf"},
    ]  # no input_text: the task's own prompt is the service's
    assert doc.ok and doc.document.page is None and doc.page_count == 3


def test_no_oss_header_without_an_oss_url(stub):
    client_for(stub.base_url).recognize_document([FileInput("https://example.com/a.pdf")], task="text_recognition")
    assert "X-DashScope-OssResourceResolve" not in stub.requests[-1]["headers"]


def test_task_combined_with_a_prompt(stub):
    schema = {"invoice_no": "", "total": ""}
    stub.respond((200, None, answer(text="The total is 12.50.",
                                    ocr_result={"kv_result": {"invoice_no": "42", "total": "12.50"},
                                                "layouts": LAYOUTS})))
    client = client_for(stub.base_url)
    doc = client.recognize_document([FileInput("https://example.com/inv.pdf", pages=3)],
                                    task="key_information_extraction", result_schema=schema,
                                    prompt="What is the total?")
    body = stub.requests[-1]["body"]
    assert body["ocr_options"] == {"task": "key_information_extraction", "task_config": {"result_schema": schema}}
    assert body["input"][0]["content"][-1] == {"type": "input_text", "text": "What is the total?"}
    assert doc.document.kv == {"invoice_no": "42", "total": "12.50"}  # one answer for the whole document
    assert doc.document.text == "The total is 12.50."  # the prompt's answer
    plain = client.recognize_document([FileInput("https://example.com/inv.pdf", pages=3)],
                                      task="key_information_extraction", result_schema=schema)
    assert plain.document.key != doc.document.key  # the combined prompt is part of the key


def test_custom_prompt_is_input_text_without_ocr_options(stub):
    client_for(stub.base_url).recognize_document(["https://example.com/a.png"], prompt="Read the stamp.")
    body = stub.requests[-1]["body"]
    assert "ocr_options" not in body
    assert body["input"][0]["content"][-1] == {"type": "input_text", "text": "Read the stamp."}


def test_layouts_become_page_results_and_one_document_result(stub):
    doc = client_for(stub.base_url).recognize_document([FileInput("https://example.com/c.pdf")],
                                                       task="document_parsing", source="c.pdf")
    d = doc.document
    assert (d.page, d.source, d.status, d.text, d.finish_reason) == (None, "c.pdf", "ok", "doc text", "stop")
    assert (d.usage.input_tokens, d.usage.output_tokens, d.usage.image_tokens) == (3000, 40, 2900)
    assert d.cost == {"usd": None, "cny": None}  # qwen3.5-ocr's price is unknown: null, never 0
    assert [p.page for p in doc.pages] == [1, 2, 3]
    assert [p.text for p in doc.pages] == ["Invoice 42\nSeller: ACME", "", "Total 12.50"]
    assert doc.page_markdown == ["# Invoice 42\n\nSeller: ACME", "", "| Total | 12.50 |"]
    assert doc.markdown == "# Invoice 42\n\nSeller: ACME\n\n| Total | 12.50 |"
    assert all(p.usage.total_tokens == 0 and p.cost is None for p in doc.pages)  # billed once, on the document
    assert len({p.key for p in doc.pages} | {d.key}) == 4 and all(p.sha256 == d.sha256 for p in doc.pages)


def test_a_priced_model_gets_a_cost(stub, monkeypatch):
    from airflow_provider_qwenocr.ocr import models

    spec = models.ModelSpec(**{**get_model(MODEL).__dict__, "prices": {"cn-beijing": models._PRICE_NEW_CN}})
    monkeypatch.setitem(models.MODELS, MODEL, spec)
    d = client_for(stub.base_url).recognize(FileInput("https://example.com/c.pdf"), task="text_recognition")
    assert d.cost == models._PRICE_NEW_CN.cost(3000, 40)


def test_truncated_answer_reports_length(stub):
    stub.respond((200, None, answer(status="incomplete", incomplete_details={"reason": "max_output_tokens"})))
    d = client_for(stub.base_url).recognize("https://example.com/a.png", max_output_tokens=5,
                                            request=build_ocr_request(model=MODEL))
    assert d.finish_reason == "length" and stub.requests[-1]["body"]["max_output_tokens"] == 5


def test_throttling_is_retried(stub):
    stub.respond((429, None, err("Throttling.RateQuota", "Requests rate limit exceeded")),
                 (200, None, answer()))
    d = client_for(stub.base_url).recognize("https://example.com/a.png")
    assert d.ok and len(stub.requests) == 2


@pytest.mark.parametrize("status,code,cls", [(400, "InvalidParameter", PermanentError),
                                             (400, "invalid_parameter_error", PermanentError),
                                             (404, "model_not_found", PermanentError),
                                             (401, "InvalidApiKey", InvalidApiKeyError)])
def test_permanent_errors_are_not_retried(stub, status, code, cls):
    stub.respond((status, None, err(code, f"bad {KEY}")))
    with pytest.raises(cls) as ei:
        client_for(stub.base_url).recognize("https://example.com/a.png")
    assert ei.value.code == code and ei.value.status_code == status and not ei.value.retryable
    assert KEY not in str(ei.value)  # secret handling: the key is redacted from every message
    assert len(stub.requests) == 1


def test_a_failed_answer_is_an_error(stub):
    stub.respond((200, None, answer(status="failed", error={"code": "InternalError.Algo", "message": "x"})),
                 (200, None, answer()))
    assert client_for(stub.base_url).recognize("https://example.com/a.png").ok  # retried like a 500
    assert len(stub.requests) == 2


def test_models_the_responses_api_does_not_serve_are_refused_before_any_request(stub):
    with pytest.raises(PermanentError, match="not served by the Responses API"):
        client_for(stub.base_url).recognize("https://example.com/a.png", model="qwen-vl-ocr")
    with pytest.raises(PermanentError, match="at most 50"):
        client_for(stub.base_url).recognize(FileInput("https://example.com/big.pdf", pages=51))
    assert stub.requests == []


def test_the_limiter_is_charged_and_refunded(stub):
    lim = RateLimiter(rpm=None, tpm=600_000)
    client_for(stub.base_url, limiter=lim).recognize_document(["https://example.com/a.png"] * 2)
    charged = lim.tokens_acquired
    assert charged >= 2 * 1500 + 2 * 512  # two URL images + the output allowance per page
    assert lim.tokens_refunded == charged - 3040  # usage: 3000 in + 40 out


def test_the_wall_clock_deadline_cuts_a_dripping_peer():
    # a byte every 0.4 s after headers promising 10 kB: a per-read timeout of 1.5 s never fires
    srv = HostileServer("drip", interval=0.4, content_length=10000, prefix=b"{")
    client = client_for(srv.base_url, timeout=1.5, max_retries=0,
                        breaker=CircuitBreaker(failures=0))
    started = time.monotonic()
    try:
        with pytest.raises(RetryableError) as ei:
            client.recognize("https://example.com/a.png")
    finally:
        elapsed = time.monotonic() - started
        srv.stop()
        client.close()
    assert ei.value.code == "RequestTimeOut" and "deadline" in ei.value.message
    assert 1.3 <= elapsed <= 5.0, elapsed


def test_the_breaker_opens_on_an_unreachable_service():
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    client = client_for(f"http://127.0.0.1:{port}", max_retries=50, breaker=CircuitBreaker(failures=3))
    with pytest.raises(ServiceUnavailableError):
        client.recognize("https://example.com/a.png")
    assert client.calls == 3
    assert KEY not in repr(client)


def test_an_answer_without_layouts_is_the_document_alone(stub):
    stub.respond((200, None, answer(text="two pages of text")))
    doc = client_for(stub.base_url).recognize_document(["https://example.com/1.png", "https://example.com/2.png"])
    assert doc.document.text == "two pages of text" and doc.document.source.startswith("sha256:")
    assert doc.pages == [] and doc.markdown is None
