"""RealtimeClient through the real dashscope SDK against a scripted loopback stub.

Checks the request shape (as the recordings), the response → OcrResult mapping (boxes scaled back to the
original image, usage, cost, idempotency key), typed errors, bounded retries, per-call base URLs that do
not interfere across threads, and that the API key never shows up in logs, errors or rows.
"""

from __future__ import annotations

import io
import json
import logging
import threading

import pytest
from PIL import Image

from airflow_provider_qwenocr.dashscope.config import ClientConfig
from airflow_provider_qwenocr.dashscope.errors import InvalidApiKeyError, PermanentError, RetryableError
from airflow_provider_qwenocr.dashscope.realtime import RealtimeClient, request_key
from airflow_provider_qwenocr.ocr.images import prepare_image
from airflow_provider_qwenocr.ocr.models import get_model
from tests.unit.dashscope_stub import StubServer, error_body, ok_body, recorded

KEY = "sk-unit-test-secret-0123456789"
NATIVE_PATH = "/api/v1/services/aigc/multimodal-generation/generation"


@pytest.fixture
def stub():
    srv = StubServer().start()
    yield srv
    srv.stop()


def make_client(base_url, **kw):
    cfg = ClientConfig(api_key=KEY, base_url=base_url, timeout=kw.pop("timeout", 5.0),
                       max_retries=kw.pop("max_retries", 3), max_retry_seconds=kw.pop("max_retry_seconds", 30.0),
                       workspace_id=kw.pop("workspace_id", None))
    return RealtimeClient(cfg, sleep=lambda s: None, **kw)


def png(w=200, h=100, color="white"):
    buf = io.BytesIO()
    Image.new("RGB", (w, h), color).save(buf, "PNG")
    return buf.getvalue()


def test_builtin_task_request_shape(stub):
    client = make_client(stub.base_url, workspace_id="ws-1")
    prep = prepare_image(png(), get_model("qwen-vl-ocr"))
    res = client.recognize(prep, task="text_recognition", min_pixels=3072, max_pixels=100_000, enable_rotate=True,
                           source="a.png")
    assert res.status == "ok" and res.text == "hello"
    req = stub.requests[-1]
    assert req["path"] == NATIVE_PATH
    assert req["headers"]["Authorization"] == f"Bearer {KEY}"
    assert req["headers"]["X-DashScope-WorkSpace"] == "ws-1"
    body = req["body"]
    assert body["model"] == "qwen-vl-ocr"
    assert body["parameters"]["ocr_options"] == {"task": "text_recognition"}
    content = body["input"]["messages"][0]["content"]
    assert len(content) == 1  # built-in tasks carry no text item (as the recordings)
    item = content[0]
    assert item["image"].startswith("data:image/")
    assert (item["min_pixels"], item["max_pixels"], item["enable_rotate"]) == (3072, 100_000, True)


def test_custom_prompt_request_shape_and_json(stub):
    stub.respond((200, None, ok_body('```json\n{"total": "12.50"}\n```')))
    client = make_client(stub.base_url)
    res = client.recognize(prepare_image(png(), get_model(None)), task="custom", prompt="Read the total as JSON")
    body = stub.requests[-1]["body"]
    assert "ocr_options" not in (body.get("parameters") or {})
    assert body["input"]["messages"][0]["content"][1] == {"text": "Read the total as JSON"}
    assert "min_pixels" not in body["input"]["messages"][0]["content"][0]
    assert res.task == "custom" and res.kv == {"total": "12.50"}


def test_kie_schema_and_recorded_response(stub):
    stub.respond(recorded("multimodal-generation-vl-ocr-key-information-extraction-nosse"))
    schema = {"发票": {"发票代码": "code", "发票号码": "number"}, "乘车日期": "date"}
    client = make_client(stub.base_url)
    res = client.recognize("https://example.invalid/receipt.jpg", task="key_information_extraction",
                           result_schema=schema, model="qwen-vl-ocr-latest")
    opts = stub.requests[-1]["body"]["parameters"]["ocr_options"]
    assert opts == {"task": "key_information_extraction", "task_config": {"result_schema": schema}}
    assert stub.requests[-1]["body"]["input"]["messages"][0]["content"][0]["image"] == \
        "https://example.invalid/receipt.jpg"
    recorded_body = json.loads(recorded("multimodal-generation-vl-ocr-key-information-extraction-nosse")[2])
    kv = recorded_body["output"]["choices"][0]["message"]["content"][0]["ocr_result"]["kv_result"]
    assert res.kv == kv
    assert res.request_id == recorded_body["request_id"]
    assert res.usage.input_tokens == recorded_body["usage"]["input_tokens"]
    assert res.cost["usd"] > 0


def test_advanced_recognition_boxes_scaled_to_original(stub):
    # The service reports boxes on the image it received (ours, resized to the grid): map them back.
    word = {"text": "HI", "location": [10, 20, 110, 20, 110, 60, 10, 60], "rotate_rect": [60, 40, 100, 40, 0]}
    stub.respond((200, None, ok_body("HI", ocr_result={"words_info": [word]})))
    spec = get_model("qwen-vl-ocr")
    prep = prepare_image(png(2000, 1000), spec, max_pixels=32 * 32 * 200)
    assert prep.sent_width < prep.width  # really resized
    res = make_client(stub.base_url).recognize(prep, task="advanced_recognition", max_pixels=32 * 32 * 200)
    loc = res.words[0].location
    assert loc[2] == round(110 * prep.scale_x) and loc[5] == round(60 * prep.scale_y)
    assert (res.width, res.height) == (2000, 1000)


def test_local_path_is_prepared_not_uploaded(stub, tmp_path):
    path = tmp_path / "page.png"
    path.write_bytes(png(300, 200))
    res = make_client(stub.base_url).recognize(str(path))
    assert res.source == str(path) and (res.width, res.height) == (300, 200)
    assert [r["path"] for r in stub.requests] == [NATIVE_PATH]  # no getPolicy / OSS upload round trip
    assert stub.requests[0]["body"]["input"]["messages"][0]["content"][0]["image"].startswith("data:image/")


def test_old_snapshot_gets_the_fixed_prompt(stub):
    client = make_client(stub.base_url)
    client.recognize(prepare_image(png(), get_model("qwen-vl-ocr-2024-10-28")), task="table_parsing",
                     model="qwen-vl-ocr-2024-10-28")
    body = stub.requests[-1]["body"]
    assert "ocr_options" not in (body.get("parameters") or {})
    assert "<tr>" in body["input"]["messages"][0]["content"][1]["text"]


def test_idempotency_key_depends_on_params(stub):
    client = make_client(stub.base_url)
    prep = prepare_image(png(), get_model(None))
    a = client.recognize(prep, task="text_recognition")
    b = client.recognize(prep, task="text_recognition")
    c = client.recognize(prep, task="text_recognition", max_pixels=50_000)
    d = client.recognize(prep, task="table_parsing")
    assert a.key == b.key == request_key(prep.sha256, "text_recognition", "qwen-vl-ocr")
    assert len({a.key, c.key, d.key}) == 3
    assert a.sha256 == prep.sha256


def test_retryable_errors_are_retried_then_succeed(stub):
    stub.respond((429, None, error_body("Throttling.RateQuota", "Requests rate limit exceeded")),
                 (500, None, error_body("InternalError", "oops")),
                 (200, None, ok_body("done")))
    client = make_client(stub.base_url)
    res = client.recognize(prepare_image(png(), get_model(None)))
    assert res.text == "done"
    assert len(stub.requests) == 3


def test_retries_are_bounded(stub):
    stub.respond((503, {"content-type": "text/plain"}, b"unavailable"))
    client = make_client(stub.base_url, max_retries=2)
    with pytest.raises(RetryableError) as ei:
        client.recognize(prepare_image(png(), get_model(None)))
    assert ei.value.status_code == 503
    assert len(stub.requests) == 3  # first try + 2 retries


def test_retry_after_hint_is_honoured(stub):
    slept = []
    stub.respond((429, {"content-type": "application/json", "Retry-After": "7"}, error_body("Throttling", "x")),
                 (200, None, ok_body()))
    cfg = ClientConfig(api_key=KEY, base_url=stub.base_url, max_retries=2)
    RealtimeClient(cfg, sleep=slept.append).recognize(prepare_image(png(), get_model(None)))
    assert slept and slept[0] >= 7


@pytest.mark.parametrize("code", ["InvalidParameter", "DataInspectionFailed", "Arrearage"])
def test_permanent_errors_are_not_retried(stub, code):
    stub.respond((400, None, error_body(code, "no")))
    with pytest.raises(PermanentError) as ei:
        make_client(stub.base_url).recognize(prepare_image(png(), get_model(None)))
    assert ei.value.code == code and not isinstance(ei.value, InvalidApiKeyError)
    assert len(stub.requests) == 1


def test_recorded_invalid_key_stops_at_once(stub):
    stub.respond(recorded("auth-error-nosse"))
    with pytest.raises(InvalidApiKeyError) as ei:
        make_client(stub.base_url).recognize(prepare_image(png(), get_model(None)))
    assert ei.value.code == "InvalidApiKey" and ei.value.request_id
    assert len(stub.requests) == 1


def test_timeout_is_retryable(stub):
    stub.delay = 0.5
    client = make_client(stub.base_url, timeout=0.1, max_retries=1)
    with pytest.raises(RetryableError) as ei:
        client.recognize(prepare_image(png(), get_model(None)))
    assert ei.value.code == "RequestTimeOut"


def test_connection_refused_is_retryable():
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    client = make_client(f"http://127.0.0.1:{port}", max_retries=1)
    with pytest.raises(RetryableError):
        client.recognize(prepare_image(png(), get_model(None)))


def test_two_clients_with_different_base_urls_in_threads():
    import dashscope

    before = dashscope.base_http_api_url
    a, b = StubServer().start(), StubServer().start()
    try:
        a.respond((200, None, ok_body("from-a")))
        b.respond((200, None, ok_body("from-b")))
        ca, cb = make_client(a.base_url), make_client(b.base_url)
        prep = prepare_image(png(), get_model(None))
        out: dict[str, list[str]] = {"a": [], "b": []}

        def run(name, client):
            for _ in range(15):
                out[name].append(client.recognize(prep).text)

        threads = [threading.Thread(target=run, args=("a", ca)), threading.Thread(target=run, args=("b", cb))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert out["a"] == ["from-a"] * 15 and out["b"] == ["from-b"] * 15
        assert len(a.requests) == 15 and len(b.requests) == 15
        assert dashscope.base_http_api_url == before  # the SDK global was never touched
    finally:
        a.stop(), b.stop()


def test_key_never_in_logs_errors_or_rows(stub, caplog):
    caplog.set_level(logging.DEBUG)
    stub.respond((429, None, error_body("Throttling", f"echo {KEY}")),
                 (400, None, error_body("InvalidParameter", f"bad key {KEY}")))
    client = make_client(stub.base_url)
    prep = prepare_image(png(), get_model(None))
    with pytest.raises(PermanentError) as ei:
        client.recognize(prep)
    assert KEY not in str(ei.value) and KEY not in repr(ei.value)
    stub.respond((200, None, ok_body("fine")))
    row = client.recognize(prep).to_json()
    assert KEY not in row
    assert KEY not in repr(client) and KEY not in repr(client.config)
    assert any("retrying" in r.getMessage() for r in caplog.records)  # we did log the retry …
    assert all(KEY not in r.getMessage() for r in caplog.records)  # … without the key


def test_limiter_is_consulted_per_attempt(stub):
    from airflow_provider_qwenocr.dashscope.limits import RateLimiter

    stub.respond((500, None, error_body("InternalError", "x")), (200, None, ok_body()))
    lim = RateLimiter(rpm=None, tpm=None)
    client = make_client(stub.base_url, limiter=lim)
    prep = prepare_image(png(), get_model(None))
    client.recognize(prep)
    assert lim.acquired == 2  # the retry of a served request is a new request: it waits for the budget
    per_call = lim.tokens_acquired // 2  # image tokens (smart_resize) + prompt + output allowance
    assert lim.tokens_acquired % 2 == 0 and per_call > prep.tokens + 512


def test_retry_after_throttling_reuses_its_slot(stub):
    from airflow_provider_qwenocr.dashscope.limits import RateLimiter

    stub.respond((429, None, error_body("Throttling.RateQuota", "x")), (429, None, error_body("Throttling", "y")),
                 (200, None, ok_body()))
    lim = RateLimiter(rpm=None, tpm=None)
    make_client(stub.base_url, limiter=lim).recognize(prepare_image(png(), get_model(None)))
    assert len(stub.requests) == 3
    assert lim.acquired == 1  # a throttled request consumed no quota: its retries reuse the slot


@pytest.mark.parametrize("name", ["multimodal-generation-vl-ocr-key-information-extraction-nosse",
                                  "multimodal-generation-vl-ocr-advanced-recognition-nosse"])
def test_request_body_matches_the_recording(stub, name):
    """Same image URL, model, task and schema as a recorded real request → the same JSON body."""
    from tests.unit.dashscope_stub import RECORDINGS

    want = json.loads((RECORDINGS / f"{name}.request.body.json").read_text())
    item = want["input"]["messages"][0]["content"][0]
    opts = want["parameters"]["ocr_options"]
    schema = (opts.get("task_config") or {}).get("result_schema")
    make_client(stub.base_url).recognize(item["image"], task=opts["task"], result_schema=schema,
                                         model=want["model"])
    got = stub.requests[-1]["body"]
    assert got["model"] == want["model"]
    assert got["input"] == want["input"]
    assert got["parameters"]["ocr_options"] == want["parameters"]["ocr_options"]
    assert stub.requests[-1]["path"] == NATIVE_PATH


def test_unknown_model_is_accepted_and_its_cost_is_unknown(stub, caplog):
    caplog.set_level(logging.WARNING)
    client = make_client(stub.base_url)
    res = client.recognize(prepare_image(png(), get_model("qwen-ocr-from-the-future")), model="qwen-ocr-from-the-future")
    assert res.status == "ok" and res.usage.input_tokens == 100
    assert res.cost == {"usd": None, "cny": None}  # never another model's price
    assert stub.requests[-1]["body"]["model"] == "qwen-ocr-from-the-future"
    assert sum("qwen-ocr-from-the-future" in r.getMessage() for r in caplog.records) == 1  # warned once


def test_the_client_returns_the_finished_row_its_identity_and_its_regions_cost(stub):
    """The run hands the client the plan's identity; the row comes back finished (source, sha256, key, page,
    usage, cost at the model's price in the connection's region) and nobody rewrites it."""
    from airflow_provider_qwenocr.ocr.plan import plan_bytes
    from airflow_provider_qwenocr.ocr.request import build_ocr_request

    request = build_ocr_request()
    ident = plan_bytes("/in/doc.pdf#page=2", png(), request, page=2).identity
    cfg = ClientConfig(api_key=KEY, base_url=stub.base_url, region="ap-southeast-1", max_retries=0)
    with RealtimeClient(cfg, sleep=lambda s: None) as client:
        res = client.recognize(request.prepare(png()), request=request, identity=ident)
    assert (res.source, res.sha256, res.key, res.page) == (ident.source, ident.sha256, ident.key, 2)
    intl = request.spec.price("ap-southeast-1").cost(res.usage.input_tokens, res.usage.output_tokens)
    assert res.cost == intl != request.spec.price("cn-beijing").cost(res.usage.input_tokens, res.usage.output_tokens)
