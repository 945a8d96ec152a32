"""Which retries wait for the rate limiter again (``realtime.charges_retry``, ``RealtimeClient.call``).

A first 429 reuses its slot (it consumed no quota); a request refused again with a quota code, or told to
wait over a second, is paced on every further retry, so one overflow of the service's window cannot
circulate as refusals; a generic
``Throttling`` and other errors keep their rules.
"""

from __future__ import annotations

import pytest

from airflow_provider_qwenocr.dashscope.config import ClientConfig
from airflow_provider_qwenocr.dashscope.errors import RetryableError
from airflow_provider_qwenocr.dashscope.realtime import RealtimeClient, charges_retry


def _429(code: str, retry_after: float | None = 1) -> RetryableError:
    return RetryableError("refused", code=code, status_code=429, retry_after=retry_after)


def _charges(errors: list[RetryableError]) -> list[bool]:
    """The ``charge`` flag of each attempt when the first len(errors) attempts fail with ``errors``."""
    client = RealtimeClient(ClientConfig(api_key="sk-test-0000", base_url="http://127.0.0.1:9", max_retries=10),
                            sleep=lambda s: None)
    attempts: list[bool] = []

    def once(model, messages, options, tokens, *, charge=True):
        attempts.append(charge)
        if len(attempts) <= len(errors):
            raise errors[len(attempts) - 1]
        return "answer"

    client._call_once = once
    assert client.call("qwen-vl-ocr", []) == "answer"
    client.close()
    return attempts


@pytest.mark.parametrize("code", ["Throttling.RateQuota", "Throttling.AllocationQuota", "Throttling.BurstRate"])
def test_a_request_refused_twice_for_quota_is_paced_on_every_further_retry(code):
    assert _charges([_429(code)] * 4) == [True, False, True, True, True]


def test_one_quota_refusal_reuses_its_slot():
    assert _charges([_429("Throttling.RateQuota")]) == [True, False]


def test_a_quota_refusal_that_says_wait_longer_than_a_second_is_paced_at_once():
    assert _charges([_429("Throttling.RateQuota", retry_after=7)]) == [True, True]
    assert _charges([_429("Throttling.RateQuota", retry_after=None)]) == [True, False]  # no hint: first is free


def test_generic_throttling_is_never_charged_again():
    assert _charges([_429("Throttling")] * 3) == [True, False, False, False]


def test_a_server_error_retry_is_charged_and_does_not_count_as_a_refusal():
    err500 = RetryableError("boom", code="InternalError", status_code=500)
    assert _charges([err500, _429("Throttling.RateQuota"), err500]) == [True, True, False, True]


def test_charges_retry_rule():
    assert charges_retry(RetryableError("x", code="RequestTimeOut", status_code=None), 0)
    assert not charges_retry(_429("Throttling.RateQuota"), 1)
    assert charges_retry(_429("Throttling.RateQuota"), 2)
    assert not charges_retry(_429("Throttling"), 5)
    assert not charges_retry(_429("Throttling", retry_after=30), 1)
    assert charges_retry(_429("Throttling.AllocationQuota", retry_after=2), 1)


def test_the_sdk_is_imported_before_the_limiter_is_waited_on(monkeypatch):
    from airflow_provider_qwenocr.dashscope import realtime

    order: list[str] = []
    monkeypatch.setattr(realtime, "_sdk", lambda: order.append("sdk"))

    class Limiter:
        def acquire(self, tokens):
            order.append("acquire")

    client = RealtimeClient(ClientConfig(api_key="sk-test-0000", base_url="http://127.0.0.1:9"), limiter=Limiter(),
                            sleep=lambda s: None)
    assert order == ["sdk"]  # imported when the client is built, before any image is prepared (issue 11)
    client._http = lambda model, messages, options: order.append("http") or "answer"
    assert client._call_once("qwen-vl-ocr", [], None, 100) == "answer"
    client.close()
    assert order == ["sdk", "sdk", "acquire", "http"]  # and made sure of again before the limiter
