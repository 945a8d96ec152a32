"""QwenOcrBatchTrigger logic with a scripted hook: deadline, tolerance, one terminal event, cancel paths."""

from __future__ import annotations

import json
import time

import httpx
import openai
import pytest

from airflow_provider_qwenocr.triggers.batch import QwenOcrBatchTrigger

REQ = httpx.Request("GET", "http://127.0.0.1/compatible-mode/v1/batches/b1")


def transient():
    return openai.APIConnectionError(request=REQ)


def throttled():
    return openai.RateLimitError("Throttling", response=httpx.Response(429, request=REQ), body=None)


def auth_error():
    return openai.AuthenticationError("bad key", response=httpx.Response(401, request=REQ), body=None)


def batch(bid: str, status: str, completed: int = 0, failed: int = 0) -> dict:
    return {"id": bid, "status": status, "request_counts": {"total": completed + failed, "completed": completed,
                                                            "failed": failed}}


class ScriptedHook:
    """Answers get_batches from a script: each step is a list of batches or an exception to raise."""

    def __init__(self, script):
        self.script = list(script)
        self.polls = 0
        self.asked: list[list[str]] = []
        self.cancelled: list[list[str]] = []

    def get_batches(self, ids):
        self.polls += 1
        self.asked.append(list(ids))
        step = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(step, BaseException):
            raise step
        return [b for b in step if b["id"] in ids]

    def cancel_batches(self, ids):
        self.cancelled.append(list(ids))
        return list(ids)


def make(monkeypatch, script, **kw) -> tuple[QwenOcrBatchTrigger, ScriptedHook]:
    hook = ScriptedHook(script)
    kw.setdefault("end_time", time.time() + 60)
    kw.setdefault("poll_interval", 0.01)
    trig = QwenOcrBatchTrigger(batch_ids=["b1", "b2"], conn_id="dashscope_default", **kw)
    monkeypatch.setattr(trig, "_hook", lambda: hook)
    return trig, hook


async def events_of(trigger) -> list[dict]:
    return [e.payload async for e in trigger.run()]


async def test_deadline_survives_serialize_and_recreate(monkeypatch):
    deadline = time.time() + 3600
    trig = QwenOcrBatchTrigger(batch_ids=["b1"], conn_id="c", end_time=deadline, poll_interval=5)
    classpath, kwargs = trig.serialize()
    assert classpath == "airflow_provider_qwenocr.triggers.batch.QwenOcrBatchTrigger"
    json.dumps(kwargs)  # plain values only
    time.sleep(0.01)
    again = QwenOcrBatchTrigger(**kwargs)  # what a restarted triggerer does
    assert again.end_time == deadline and again.serialize() == (classpath, kwargs)

    # a trigger re-created after its deadline ends at once with "timeout", without polling on
    past, _ = make(monkeypatch, [[batch("b1", "in_progress"), batch("b2", "in_progress")]],
                   end_time=time.time() - 1)
    recreated = QwenOcrBatchTrigger(**past.serialize()[1])
    hook = ScriptedHook([[batch("b1", "in_progress")]])
    monkeypatch.setattr(recreated, "_hook", lambda: hook)
    (event,) = await events_of(recreated)
    assert (event["status"], event["reason"]) == ("timeout", "timeout")
    assert hook.polls == 0 and hook.cancelled == [["b1", "b2"]]


async def test_success_after_in_progress_is_one_event_with_ids(monkeypatch):
    running = [batch("b1", "in_progress"), batch("b2", "validating")]
    one_done = [batch("b1", "completed", 2), batch("b2", "in_progress")]
    done = [batch("b1", "completed", 2), batch("b2", "completed", 1)]
    trig, hook = make(monkeypatch, [running, one_done, done])
    events = await events_of(trig)
    assert len(events) == 1
    assert events[0]["status"] == "success" and events[0]["reason"] == "success"
    assert events[0]["batch_ids"] == ["b1", "b2"] and [b["status"] for b in events[0]["batches"]] == ["completed"] * 2
    assert hook.polls == 3 and hook.cancelled == []
    assert hook.asked == [["b1", "b2"], ["b1", "b2"], ["b2"]]  # a finished batch is not polled again


@pytest.mark.parametrize(("statuses", "reason"), [
    (("completed", "expired"), "expired"), (("cancelled", "failed"), "failed"),
    (("cancelled", "completed"), "cancelled"),
])
async def test_mixed_terminal_states_name_the_worst(monkeypatch, statuses, reason):
    trig, hook = make(monkeypatch, [[batch("b1", statuses[0]), batch("b2", statuses[1])]])
    (event,) = await events_of(trig)
    assert (event["status"], event["reason"]) == ("error", reason)
    assert hook.cancelled == []  # terminal batches are not cancelled


async def test_transient_errors_are_tolerated_up_to_the_bound(monkeypatch):
    done = [batch("b1", "completed", 1), batch("b2", "completed", 1)]
    trig, hook = make(monkeypatch, [transient(), throttled(), done], max_poll_failures=3)
    (event,) = await events_of(trig)
    assert event["reason"] == "success" and hook.polls == 3

    trig, hook = make(monkeypatch, [transient(), throttled(), transient(), done], max_poll_failures=3)
    (event,) = await events_of(trig)
    assert (event["status"], event["reason"]) == ("error", "polling_error")
    assert hook.polls == 3 and hook.cancelled == [["b1", "b2"]]


async def test_permanent_error_stops_at_once(monkeypatch):
    trig, hook = make(monkeypatch, [auth_error()], max_poll_failures=5)
    (event,) = await events_of(trig)
    assert event["reason"] == "polling_error" and "bad key" in event["message"]
    assert hook.polls == 1


async def test_timeout_cancels_unless_told_not_to(monkeypatch):
    running = [batch("b1", "in_progress"), batch("b2", "in_progress")]
    trig, hook = make(monkeypatch, [running], end_time=time.time() + 0.2, poll_interval=0.05)
    (event,) = await events_of(trig)
    assert event["reason"] == "timeout" and hook.polls >= 2 and hook.cancelled == [["b1", "b2"]]
    # the last known state travels with the event
    assert [(x["id"], x["status"]) for x in event["batches"]] == [("b1", "in_progress"), ("b2", "in_progress")]

    trig, hook = make(monkeypatch, [running], end_time=time.time() + 0.1, cancel_on_exit=False)
    (event,) = await events_of(trig)
    assert event["reason"] == "timeout" and hook.cancelled == [] and event["cancelled"] == []


async def test_on_kill_cancels(monkeypatch):
    trig, hook = make(monkeypatch, [[batch("b1", "in_progress")]])
    await trig.on_kill()
    assert hook.cancelled == [["b1", "b2"]]


async def test_cancel_on_kill_is_its_own_switch(monkeypatch):
    # a sensor that may cancel on timeout but not on kill, and the other way round
    trig, hook = make(monkeypatch, [[batch("b1", "in_progress")]], cancel_on_exit=True, cancel_on_kill=False)
    await trig.on_kill()
    assert hook.cancelled == []
    trig, hook = make(monkeypatch, [[batch("b1", "in_progress")]], cancel_on_exit=False, cancel_on_kill=True)
    await trig.on_kill()
    assert hook.cancelled == [["b1", "b2"]]
    assert trig.serialize()[1]["cancel_on_kill"] is True and trig.serialize()[1]["cancel_on_exit"] is False


def test_cancel_on_kill_no_longer_follows_cancel_on_exit():
    """1.0 removed the pre-1.0 form (``cancel_on_kill=None`` meaning ``cancel_on_exit``): each is its own switch."""
    kwargs = {"batch_ids": ["b1"], "conn_id": "c", "end_time": 1.0, "cancel_on_exit": False}
    assert QwenOcrBatchTrigger(**kwargs).cancel_on_kill is True
    assert QwenOcrBatchTrigger(**{**kwargs, "cancel_on_kill": None}).cancel_on_kill is False
