"""Our parsers and classifier against public material, not against ourselves.

Every case comes from ``tests/data/public/`` (see its ``SOURCES.md``) or the recorded exchanges in
``tests/data/recordings/``: the official guide's example responses for every built-in task in native and
compatible form, the live error bodies, and Batch output / error lines. Each goes through the client's
own code path — the dashscope SDK and :class:`RealtimeClient` against a loopback stub for native answers
and errors, the Batch result parser for compatible answers, the ``openai`` SDK for compatible errors —
and the fields it yields (text, words, kv, html, latex, usage, cost; class, code, message, request_id)
are compared with values written down from the source. Prices in the expectations are the documented
list prices (reference §1), typed in here, not read from the catalogue.
"""

from __future__ import annotations

import json
import math

import pytest

from airflow_provider_qwenocr.dashscope.batch import BatchClient
from airflow_provider_qwenocr.dashscope.batch_jsonl import ManifestEntry
from airflow_provider_qwenocr.dashscope.batch_results import index_lines, line_error, results_for
from airflow_provider_qwenocr.dashscope.config import ClientConfig
from airflow_provider_qwenocr.dashscope.errors import (
    AccountError,
    PermanentError,
    QwenOcrError,
    RetryableError,
    from_openai_error,
)
from airflow_provider_qwenocr.dashscope.realtime import RealtimeClient, response_error
from airflow_provider_qwenocr.ocr.results import add_cost, new_cost_total
from tests.conftest_paths import PUBLIC, RECORDINGS
from tests.unit.dashscope_stub import StubServer

KEY = "sk-fidelity-test-0123456789"
JSON = {"content-type": "application/json"}
# Documented Beijing list prices per token (reference §1): $0.043 / $0.072 and CNY 0.3 / 0.5 per 1M tokens.
USD_IN, USD_OUT, CNY_IN, CNY_OUT = 0.043e-6, 0.072e-6, 0.3e-6, 0.5e-6


def _resolve(body):
    if isinstance(body, dict) and "$recording" in body:
        return json.loads((RECORDINGS / f"{body['$recording']}.response.body.txt").read_text(encoding="utf-8"))
    return body


def _load(name: str, key: str) -> list[dict]:
    return json.loads((PUBLIC / name).read_text(encoding="utf-8"))[key]


TASK_CASES = _load("task_examples.json", "cases")
ERROR_CASES = _load("error_bodies.json", "errors")
BUILTIN_TASKS = {"text_recognition", "multi_lan", "table_parsing", "document_parsing", "formula_recognition",
                 "key_information_extraction", "advanced_recognition"}


@pytest.fixture(scope="module")
def stub():
    srv = StubServer().start()
    yield srv
    srv.stop()


def _client(stub) -> RealtimeClient:
    cfg = ClientConfig(api_key=KEY, base_url=stub.base_url, max_retries=0, max_retry_seconds=1.0, timeout=10.0)
    return RealtimeClient(cfg, sleep=lambda s: None)


def _expected_cost(model: str, inp: int, out: int, *, batch: bool) -> dict:
    if model == "qwen3.5-ocr":
        return {"usd": None, "cny": None}  # no published price (reference §9)
    f = 0.5 if batch else 1.0
    return {"usd": (inp * USD_IN + out * USD_OUT) * f, "cny": (inp * CNY_IN + out * CNY_OUT) * f}


def _run_native(stub, case: dict):
    stub.respond((200, JSON, json.dumps(_resolve(case["body"]), ensure_ascii=False).encode()))
    with _client(stub) as client:
        return client.recognize("https://example.invalid/doc.png", task=case["task"], model=case["model"],
                                result_schema=case.get("result_schema"))


def _run_compatible(case: dict):
    width, height = case.get("image_size") or (None, None)
    entry = ManifestEntry(custom_id="1", source="doc.png", task=case["task"], model=case["model"],
                          width=width, height=height)
    line = {"id": "line-1", "custom_id": "1",
            "response": {"status_code": 200, "request_id": "req-line-1", "body": case["body"]}, "error": None}
    (row,) = results_for([entry], index_lines(json.dumps(line, ensure_ascii=False)))
    return row


def test_every_builtin_task_has_a_native_and_a_compatible_example():
    forms = {(c["task"], c["form"]) for c in TASK_CASES}
    assert {t for t, f in forms if f == "native"} == BUILTIN_TASKS
    assert {t for t, f in forms if f == "compatible"} == BUILTIN_TASKS
    kie = [c for c in TASK_CASES if c["task"] == "key_information_extraction"]
    assert {bool(c.get("result_schema")) for c in kie} == {True, False}  # with and without a schema


@pytest.mark.parametrize("case", TASK_CASES, ids=[c["id"] for c in TASK_CASES])
def test_official_example_through_our_parsers(stub, case):
    exp = case["expect"]
    row = _run_native(stub, case) if case["form"] == "native" else _run_compatible(case)
    assert row.status == "ok", row.error
    if "text" in exp:
        assert row.text == exp["text"]
    if "text_startswith" in exp:
        assert row.text.startswith(exp["text_startswith"])
    if "html" in exp:
        assert row.html == exp["html"]
    if "latex" in exp:
        assert row.latex == exp["latex"]
    if "kv" in exp:
        assert row.kv == exp["kv"]
    if "finish_reason" in exp:
        assert row.finish_reason == exp["finish_reason"]
    if "request_id" in exp:
        assert row.request_id == exp["request_id"]
    if "words" in exp:
        assert [{"text": w.text, "location": w.location, "rotate_rect": w.rotate_rect} for w in row.words] == exp["words"]
    if "n_words" in exp:
        assert len(row.words) == exp["n_words"] and all(len(w.location) == 8 for w in row.words)
    if exp.get("words_equal_words_info"):
        truth = _resolve(case["body"])["output"]["choices"][0]["message"]["content"][0]["ocr_result"]["words_info"]
        assert [(w.text, w.location, w.rotate_rect) for w in row.words] == [
            (t["text"], t["location"], t["rotate_rect"]) for t in truth]
    if "near_capture_words_info" in exp:  # the text block's 0–1000 boxes land on the native answer's pixels
        capture = json.loads((RECORDINGS / "multimodal-generation-vl-ocr-advanced-recognition-nosse.response.body.txt")
                             .read_text(encoding="utf-8"))
        truth = capture["output"]["choices"][0]["message"]["content"][0]["ocr_result"]["words_info"]
        tol = exp["near_capture_words_info"]
        for word, t in zip(row.words, truth, strict=True):
            assert word.text == t["text"] and max(abs(a - b) for a, b in zip(word.location, t["location"], strict=True)) <= tol
    if exp.get("same_boxes"):
        assert row.words[0].location == row.words[1].location and row.words[0].rotate_rect == row.words[1].rotate_rect
    if "corners_x" in exp:
        assert sorted(set(row.words[0].location[0::2])) == exp["corners_x"]
        assert sorted(set(row.words[0].location[1::2])) == exp["corners_y"]
    if "usage" in exp:
        u = row.usage
        assert [u.input_tokens, u.output_tokens, u.image_tokens, u.total_tokens] == exp["usage"]
    want = _expected_cost(case["model"], row.usage.input_tokens, row.usage.output_tokens,
                          batch=case["form"] == "compatible")
    if "cost" in exp:
        assert exp["cost"] is None and want == {"usd": None, "cny": None}
    for cur in ("usd", "cny"):
        if want[cur] is None:
            assert row.cost[cur] is None
        else:
            assert math.isclose(row.cost[cur], want[cur], rel_tol=1e-9, abs_tol=5.1e-9), (cur, row.cost, want)  # rows round to 1e-8


def _sse(frame: dict, http_status: int) -> bytes:
    """The recorded stream's first result frame, then the error frame as reference §3 describes it."""
    first = (RECORDINGS / "multimodal-generation-vl-ocr-sse.response.body.txt").read_text(encoding="utf-8").split("\n\n")[0]
    return (f"{first}\n\nid:2\nevent:error\n:HTTP_STATUS/{http_status}\ndata:"
            f"{json.dumps(frame, ensure_ascii=False)}\n\n").encode()


def _native_error(stub, case) -> QwenOcrError:
    body = _resolve(case["body"])
    raw = body.encode() if isinstance(body, str) else json.dumps(body, ensure_ascii=False).encode()
    stub.respond((case["http_status"], JSON if not isinstance(body, str) else {"content-type": "text/plain"}, raw))
    with _client(stub) as client, pytest.raises(QwenOcrError) as info:
        client.recognize("https://example.invalid/doc.png")
    return info.value


def _sse_error(stub, case) -> QwenOcrError:
    from dashscope import MultiModalConversation

    stub.respond((200, {"content-type": "text/event-stream;charset=UTF-8"}, _sse(case["body"], case["http_status"])))
    responses = list(MultiModalConversation.call(
        model="qwen-vl-ocr", messages=[{"role": "user", "content": [{"image": "https://example.invalid/a.png"}]}],
        api_key=KEY, stream=True, base_address=f"{stub.base_url}/api/v1"))
    assert response_error(responses[0]) is None  # the result frame before it is an answer
    err = response_error(responses[-1], secret=KEY)
    assert err is not None
    return err


def _compatible_error(stub, case) -> QwenOcrError:
    import openai

    stub.respond((case["http_status"], JSON, json.dumps(_resolve(case["body"]), ensure_ascii=False).encode()))
    cfg = ClientConfig(api_key=KEY, base_url=stub.base_url, max_retries=0, timeout=10.0)
    with pytest.raises(openai.APIStatusError) as info:
        BatchClient(cfg, check_region=False).create_batch("file-batch-x")
    typed = from_openai_error(info.value, secret=KEY)
    assert typed is not None
    return typed


CLASSES = {"retryable": RetryableError, "per-image": PermanentError, "account": AccountError}


@pytest.mark.parametrize("case", ERROR_CASES, ids=[c["id"] for c in ERROR_CASES])
def test_live_error_body_through_the_classifier(stub, case):
    kind = "sse" if case["sse"] else case["id"].split("/")[0]
    err = {"native": _native_error, "sse": _sse_error, "compatible": _compatible_error}[kind](stub, case)
    exp = case["expect"]
    assert isinstance(err, CLASSES[exp["class"]]), (type(err), exp)
    if exp["class"] == "per-image":
        assert not isinstance(err, AccountError) and not err.retryable
    assert err.retryable is (exp["class"] == "retryable")
    assert err.code == exp["code"]
    assert err.message == exp["message"]
    assert err.request_id == exp["request_id"]
    assert err.status_code == case["http_status"]  # an SSE frame's :HTTP_STATUS, not the stream's 200
    if exp["class"] == "account":
        assert err.hint  # says what to fix


def test_error_classes_cover_every_kind():
    assert {c["expect"]["class"] for c in ERROR_CASES} == set(CLASSES)
    assert {c["sse"] for c in ERROR_CASES} == {True, False}


def _manifest(ids, task="custom", model="qwen-vl-ocr"):
    return [ManifestEntry(custom_id=i, source=f"doc-{i}.png", task=task, model=model) for i in ids]


def test_recorded_batch_output_lines():
    """The April 2026 capture of an output file: chat.completion bodies; its model (qwen-flash) is not an
    OCR model this catalogue prices, so the cost is unknown (null) — never another model's price."""
    content = (RECORDINGS / "get-file-content-compatible-nosse.response.body.txt").read_text(encoding="utf-8")
    raw = [json.loads(line) for line in content.splitlines() if line.strip()]
    rows = list(results_for(_manifest(["1", "2"], model="qwen-flash"), index_lines(content)))
    assert [r.status for r in rows] == ["ok", "ok"]
    for row, line in zip(rows, raw, strict=True):
        body = line["response"]["body"]
        assert row.text == body["choices"][0]["message"]["content"]
        assert row.request_id == line["response"]["request_id"] and row.model == body["model"] == "qwen-flash"
        assert (row.usage.input_tokens, row.usage.output_tokens, row.usage.total_tokens) == (
            body["usage"]["prompt_tokens"], body["usage"]["completion_tokens"], body["usage"]["total_tokens"])
        assert row.cost == {"usd": None, "cny": None}
    total = new_cost_total()
    for row in rows:
        add_cost(total, row.cost)
    assert total == {"usd": None, "cny": None, "unknown_rows": 2}


BATCH_ERRORS = {  # custom_id: (class, code, message, request_id)
    "2": (PermanentError, "InvalidParameter", "The image length and width do not meet the model restrictions.",
          "9a1e0c6e-0000-4000-8000-000000000001"),
    "3": (RetryableError, "Throttling.AllocationQuota", "Allocated quota exceeded, please increase your quota limit.",
          "9a1e0c6e-0000-4000-8000-000000000002"),
    "4": (RetryableError, "HTTP500", None, "9a1e0c6e-0000-4000-8000-000000000003"),
}


@pytest.mark.parametrize("custom_id", sorted(BATCH_ERRORS))
def test_batch_error_line_through_the_batch_parser_and_classifier(custom_id):
    content = (PUBLIC / "batch_error_lines.jsonl").read_text(encoding="utf-8")
    lines = index_lines(content)
    cls, code, message, request_id = BATCH_ERRORS[custom_id]
    err = line_error(lines[custom_id])
    assert type(err) is cls and err.code == code and err.request_id == request_id
    if message is not None:
        assert err.message == message
    (row,) = results_for(_manifest([custom_id], task="text_recognition"), lines)
    assert row.status == "error" and row.error.code == code and row.request_id == request_id
    assert row.cost is None and row.usage.total_tokens == 0  # only successful requests are billed


def test_request_absent_from_both_files_is_not_processed():
    rows = list(results_for(_manifest(["9"]), index_lines((PUBLIC / "batch_error_lines.jsonl").read_text())))
    assert rows[0].status == "error" and rows[0].error.code == "NotProcessed"
