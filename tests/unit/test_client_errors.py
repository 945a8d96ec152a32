"""The error classifier: which DashScope failures are retried, which fail the image, which stop the task."""

from __future__ import annotations

import pickle

import pytest
import requests

from airflow_provider_qwenocr.dashscope.errors import (
    AccountError,
    InvalidApiKeyError,
    PermanentError,
    QwenOcrError,
    RetryableError,
    classify,
    from_exception,
    parse_retry_after,
    redact,
)


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (429, "Throttling", RetryableError),
        (429, "Throttling.RateQuota", RetryableError),
        (429, "Throttling.AllocationQuota", RetryableError),
        (500, "InternalError", RetryableError),
        (500, "InternalError.Algo", RetryableError),
        (502, "Unknown", RetryableError),
        (503, None, RetryableError),
        (504, "", RetryableError),
        (408, "RequestTimeOut", RetryableError),
        (401, "InvalidApiKey", InvalidApiKeyError),
        (401, "Unknown", InvalidApiKeyError),
        (400, "InvalidParameter", PermanentError),
        (400, "InvalidParameter.DataInspection", PermanentError),
        (400, "DataInspectionFailed", PermanentError),
        (400, "Arrearage", AccountError),
        (429, "PrepaidBillOverdue", AccountError),
        (429, "PostpaidBillOverdue", AccountError),
        (429, "CommodityNotPurchased", AccountError),
        (403, "AllocationQuota.FreeTierOnly", AccountError),
        (429, "Throttling.BurstRate", RetryableError),
        (403, "AccessDenied.Unpurchased", PermanentError),
        (400, "BadRequest.EmptyInput", PermanentError),
        (413, "BadRequest.TooLarge", PermanentError),
        (404, "ModelNotFound", PermanentError),
    ],
)
def test_classify_table(status, code, expected):
    err = classify(status, code, "boom", request_id="r-1")
    assert type(err) is expected
    assert err.status_code == status
    assert err.request_id == "r-1"
    assert isinstance(err, QwenOcrError)
    assert err.retryable is (expected is RetryableError)


def test_invalid_key_is_permanent_and_fills_code():
    err = classify(401, "Unknown", "no")
    assert isinstance(err, PermanentError)
    assert err.code == "InvalidApiKey"
    assert classify(413, None, "big").code == "BadRequest.TooLarge"


def test_recorded_auth_error_maps_to_invalid_key():
    err = classify(401, "InvalidApiKey", "Invalid API-key provided.", request_id="a1c0561c")
    assert isinstance(err, InvalidApiKeyError)
    assert "Invalid API-key provided." in str(err)
    assert "a1c0561c" in str(err)
    assert err.to_dict() == {"code": "InvalidApiKey", "message": "Invalid API-key provided."}


@pytest.mark.parametrize(
    ("exc", "expected_code"),
    [
        (requests.exceptions.ReadTimeout("read timed out"), "RequestTimeOut"),
        (requests.exceptions.ConnectTimeout("connect timed out"), "RequestTimeOut"),
        (requests.exceptions.ConnectionError("refused"), "ConnectionError"),
        (TimeoutError("t"), "RequestTimeOut"),
        (ConnectionResetError("reset"), "ConnectionError"),
    ],
)
def test_transport_errors_are_retryable(exc, expected_code):
    err = from_exception(exc)
    assert isinstance(err, RetryableError)
    assert err.code == expected_code


def test_other_client_side_exceptions_are_permanent():
    err = from_exception(ValueError("Input data is required"))
    assert isinstance(err, PermanentError) and not isinstance(err, InvalidApiKeyError)
    assert err.code == "ValueError"


def test_retry_after_parsing():
    assert parse_retry_after({"Retry-After": "3"}) == 3.0
    assert parse_retry_after({"retry-after": "1.5"}) == 1.5
    assert parse_retry_after({"x": "1"}) is None
    assert parse_retry_after(None) is None
    assert parse_retry_after({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0  # a date in the past
    err = classify(429, "Throttling.RateQuota", "slow down", headers={"Retry-After": "2"})
    assert err.retry_after == 2.0


def test_key_is_redacted_from_messages():
    secret = "sk-abcdef0123456789"
    err = classify(400, "InvalidParameter", f"bad header Authorization: Bearer {secret}", secret=secret)
    assert secret not in str(err) and secret not in err.message
    assert redact(f"key={secret}") == "key=sk-***"
    assert "mysecret" not in redact("Bearer mysecret")
    err2 = from_exception(requests.exceptions.ConnectionError(f"failed with {secret}"), secret=secret)
    assert secret not in str(err2)


def test_errors_survive_pickling():
    err = classify(429, "Throttling", "slow", request_id="r", headers={"Retry-After": "4"})
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is RetryableError
    assert (back.code, back.message, back.status_code, back.request_id, back.retry_after) == (
        "Throttling", "slow", 429, "r", 4.0)


@pytest.mark.parametrize("code", ["PrepaidBillOverdue", "PostpaidBillOverdue", "CommodityNotPurchased",
                                  "AllocationQuota.FreeTierOnly", "Arrearage", "InvalidApiKey"])
def test_account_states_are_not_retried_and_say_what_to_fix(code):
    err = classify(429 if "Bill" in code or "Commodity" in code else 403, code, "account state")
    assert isinstance(err, AccountError) and not err.retryable
    assert "re-run" in err.hint or "API key" in err.hint
    assert err.hint != AccountError("x", code="SomethingElse").hint
