"""QwenOcrBatchSensor against the emulator: poke, deferrable, idempotent retries, shared policy."""

from __future__ import annotations

import asyncio

import pytest
from airflow.exceptions import AirflowSkipException, TaskDeferred

from airflow_provider_qwenocr._compat import AirflowException
from airflow_provider_qwenocr.dashscope.batch_jsonl import encode_line, request_line
from airflow_provider_qwenocr.hooks.qwenocr import QwenOcrHook
from airflow_provider_qwenocr.operators.batch import QwenOcrBatchOperator
from airflow_provider_qwenocr.runs.results_store import read_results
from airflow_provider_qwenocr.sensors.batch import QwenOcrBatchSensor
from tests.integration.batch_support import (
    FakeTI,
    conn_env,
    conn_fixture,
    png,
    red_png,
    server_fixture,
    start_server,
    wait_status,
)

pytestmark = pytest.mark.integration


server = server_fixture(batch_seconds=0.6)


conn = conn_fixture()


def submit(tmp_path, *extra: bytes, name: str = "r", **kw) -> tuple[list[str], str]:
    d = tmp_path / "in"
    d.mkdir(exist_ok=True)
    (d / "a.png").write_bytes(png("alpha"))
    (d / "b.png").write_bytes(png("beta", size=(240, 72)))
    for i, data in enumerate(extra):
        (d / f"x{i}.png").write_bytes(data)
    output = str(tmp_path / "out" / f"{name}.jsonl")
    ti = FakeTI()
    QwenOcrBatchOperator(task_id="submit", images=str(d), output_uri=output, wait_for_completion=False,
                         deferrable=False, **kw).execute({"ti": ti})
    return ti.xcom["batch_ids"], output


def sensor(batch_ids, **kw):
    kw.setdefault("poke_interval", 0.1)
    kw.setdefault("timeout", 60)
    kw.setdefault("deferrable", False)
    return QwenOcrBatchSensor(task_id="wait", batch_ids=batch_ids, **kw)


def test_poke_waits_then_lands_results_with_the_manifest(conn, tmp_path):
    ids, output = submit(tmp_path)
    s = sensor(ids, output_uri=output)
    assert s.poke({}) is False  # just submitted: still validating/in progress
    result = s.execute({})
    assert (result["state"], result["n_ok"], result["n_failed"]) == ("done", 2, 0)
    rows = list(read_results(output))
    assert sorted(r["source"].rsplit("/", 1)[-1] for r in rows) == ["a.png", "b.png"]  # names from the manifest


def test_retried_sensor_submits_nothing(conn, tmp_path, server):
    ids, output = submit(tmp_path)
    batches, uploads = server.batch_creations(), server.file_uploads()
    first = sensor(ids, output_uri=output).execute({})
    retry = sensor(ids, output_uri=output).execute({})  # a retry of the same task
    assert first["n_ok"] == retry["n_ok"] == 2
    assert (server.batch_creations(), server.file_uploads()) == (batches, uploads)


def test_deferrable_sensor(conn, tmp_path, server):
    ids, output = submit(tmp_path, red_png())
    s = sensor(ids, output_uri=output, deferrable=True, timeout=120)
    with pytest.raises(TaskDeferred) as deferred:
        s.execute({})
    trigger = deferred.value.trigger
    assert trigger.cancel_on_exit is False  # a sensor does not own the batches by default
    events = asyncio.run(_collect(trigger))
    assert len(events) == 1
    result = sensor(ids, output_uri=output, deferrable=True, max_failed_ratio=0.5).execute_complete(
        {}, events[0].payload)
    assert (result["state"], result["n_ok"], result["n_failed"]) == ("done", 2, 1)
    with pytest.raises(AirflowException, match="partial"):  # the default, as the realtime operator
        sensor(ids, output_uri=output, deferrable=True).execute_complete({}, events[0].payload)
    # already terminal: a deferrable sensor answers at once, without deferring
    ended = sensor(ids, deferrable=True, max_failed_ratio=1).execute({})
    assert (ended["state"], ended["n_images"], ended["n_failed"]) == ("ended", 3, 1)


async def _collect(trigger):
    return [e async for e in trigger.run()]


def test_failed_validation_fails_the_sensor(conn):
    hook = QwenOcrHook()
    lines = [request_line("1", "data:image/png;base64,AAAA", "hi", model="qwen-vl-ocr") for _ in range(2)]
    f = hook.upload_file(b"".join(encode_line(x) for x in lines))
    batch = hook.create_batch(f["id"])
    with pytest.raises(AirflowException, match="duplicate_custom_id"):
        sensor([batch["id"]]).execute({})


def test_fully_cancelled_batches_skip(tmp_path, monkeypatch):
    srv = start_server(batch_seconds=30)
    try:
        monkeypatch.setenv("AIRFLOW_CONN_DASHSCOPE_DEFAULT", conn_env(srv.base_url))
        ids, _ = submit(tmp_path)
        hook = QwenOcrHook()
        hook.cancel_batches(ids)
        wait_status(hook, ids[0], {"cancelled"})
        with pytest.raises(AirflowSkipException):
            sensor(ids).execute({})
    finally:
        srv.stop()


def test_sensor_timeout_does_not_cancel_by_default(tmp_path, monkeypatch):
    srv = start_server(batch_seconds=30)
    try:
        monkeypatch.setenv("AIRFLOW_CONN_DASHSCOPE_DEFAULT", conn_env(srv.base_url))
        ids, _ = submit(tmp_path)
        s = sensor(ids, deferrable=True, timeout=0.3)
        with pytest.raises(TaskDeferred) as deferred:
            s.execute({})
        (event,) = asyncio.run(_collect(deferred.value.trigger))
        assert event.payload["reason"] == "timeout" and event.payload["cancelled"] == []
        with pytest.raises(AirflowException, match="timeout"):
            s.execute_complete({}, event.payload)
        assert QwenOcrHook().get_batch(ids[0])["status"] in ("validating", "in_progress")
    finally:
        srv.stop()


def test_delete_files_after_landing(conn, tmp_path, server):
    from tests.integration.batch_support import _store

    ids, output = submit(tmp_path)
    store = _store(server)
    input_file = store.batches[ids[0]]["input_file_id"]
    result = sensor(ids, output_uri=output, delete_files=True).execute({})
    assert result["n_ok"] == 2 and len(list(read_results(output))) == 2
    batch = store.batches[ids[0]]
    for fid in (input_file, batch["output_file_id"]):
        assert fid not in store.files


@pytest.mark.parametrize("deferrable", [False, True])
def test_a_quiet_night_every_image_cached_is_a_success_with_nothing_to_wait_for(conn, tmp_path, server, deferrable):
    """Issue 20 #13: the operator pushes ``batch_ids=[]`` when every image came from the cache; the sensor
    (README's pattern) succeeds, lands those rows at its ``output_uri`` and calls nothing."""
    cache = str(tmp_path / "cache")
    ids, output = submit(tmp_path, cache_uri=cache)
    sensor(ids, output_uri=output, cache_uri=cache).execute({})  # the first night lands and caches the rows
    again, output2 = submit(tmp_path, name="night2", cache_uri=cache)
    assert again == []
    creations, polls = server.batch_creations(), server.stats()["by_status"]
    quiet = sensor(again, output_uri=output2, cache_uri=cache, deferrable=deferrable).execute({})
    assert (quiet["state"], quiet["n_images"], quiet["n_cached"], quiet["n_failed"]) == ("done", 2, 2, 0)
    assert sorted(r["source"].rsplit("/", 1)[-1] for r in read_results(output2)) == ["a.png", "b.png"]
    assert server.batch_creations() == creations and server.stats()["by_status"] == polls  # no call at all
    bare = sensor([], deferrable=deferrable).execute({})  # without output_uri: nothing landed, nothing failed
    assert (bare["state"], bare["n_images"], bare["results_uri"]) == ("ended", 0, None)
