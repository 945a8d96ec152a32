"""Every shape the service writes errors in goes through one classifier.

Native bodies, compatible-mode ``{"error": {...}}`` bodies (and the ``openai`` SDK's exceptions for them),
Batch error-file lines, and an ``event:error`` frame inside an SSE stream (HTTP 200 outside; the SDK's
own stream parser turns it into a response object, which :func:`response_error` maps).
"""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from airflow_provider_qwenocr.dashscope.batch import is_transient_error
from airflow_provider_qwenocr.dashscope.batch_results import line_error
from airflow_provider_qwenocr.dashscope.config import ClientConfig
from airflow_provider_qwenocr.dashscope.errors import (
    AccountError,
    PermanentError,
    RetryableError,
    classify_body,
    error_fields,
    from_openai_error,
)
from airflow_provider_qwenocr.dashscope.realtime import RealtimeClient, response_error
from tests.unit.dashscope_stub import RECORDINGS, StubServer

SSE_HEADERS = {"content-type": "text/event-stream;charset=UTF-8"}


def sse_with_error_frame(code: str, message: str, http_status: int) -> bytes:
    """The recorded stream's first two result frames, then an error frame built as reference §3 describes."""
    frames = (RECORDINGS / "multimodal-generation-vl-ocr-sse.response.body.txt").read_text().split("\n\n")[:2]
    data = json.dumps({"code": code, "message": message, "request_id": "6aaa3c55-err"})
    frames.append(f"id:3\nevent:error\n:HTTP_STATUS/{http_status}\ndata:{data}")
    return ("\n\n".join(frames) + "\n\n").encode()


@pytest.fixture
def stub():
    srv = StubServer().start()
    yield srv
    srv.stop()


def streamed(stub, body: bytes) -> list:
    from dashscope import MultiModalConversation

    stub.respond((200, SSE_HEADERS, body))
    return list(MultiModalConversation.call(
        model="qwen-vl-ocr", messages=[{"role": "user", "content": [{"image": "https://x/a.png"}]}],
        api_key="sk-test-0000", stream=True, base_address=f"{stub.base_url}/api/v1"))


def test_sse_throttling_frame_maps_to_a_retryable_429(stub):
    responses = streamed(stub, sse_with_error_frame("Throttling.RateQuota",
                                                    "Requests rate limit exceeded, please try again later.", 429))
    assert [r.status_code for r in responses[:2]] == [200, 200]
    assert [response_error(r) for r in responses[:2]] == [None, None]  # result frames are answers
    err = response_error(responses[2])
    assert isinstance(err, RetryableError) and err.code == "Throttling.RateQuota"
    assert err.status_code == 429 and err.request_id == "6aaa3c55-err"
    assert responses[2].status_code == 400  # what the SDK itself reports for any error frame


def test_sse_account_frame_stops_the_task(stub):
    responses = streamed(stub, sse_with_error_frame("PrepaidBillOverdue", "The prepaid bill is overdue.", 429))
    err = response_error(responses[-1])
    assert isinstance(err, AccountError) and not err.retryable and "top up" in err.hint


def test_a_stream_throttle_is_retried_like_a_429_and_not_charged_again(stub):
    throttled = streamed(stub, sse_with_error_frame("Throttling.RateQuota", "slow down", 429))[-1]
    client = RealtimeClient(ClientConfig(api_key="sk-test-0000", base_url=stub.base_url, max_retries=3),
                            sleep=lambda s: None)
    attempts: list[bool] = []

    def once(model, messages, options, tokens, *, charge=True):
        attempts.append(charge)
        if len(attempts) == 1:
            raise response_error(throttled)
        return "answer"

    client._call_once = once
    assert client.call("qwen-vl-ocr", []) == "answer"
    assert attempts == [True, False]  # retried once; the retry reuses the throttled request's slot


@pytest.mark.parametrize("status,body,cls,code", [
    (429, {"error": {"code": "Throttling.RateQuota", "message": "Requests rate limit exceeded"}}, RetryableError,
     "Throttling.RateQuota"),
    (429, {"error": {"code": "Throttling.BurstRate", "message": "burst"}}, RetryableError, "Throttling.BurstRate"),
    (429, {"error": {"code": "PrepaidBillOverdue", "message": "overdue"}}, AccountError, "PrepaidBillOverdue"),
    (403, {"error": {"code": "AllocationQuota.FreeTierOnly", "message": "free tier"}}, AccountError,
     "AllocationQuota.FreeTierOnly"),
    (404, {"error": {"code": "model_not_found", "message": "Model can not be found."}}, PermanentError,
     "model_not_found"),
    (400, {"error": {"message": "'purpose' must be 'file-extract'", "type": "invalid_request_error",
                     "param": "purpose", "code": None}}, PermanentError, "invalid_request_error"),
    (500, {"error": {"code": "InternalError", "message": "oops"}}, RetryableError, "InternalError"),
    (400, {"code": "Arrearage", "message": "Access denied", "request_id": "r1"}, AccountError, "Arrearage"),
])
def test_compatible_and_native_bodies(status, body, cls, code):
    err = classify_body(status, body)
    assert type(err) is cls and err.code == code and err.status_code == status
    assert classify_body(status, json.dumps(body)).code == code  # raw JSON text too


def test_error_fields_of_every_shape():
    assert error_fields({"code": "InvalidApiKey", "message": "m", "request_id": "r"}) == ("InvalidApiKey", "m", "r")
    assert error_fields({"error": {"code": None, "type": "t", "message": "m"}}) == ("t", "m", None)
    line = {"custom_id": "1", "response": {"status_code": 400, "request_id": "r2",
                                           "body": {"error": {"code": "InvalidParameter", "message": "bad"}}}}
    assert error_fields(line) == ("InvalidParameter", "bad", "r2")
    assert error_fields(b"not json") == (None, "not json", None)


def _openai_status_error(status: int, body: dict) -> openai.APIStatusError:
    request = httpx.Request("POST", "http://127.0.0.1/compatible-mode/v1/batches")
    response = httpx.Response(status, json=body, request=request, headers={"x-request-id": "req-oa"})
    cls = {429: openai.RateLimitError, 404: openai.NotFoundError, 403: openai.PermissionDeniedError}.get(
        status, openai.APIStatusError)
    return cls(body["error"]["message"], response=response, body=body["error"])


def test_openai_sdk_errors_go_through_the_same_table():
    billing = _openai_status_error(429, {"error": {"code": "PostpaidBillOverdue", "message": "overdue"}})
    throttled = _openai_status_error(429, {"error": {"code": "Throttling.RateQuota", "message": "slow"}})
    missing = _openai_status_error(404, {"error": {"code": "model_not_found", "message": "Model can not be found."}})
    assert isinstance(from_openai_error(billing), AccountError)
    assert isinstance(from_openai_error(throttled), RetryableError)
    assert type(from_openai_error(missing)) is PermanentError and from_openai_error(missing).code == "model_not_found"
    assert from_openai_error(ValueError("x")) is None
    # Polling a batch: only what a retry can fix is transient — a billing 429 is not.
    assert is_transient_error(throttled) and not is_transient_error(billing) and not is_transient_error(missing)
    timeout = openai.APITimeoutError(request=httpx.Request("GET", "http://127.0.0.1/"))
    assert is_transient_error(timeout) and isinstance(from_openai_error(timeout), RetryableError)


def test_batch_error_lines_are_classified():
    nested = {"id": "x", "custom_id": "3", "response": {"status_code": 429, "request_id": "r3", "body": {
        "error": {"code": "Throttling.AllocationQuota", "message": "Allocated quota exceeded"}}}, "error": None}
    own = {"id": "y", "custom_id": "4", "response": None,
           "error": {"code": "InvalidParameter", "message": "image too small"}}
    bare = {"id": "z", "custom_id": "5", "response": {"status_code": 500, "body": {}}, "error": None}
    t, o, b = line_error(nested), line_error(own), line_error(bare)
    assert isinstance(t, RetryableError) and (t.code, t.request_id) == ("Throttling.AllocationQuota", "r3")
    assert type(o) is PermanentError and (o.code, o.message) == ("InvalidParameter", "image too small")
    assert isinstance(b, RetryableError) and b.code == "HTTP500"
    ok = {"custom_id": "1", "response": {"status_code": 200, "body": {"choices": []}}, "error": None}
    assert line_error(ok) is None
