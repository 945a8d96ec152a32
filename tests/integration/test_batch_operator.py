"""QwenOcrBatchOperator against the emulator: execute()/trigger.run()/execute_complete() called directly."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest
from airflow.exceptions import AirflowSkipException, TaskDeferred

from airflow_provider_qwenocr._compat import AirflowException
from airflow_provider_qwenocr.dashscope.batch import BatchRegionError
from airflow_provider_qwenocr.dashscope.batch_jsonl import BatchLimits
from airflow_provider_qwenocr.exceptions import QwenOcrSubmitRefusedError
from airflow_provider_qwenocr.hooks.qwenocr import QwenOcrHook
from airflow_provider_qwenocr.ocr.models import get_model
from airflow_provider_qwenocr.operators.batch import QwenOcrBatchOperator
from airflow_provider_qwenocr.runs.results_store import read_results
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


server = server_fixture(batch_seconds=0.4)


conn = conn_fixture()


@pytest.fixture
def images(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    (d / "a.png").write_bytes(png("alpha"))
    (d / "b.png").write_bytes(png("beta", size=(260, 80)))
    (d / "c.png").write_bytes(png("gamma", size=(180, 60)))
    return d


def run_deferred(op, ctx):
    """What the triggerer + resumed worker do: execute → TaskDeferred → trigger.run() → execute_complete."""
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(ctx)
    trigger = deferred.value.trigger
    events = asyncio.run(_collect(trigger))
    assert len(events) == 1, events  # exactly one terminal event
    return deferred.value, events[0].payload


async def _collect(trigger):
    return [e async for e in trigger.run()]


def make_op(images, tmp_path, **kw):
    kw.setdefault("deferrable", False)
    kw.setdefault("poll_interval", 0.1)
    return QwenOcrBatchOperator(task_id="ocr_batch", images=str(images), output_uri=str(tmp_path / "out" / "r.jsonl"),
                                **kw)


def test_blocking_completed_lands_rows_and_pushes_ids(conn, images, tmp_path, server):
    (images / "broken.png").write_bytes(b"this is not an image")
    ti = FakeTI()
    summary = make_op(images, tmp_path, max_failed_ratio=0.25).execute({"ti": ti})
    assert ti.xcom["batch_ids"] == summary["batch_ids"] and len(summary["batch_ids"]) == 1
    assert ti.xcom["manifest_uri"].endswith("r.manifest.jsonl")
    assert (summary["n_images"], summary["n_ok"], summary["n_failed"]) == (4, 3, 1)
    assert summary["state"] == "done"
    rows = {r["source"].rsplit("/", 1)[-1]: r for r in read_results(summary["results_uri"])}
    assert set(rows) == {"a.png", "b.png", "c.png", "broken.png"}
    assert rows["broken.png"]["status"] == "error" and rows["broken.png"]["error"]["code"] == "InvalidImage"
    ok = rows["a.png"]
    assert ok["status"] == "ok" and ok["text"] and ok["task"] == "text_recognition" and ok["sha256"]
    assert summary["usage"]["input_tokens"] == sum(r["usage"]["input_tokens"] for r in rows.values())
    full = get_model("qwen-vl-ocr").price().cost(summary["usage"]["input_tokens"], summary["usage"]["output_tokens"])
    assert summary["cost"]["usd"] == pytest.approx(full["usd"] / 2, abs=1e-7)
    assert "text" not in json.dumps(summary)  # XCom carries no rows


def test_split_at_line_limit_creates_several_batches(conn, images, tmp_path, monkeypatch):
    from airflow_provider_qwenocr.operators import batch as batch_operator

    monkeypatch.setattr(batch_operator, "BATCH_LIMITS", BatchLimits(max_lines=2))  # the service's limits, smaller
    ti = FakeTI()
    summary = make_op(images, tmp_path).execute({"ti": ti})
    assert len(summary["batch_ids"]) == 2 and ti.xcom["batch_ids"] == summary["batch_ids"]
    assert summary["n_ok"] == 3


def test_deferrable_completed(conn, images, tmp_path):
    ti = FakeTI()
    op = make_op(images, tmp_path, deferrable=True, timeout=120, poll_interval=0.1)
    before = time.time()
    deferred, event = run_deferred(op, {"ti": ti})
    _, kwargs = deferred.trigger.serialize()
    assert before + 120 <= kwargs["end_time"] <= time.time() + 120  # absolute deadline from defer time
    assert deferred.timeout.total_seconds() > 120  # framework timeout later than the trigger's own
    assert event["status"] == "success" and event["batch_ids"] == ti.xcom["batch_ids"]
    fresh = make_op(images, tmp_path, deferrable=True)  # the resumed task is a new instance
    summary = fresh.execute_complete({"ti": ti}, event, **deferred.kwargs)
    assert summary["n_ok"] == 3 and summary["batch_ids"] == event["batch_ids"]


def test_partial_failure_policy(conn, images, tmp_path):
    (images / "red.png").write_bytes(red_png())
    summary = make_op(images, tmp_path, max_failed_ratio=0.25).execute({"ti": FakeTI()})
    assert (summary["state"], summary["n_ok"], summary["n_failed"]) == ("done", 3, 1)
    assert summary["failed"][0]["code"] == "DataInspectionFailed"

    # use_cache=False: the same images again, and this part is about the policy, not the (shared) cache
    op = make_op(images, tmp_path / "strict", deferrable=True, use_cache=False)  # default max_failed_ratio=0
    deferred, event = run_deferred(op, {"ti": FakeTI()})
    with pytest.raises(AirflowException, match="partial failure"):
        op.execute_complete({}, event, **deferred.kwargs)
    rows = list(read_results(str(tmp_path / "strict" / "out" / "r.jsonl")))  # billed results still landed
    assert len(rows) == 4


@pytest.mark.parametrize("outcome", ["fail", "expire"])
def test_failed_and_expired_batches(monkeypatch, images, tmp_path, outcome):
    srv = start_server(batch_seconds=0.4, batch_outcome=outcome)
    try:
        monkeypatch.setenv("AIRFLOW_CONN_DASHSCOPE_DEFAULT", conn_env(srv.base_url))
        op = make_op(images, tmp_path)
        if outcome == "fail":
            with pytest.raises(AirflowException, match="batch failed"):
                op.execute({"ti": FakeTI()})
        else:  # an expired batch with some lines done fails by default; the done rows still land
            with pytest.raises(AirflowException, match=r"2 of 3 images failed"):
                op.execute({"ti": FakeTI()})
            codes = sorted((r["error"] or {}).get("code", "ok") for r in read_results(str(tmp_path / "out" / "r.jsonl")))
            assert codes == ["batch_expired", "batch_expired", "ok"]
            summary = make_op(images, tmp_path / "lenient", max_failed_ratio=1.0).execute({"ti": FakeTI()})
            assert summary["state"] == "done" and summary["n_images"] == 3 and summary["n_failed"] >= 1
    finally:
        srv.stop()


@pytest.fixture
def slow(monkeypatch):
    srv = start_server(batch_seconds=30)
    monkeypatch.setenv("AIRFLOW_CONN_DASHSCOPE_DEFAULT", conn_env(srv.base_url))
    yield srv
    srv.stop()


def test_blocking_timeout_cancels(slow, images, tmp_path):
    ti = FakeTI()
    op = make_op(images, tmp_path, timeout=0.5)
    with pytest.raises(AirflowException, match="not finished"):
        op.execute({"ti": ti})
    hook = QwenOcrHook()
    (bid,) = ti.xcom["batch_ids"]
    assert wait_status(hook, bid, {"cancelled"})["cancelled_at"]


def test_deferred_timeout_cancels(slow, images, tmp_path):
    ti = FakeTI()
    op = make_op(images, tmp_path, deferrable=True, timeout=0.5)
    deferred, event = run_deferred(op, {"ti": ti})
    assert (event["status"], event["reason"]) == ("timeout", "timeout")
    assert event["cancelled"] == ti.xcom["batch_ids"]  # the trigger cancelled on its way out
    with pytest.raises(AirflowException, match="timeout"):
        make_op(images, tmp_path, deferrable=True).execute_complete({}, event, **deferred.kwargs)
    wait_status(QwenOcrHook(), ti.xcom["batch_ids"][0], {"cancelled"})


def test_kill_cancels_running_and_deferred(slow, images, tmp_path):
    ti = FakeTI()
    op = make_op(images, tmp_path, timeout=60)

    def kill_when_submitted():  # what the worker does when a user marks the running task failed
        deadline = time.time() + 30
        while "batch_ids" not in ti.xcom and time.time() < deadline:
            time.sleep(0.05)
        op.on_kill()

    killer = threading.Thread(target=kill_when_submitted, daemon=True)
    killer.start()
    with pytest.raises(AirflowSkipException):  # the wait sees its batch cancelled before anything completed
        op.execute({"ti": ti})
    killer.join(timeout=30)
    hook = QwenOcrHook()
    assert wait_status(hook, ti.xcom["batch_ids"][0], {"cancelled"})["request_counts"]["completed"] == 0

    ti2 = FakeTI()
    op2 = make_op(images, tmp_path / "2", deferrable=True, timeout=60)
    with pytest.raises(TaskDeferred) as deferred:
        op2.execute({"ti": ti2})
    asyncio.run(deferred.value.trigger.on_kill())  # Airflow 3.3+: user kills the deferred task
    wait_status(hook, ti2.xcom["batch_ids"][0], {"cancelled"})


def test_region_without_ocr_batch_refused_before_upload(monkeypatch, images, tmp_path, server):
    monkeypatch.setenv("AIRFLOW_CONN_DASHSCOPE_DEFAULT", json.dumps(
        {"conn_type": "dashscope", "password": "sk-x", "extra": {"region": "ap-southeast-1"}}))
    uploads = server.file_uploads()
    with pytest.raises(BatchRegionError, match="ap-southeast-1"):
        make_op(images, tmp_path).execute({"ti": FakeTI()})
    assert server.file_uploads() == uploads


def test_no_wait_returns_the_submitted_summary(conn, images, tmp_path):
    ti = FakeTI()
    out = make_op(images, tmp_path, wait_for_completion=False).execute({"ti": ti})
    assert out["batch_ids"] == ti.xcom["batch_ids"] and out["state"] == "submitted"
    assert (out["n_images"], out["n_ok"], out["n_failed"], out["n_cached"]) == (3, 0, 0, 0)  # nothing landed yet
    assert out["cost"] == {"usd": None, "cny": None, "unknown_rows": 3}  # 3 requests, bill not known yet
    assert out["results_uri"] == str(tmp_path / "out" / "r.jsonl")
    assert not {"output_uri", "n_requests", "n_rejected", "deprecated_keys"} & set(out)  # the pre-1.0 keys are gone
    assert QwenOcrBatchOperator(task_id="t", images="x").retries == 0  # documented safe default


def test_batch_lines_go_through_the_real_ocr_engine(emulator_conn, tmp_path):
    """Same rapidocr path as realtime: the words come back, the red inspection image fails its line only."""
    from conftest import REPO

    docs = REPO / "tests" / "data" / "docs"
    images = [str(docs / "paragraph_en.png"), str(docs / "inspection_red.png")]
    op = QwenOcrBatchOperator(task_id="ocr_batch", images=images, output_uri=str(tmp_path / "r.jsonl"),
                              deferrable=False, poll_interval=0.2, max_failed_ratio=0.5)
    summary = op.execute({"ti": FakeTI()})
    rows = {r["source"].rsplit("/", 1)[-1]: r for r in read_results(summary["results_uri"])}
    text = rows["paragraph_en.png"]["text"].lower()
    assert "quarterly" in text and "warehouse" in text
    assert rows["inspection_red.png"]["error"]["code"] == "DataInspectionFailed"
    assert (summary["state"], summary["n_ok"], summary["n_failed"]) == ("done", 1, 1)


def test_batch_advanced_recognition_has_the_boxes_realtime_has(emulator_conn, tmp_path):
    """Compatible mode has no words_info: the boxes come from the text block's 0–1000 rectangles, and land
    where the realtime (native words_info) boxes are."""
    from conftest import REPO

    doc = REPO / "tests" / "data" / "docs" / "invoice_zh_en_hard.jpg"  # skewed, non-square scan
    op = QwenOcrBatchOperator(task_id="ocr_batch", images=[str(doc)], task="advanced_recognition",
                              output_uri=str(tmp_path / "r.jsonl"), deferrable=False, poll_interval=0.2)
    (row,) = read_results(op.execute({"ti": FakeTI()})["results_uri"])
    native = QwenOcrHook(emulator_conn).recognize(str(doc), "advanced_recognition").words
    assert row["status"] == "ok" and len(native) >= 5
    assert [w["text"] for w in row["words"]] == [w.text for w in native]
    unit = max(row["width"], row["height"]) / 1000
    for got, want in zip(row["words"], native, strict=True):
        length = max(abs(want.location[2] - want.location[0]), abs(want.location[3] - want.location[1]))
        tol = 2 * unit + 2 + length * 0.02  # a unit each way, rounding, whole-degree angles
        assert max(abs(a - b) for a, b in zip(got["location"], want.location, strict=True)) <= tol, (got, want)
        assert abs(got["rotate_rect"][0] - want.rotate_rect[0]) <= 2 * unit + 2


def test_rerun_with_cache_sends_only_new_images(conn, images, tmp_path, server):
    cache = str(tmp_path / "cache")
    first = make_op(images, tmp_path / "1", cache_uri=cache).execute({"ti": FakeTI()})
    assert (first["n_ok"], first["n_cached"]) == (3, 0)
    (images / "d.png").write_bytes(png("delta", size=(230, 70)))
    batches = server.batch_creations()
    ti = FakeTI()
    second = make_op(images, tmp_path / "2", cache_uri=cache).execute({"ti": ti})
    assert (second["n_images"], second["n_ok"], second["n_cached"]) == (4, 4, 3)
    assert server.batch_creations() == batches + 1
    # only the new image was billed this time
    rows = {r["source"].rsplit("/", 1)[-1]: r for r in read_results(second["results_uri"])}
    assert second["usage"]["input_tokens"] == rows["d.png"]["usage"]["input_tokens"] > 0
    assert rows["a.png"]["text"] == next(r["text"] for r in read_results(first["results_uri"])
                                         if r["source"].endswith("a.png"))
    third = make_op(images, tmp_path / "3", cache_uri=cache).execute({"ti": FakeTI()})  # all cached: no batch
    assert third["n_cached"] == 4 and third["batch_ids"] == [] and server.batch_creations() == batches + 1


def test_default_output_is_per_run_and_per_mapped_instance(tmp_path):
    """The realtime operator's rule (hooks/locations.py): <dag>/<run>/<task>[_<map_index>].jsonl."""
    from airflow_provider_qwenocr.hooks.locations import manifest_location, output_location, task_ids

    ti = FakeTI()
    ti.map_index = 3
    op = QwenOcrBatchOperator(task_id="ocr_batch", images="x")
    output = output_location(op.output_uri, **task_ids(op, {"ti": ti}))
    assert output.endswith("/manual__test/ocr_batch_3.jsonl")
    assert manifest_location(op.manifest_uri, output).endswith("/manual__test/ocr_batch_3.manifest.jsonl")


def test_half_submitted_run_cancels_what_it_created(conn, tmp_path, monkeypatch):
    import glob
    import tempfile

    hook = QwenOcrHook()
    real_create = hook.batch_client.create_batch  # the runner works on the batch client, not on the hook
    calls: list[str] = []

    def flaky_create(file_id, **kw):
        calls.append(file_id)
        if len(calls) == 2:
            raise RuntimeError("network gone while creating part 2")
        return real_create(file_id, **kw)

    monkeypatch.setattr(hook.batch_client, "create_batch", flaky_create)
    seen: list[list[str]] = []
    spool_root = tmp_path / "tmp"  # a temp dir of this test's own: other processes' spools cannot interfere
    spool_root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool_root))
    made: list[str] = []
    real_mkdtemp = tempfile.mkdtemp

    def recording_mkdtemp(*args, **kwargs):
        made.append(real_mkdtemp(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(tempfile, "mkdtemp", recording_mkdtemp)
    with pytest.raises(RuntimeError, match="part 2"):
        hook.batch_runner().submit([("a.png", png("a")), ("b.png", png("b", size=(240, 70)))], hook.ocr_request(),
                                   manifest_uri=str(tmp_path / "m.jsonl"), limits=BatchLimits(max_lines=1),
                                   on_batch_created=seen.append)
    assert len(seen) == 1 and len(seen[0]) == 1  # the first id was reported before the failure
    assert wait_status(hook, seen[0][0], {"cancelled"})
    assert made and glob.glob(f"{spool_root}/qwenocr-batch-*") == []  # a spool was made, and removed
    assert (tmp_path / "m.jsonl").exists()  # the manifest was written before anything billable


@pytest.mark.parametrize("fetch", [False, True])
def test_http_sources_sent_as_url_or_fetched(conn, server, static_http, tmp_path, fetch):
    from tests.integration.batch_support import _store

    url = static_http.url("paragraph_en.png")
    ti = FakeTI()
    op = QwenOcrBatchOperator(task_id="ocr_batch", images=[url], output_uri=str(tmp_path / "r.jsonl"),
                              image_transport="fetch" if fetch else "inline",
                              deferrable=False, poll_interval=0.1)
    summary = op.execute({"ti": ti})
    assert summary["n_ok"] == 1
    store = _store(server)
    batch = store.batches[ti.xcom["batch_ids"][0]]
    (line,) = [json.loads(x) for x in store.content[batch["input_file_id"]].decode().splitlines()]
    sent = line["body"]["messages"][0]["content"][0]["image_url"]["url"]
    assert (sent == url) is (not fetch)
    assert sent.startswith("data:image/") is fetch
    (row,) = read_results(summary["results_uri"])
    assert row["source"] == url and (row["sha256"] is not None) is fetch


def test_token_budget_refuses_before_anything_is_billed(conn, images, tmp_path, server):
    batches, uploads = server.batch_creations(), server.file_uploads()
    with pytest.raises(QwenOcrSubmitRefusedError, match="exceed token_budget=10"):
        make_op(images, tmp_path, token_budget=10).execute({"ti": FakeTI()})
    assert (server.batch_creations(), server.file_uploads()) == (batches, uploads)
    ok = make_op(images, tmp_path / "ok", token_budget=100_000, wait_for_completion=False).execute({"ti": FakeTI()})
    assert ok["cost"]["unknown_rows"] == 3  # 3 requests sent



def test_templated_strings_and_timedeltas_are_accepted(conn, server, images, tmp_path):
    from datetime import timedelta

    from tests.integration.batch_support import _store

    op = make_op(images, tmp_path, min_pixels="3072", max_pixels="200000", timeout=timedelta(minutes=5),
                 poll_interval=timedelta(seconds=0.1), wait_for_completion=False)
    assert (op.timeout, op.poll_interval) == (300.0, 0.1)
    ti = FakeTI()
    op.execute({"ti": ti})
    store = _store(server)
    content = store.content[store.batches[ti.xcom["batch_ids"][0]]["input_file_id"]]
    image = json.loads(content.splitlines()[0])["body"]["messages"][0]["content"][0]
    assert (image["min_pixels"], image["max_pixels"]) == (3072, 200000)


def test_results_cached_by_realtime_are_not_sent_to_batch(conn, images, tmp_path, server):
    from airflow_provider_qwenocr.operators.ocr import QwenOcrOperator

    cache = str(tmp_path / "cache")
    realtime = QwenOcrOperator(task_id="rt", images=str(images), output_uri=str(tmp_path / "rt.jsonl"),
                               cache_uri=cache)
    assert realtime.execute({"ti": FakeTI()})["n_ok"] == 3
    batches = server.batch_creations()
    summary = make_op(images, tmp_path, cache_uri=cache).execute({"ti": FakeTI()})
    assert (summary["n_cached"], summary["batch_ids"]) == (3, [])  # same keys: nothing re-billed
    assert server.batch_creations() == batches


def test_polling_error_event_cancels_and_fails(slow, images, tmp_path):
    ti = FakeTI()
    make_op(images, tmp_path, wait_for_completion=False).execute({"ti": ti})
    event = {"status": "error", "reason": "polling_error", "message": "APIConnectionError: gone",
             "batch_ids": ti.xcom["batch_ids"], "batches": [], "cancelled": []}
    with pytest.raises(AirflowException, match="polling_error"):
        make_op(images, tmp_path, deferrable=True).execute_complete({}, event, output_uri=str(tmp_path / "r.jsonl"))
    wait_status(QwenOcrHook(), ti.xcom["batch_ids"][0], {"cancelled"})
