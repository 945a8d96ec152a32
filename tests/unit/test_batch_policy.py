"""The shared batch policy (hooks/batch.py) used identically by operator, sensor and trigger consumers."""

from __future__ import annotations

import pytest

from airflow_provider_qwenocr._compat import AirflowException
from airflow_provider_qwenocr.hooks.batch import evaluate_batch_counts, validate_execute_complete_event


def b(status, completed=0, failed=0, errors=None, bid="b"):
    return {"id": bid, "status": status, "errors": errors,
            "request_counts": {"total": completed + failed, "completed": completed, "failed": failed}}


@pytest.mark.parametrize(("batches", "strict", "action"), [
    ([b("completed", 3)], False, "success"),
    ([b("completed", 3), b("completed", 2, bid="c")], True, "success"),
    ([b("completed", 2, 1)], False, "partial"),
    ([b("completed", 2, 1)], True, "fail"),
    ([b("cancelled", 0, 3)], False, "skip"),
    ([b("cancelled", 0, 3), b("cancelled", 0, 1, bid="c")], True, "skip"),
    ([b("cancelled", 1, 2)], False, "partial"),
    ([b("expired", 1, 1)], False, "partial"),
    ([b("expired", 0, 2)], False, "fail"),
    ([b("completed", 2), b("failed", bid="c")], False, "fail"),
])
def test_verdicts(batches, strict, action):
    verdict = evaluate_batch_counts(batches, max_failed_ratio=0.0 if strict else 1.0)
    assert verdict.action == action
    total = sum(x["request_counts"]["total"] for x in batches)
    assert verdict.counts["total"] == total


def test_failed_validation_message_names_codes_and_lines():
    error = {"code": "mismatched_model", "message": "m", "param": "body.model", "line": 7}
    errors = {"object": "list", "data": [error]}
    verdict = evaluate_batch_counts([b("failed", errors=errors)])
    assert verdict.action == "fail" and "mismatched_model" in verdict.message and "line 7" in verdict.message


def test_refuses_to_judge_running_batches():
    with pytest.raises(ValueError, match="terminal"):
        evaluate_batch_counts([b("completed", 1), b("in_progress", bid="c")])


def test_should_land_whenever_something_completed():
    assert evaluate_batch_counts([b("completed", 2, 1)], max_failed_ratio=0.0).should_land  # fail, rows land
    assert not evaluate_batch_counts([b("expired", 0, 2)]).should_land


@pytest.mark.parametrize("event", [
    None, "success", {"status": "success"}, {"status": "done", "reason": "success", "batch_ids": ["b"]},
    {"status": "success", "reason": "success", "batch_ids": []},
    {"status": "success", "reason": "expired", "batch_ids": ["b"]},
    {"status": "error", "reason": "weird", "batch_ids": ["b"]},
])
def test_bad_events_are_rejected(event):
    with pytest.raises(AirflowException):
        validate_execute_complete_event(event)


@pytest.mark.parametrize(("status", "reason"), [("success", "success"), ("error", "expired"),
                                                ("error", "polling_error"), ("timeout", "timeout")])
def test_good_events_pass(status, reason):
    event = {"status": status, "reason": reason, "batch_ids": ["b1"], "batches": []}
    assert validate_execute_complete_event(event) is event
