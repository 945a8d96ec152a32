"""Issue 19.3: the trigger's and the sensor's failure paths never create a batch, a lost and restarted trigger
emits exactly one event, and a timeout cancels only when asked. On the emulator (loopback), counting the
batches created and the files uploaded around each path.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from airflow_provider_qwenocr.hooks.qwenocr import QwenOcrHook
from airflow_provider_qwenocr.triggers.batch import QwenOcrBatchTrigger
from tests.integration.batch_support import conn_env, png, start_server

pytestmark = pytest.mark.integration


@pytest.fixture
def srv(monkeypatch):
    s = start_server(batch_seconds=2.0)
    monkeypatch.setenv("AIRFLOW_CONN_DASHSCOPE_DEFAULT", conn_env(s.base_url))
    yield s
    s.stop()


def a_batch(hook) -> str:
    from airflow_provider_qwenocr.dashscope.batch_jsonl import BatchBuilder
    from airflow_provider_qwenocr.ocr.request import build_ocr_request

    builder = BatchBuilder(request=build_ocr_request(task="text_recognition"))
    builder.add_image("one.png", png("one"))
    plan = builder.build()
    try:
        f = hook.upload_file(plan.parts[0].read_bytes())
    finally:
        plan.cleanup()
    return hook.create_batch(f["id"])["id"]


async def _events(trigger, *, lose_after: float | None = None):
    """The trigger's events; with ``lose_after``, the triggerer is lost then (the run is cancelled)."""
    out = []

    async def consume():
        async for event in trigger.run():
            out.append(event)

    task = asyncio.ensure_future(consume())
    if lose_after is None:
        await task
    else:
        await asyncio.sleep(lose_after)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    return out


def restarted(trigger):
    """What a new triggerer does after a restart: the trigger re-created from its serialized kwargs."""
    path, kwargs = trigger.serialize()
    assert path.endswith("QwenOcrBatchTrigger")
    return QwenOcrBatchTrigger(**kwargs)


def test_a_lost_trigger_restarted_emits_exactly_one_event_and_creates_nothing(srv):
    hook = QwenOcrHook()
    bid = a_batch(hook)
    before = (srv.batch_creations(), srv.file_uploads())
    trigger = QwenOcrBatchTrigger(batch_ids=[bid], conn_id="dashscope_default", end_time=time.time() + 60,
                                  poll_interval=0.1)
    lost = asyncio.run(_events(trigger, lose_after=0.3))
    assert lost == [] and hook.get_batch(bid)["status"] not in ("cancelling", "cancelled")  # losing ≠ killing
    events = asyncio.run(_events(restarted(trigger)))
    assert len(events) == 1 and events[0].payload["reason"] == "success"
    assert events[0].payload["batch_ids"] == [bid]
    assert (srv.batch_creations(), srv.file_uploads()) == before


@pytest.mark.parametrize("asked", [False, True])
def test_a_restarted_trigger_past_its_deadline_times_out_once_and_cancels_only_when_asked(srv, asked):
    srv.config.batch_seconds = 30
    hook = QwenOcrHook()
    bid = a_batch(hook)
    before = (srv.batch_creations(), srv.file_uploads())
    trigger = QwenOcrBatchTrigger(batch_ids=[bid], conn_id="dashscope_default", end_time=time.time() + 0.5,
                                  poll_interval=0.1, cancel_on_exit=asked, cancel_on_kill=asked)
    assert asyncio.run(_events(trigger, lose_after=0.2)) == []
    time.sleep(0.5)  # the triggerer comes back after the deadline: the absolute end_time still holds
    events = asyncio.run(_events(restarted(trigger)))
    assert [e.payload["reason"] for e in events] == ["timeout"]
    assert events[0].payload["cancelled"] == ([bid] if asked else [])
    status = hook.get_batch(bid)["status"]
    assert (status in ("cancelling", "cancelled")) is asked
    assert (srv.batch_creations(), srv.file_uploads()) == before


@pytest.mark.parametrize("asked", [False, True])
def test_sensor_timeout_in_poke_mode_cancels_only_when_asked_and_creates_nothing(srv, asked):
    from airflow_provider_qwenocr._compat import AirflowException
    from airflow_provider_qwenocr.sensors.batch import QwenOcrBatchSensor

    srv.config.batch_seconds = 30
    hook = QwenOcrHook()
    bid = a_batch(hook)
    before = (srv.batch_creations(), srv.file_uploads())
    sensor = QwenOcrBatchSensor(task_id="wait", batch_ids=[bid], deferrable=False, poke_interval=0.1, timeout=0.5,
                                cancel_on_timeout=asked, cancel_on_kill=asked)
    with pytest.raises(AirflowException):  # AirflowSensorTimeout
        sensor.execute({})
    assert (hook.get_batch(bid)["status"] in ("cancelling", "cancelled")) is asked
    assert (srv.batch_creations(), srv.file_uploads()) == before
