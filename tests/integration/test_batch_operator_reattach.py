"""QwenOcrBatchOperator re-attaches on retry (issue 19), execute()/trigger.run()/execute_complete() on the emulator.

The task instance is a stand-in with the identity Airflow gives it (dag, task, run, map index) and, for
Airflow ≥ 3.3, a dict standing in for ``context["task_state_store"]``. Measured on the emulator: batches
created, lines each carried, rows landed.
"""

from __future__ import annotations

import asyncio
import logging

import pytest
from airflow.exceptions import TaskDeferred

from airflow_provider_qwenocr._compat import AirflowException
from airflow_provider_qwenocr.operators.batch import QwenOcrBatchOperator
from airflow_provider_qwenocr.runs import reattach as ra
from airflow_provider_qwenocr.runs.results_store import read_results
from tests.integration.batch_support import FakeTI, conn_env, png, start_server

pytestmark = pytest.mark.integration
N = 6


class TI(FakeTI):
    def __init__(self, run_id="scheduled__2026-12-03", map_index=-1):
        super().__init__()
        self.dag_id, self.task_id, self.run_id, self.map_index = "reattach_dag", "ocr", run_id, map_index


class Store:
    """``context["task_state_store"]``: get/set of JSON values, kept across the tries of one task instance."""

    def __init__(self):
        self.values = {}

    def get(self, key, default=None):
        return self.values.get(key, default)

    def set(self, key, value, **_):
        self.values[key] = value


@pytest.fixture
def srv(monkeypatch):
    s = start_server(batch_seconds=0.4)
    monkeypatch.setenv("AIRFLOW_CONN_DASHSCOPE_DEFAULT", conn_env(s.base_url))
    yield s
    s.stop()


@pytest.fixture
def images(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    for i in range(N):
        (d / f"p{i}.png").write_bytes(png(f"retry page {i}"))
    return d


def lines_sent(srv) -> list[int]:
    from tests.integration.batch_support import _store

    store = _store(srv)
    return [len(store.content[b["input_file_id"]].splitlines()) for b in store.batches.values()]


def make_op(images, tmp_path, **kw):
    kw.setdefault("deferrable", False)
    return QwenOcrBatchOperator(task_id="ocr", images=str(images), output_uri=str(tmp_path / "r.jsonl"),
                                poll_interval=0.1, **kw)


def run(new_op, ctx):
    """execute(), and when it defers, the trigger to its one event and execute_complete on a fresh instance
    (what the triggerer and the resumed worker do)."""
    try:
        return new_op().execute(ctx)
    except TaskDeferred as deferred:
        events = asyncio.run(_collect(deferred.trigger))
        assert len(events) == 1
        return getattr(new_op(), deferred.method_name)(ctx, event=events[0].payload, **(deferred.kwargs or {}))


def logged(caplog, capsys) -> str:
    """The task log: stdlib records (caplog) and Airflow 3's structlog lines (stdout)."""
    out = capsys.readouterr()
    return caplog.text + out.out + out.err


async def _collect(trigger):
    return [e async for e in trigger.run()]


@pytest.mark.parametrize("use_cache", [False, True], ids=["no-cache", "cache"])
@pytest.mark.parametrize("deferrable", [False, True], ids=["in-worker", "deferred"])
def test_expired_half_done_then_retry_submits_only_the_other_half(srv, images, tmp_path, caplog, capsys, use_cache,
                                                                 deferrable):
    srv.config.batch_outcome = "expire"  # the emulator answers the first half of the lines, then expires
    ti, store = TI(), Store()
    with pytest.raises(AirflowException, match="3 of 6 images failed"):
        run(lambda: make_op(images, tmp_path, use_cache=use_cache, deferrable=deferrable),
            {"ti": ti, "task_state_store": store})
    (first,) = store.values[ra.STATE_KEY]
    srv.config.batch_outcome = "complete"

    caplog.set_level(logging.INFO)
    summary = run(lambda: make_op(images, tmp_path, use_cache=use_cache, deferrable=deferrable),
                  {"ti": ti, "task_state_store": store})
    assert lines_sent(srv) == [N, N // 2], "the retry sends only the lines without a result"
    rows = list(read_results(str(tmp_path / "r.jsonl")))
    assert len(rows) == N and all(r["status"] == "ok" for r in rows) and summary["n_ok"] == N
    assert len({r["source"] for r in rows}) == N
    if use_cache:  # the first try landed its 3 answers in the cache: they are not sent, nor re-attached
        assert summary["n_cached"] == N // 2 and summary["batch_ids"] != [first]
    else:  # nothing cached: the expired batch is re-attached for its 3 answers, the rest goes in a new one
        assert summary["batch_ids"][0] == first and len(summary["batch_ids"]) == 2
        text = logged(caplog, capsys)
        assert f"re-attached to {first} (recorded in the task state store)" in text
        assert "3 line(s) already answered, submitting only the other 3" in text
        paid = [r for r in rows if (r.get("usage") or {}).get("input_tokens")]
        assert len(paid) == N  # each image billed once, by the batch that answered it


def test_metadata_lookup_alone_reattaches_on_airflow_without_a_state_store(srv, images, tmp_path, caplog, capsys):
    srv.config.batch_seconds = 30
    ti = TI()
    op = make_op(images, tmp_path, wait_for_completion=False)
    first = op.execute({"ti": ti})["batch_ids"]
    caplog.set_level(logging.INFO)
    again = make_op(images, tmp_path, wait_for_completion=False).execute({"ti": ti})
    assert again["batch_ids"] == first and srv.batch_creations() == 1
    assert f"re-attached to {first[0]} (found by its metadata)" in logged(caplog, capsys)
    other = make_op(images, tmp_path, wait_for_completion=False).execute({"ti": TI(map_index=1)})
    assert other["batch_ids"] != first and srv.batch_creations() == 2  # another task instance, other work


def test_a_rerun_with_other_images_leaves_the_old_batch_running_and_names_it(srv, images, tmp_path, caplog,
                                                                             capsys):
    srv.config.batch_seconds = 30
    ti = TI()
    first = make_op(images, tmp_path, wait_for_completion=False).execute({"ti": ti})["batch_ids"]
    (images / "p0.png").write_bytes(png("a changed page"))
    caplog.set_level(logging.INFO)
    second = make_op(images, tmp_path, wait_for_completion=False).execute({"ti": ti})["batch_ids"]
    assert second != first and srv.batch_creations() == 2
    text = logged(caplog, capsys)
    assert f"left batch {first[0]}" in text and "not cancelled" in text
    from airflow_provider_qwenocr.hooks.qwenocr import QwenOcrHook

    hook = QwenOcrHook()
    assert [b["id"] for b in hook.find_orphan_batches()] == first
    assert hook.cancel_orphan_batches(dag_id="another_dag") == []
    assert hook.cancel_orphan_batches() == first
    assert hook.get_batch(first[0])["status"] in ("cancelling", "cancelled")
    assert hook.get_batch(second[0])["status"] not in ("cancelling", "cancelled")


def test_a_first_try_does_not_list_batches_and_the_retry_does(srv, images, tmp_path, monkeypatch):
    """The service allows 100 list calls a minute per account: a first try (which cannot have created
    anything) writes the metadata but skips the lookup; try 2 looks up and re-attaches."""
    from airflow_provider_qwenocr.dashscope.batch import BatchClient

    calls = []
    real = BatchClient.find_batches
    monkeypatch.setattr(BatchClient, "find_batches", lambda self, **kw: calls.append(kw) or real(self, **kw))
    srv.config.batch_seconds = 30
    ti = TI()
    ti.try_number = 1
    first = make_op(images, tmp_path, wait_for_completion=False).execute({"ti": ti})["batch_ids"]
    assert calls == [] and srv.batch_creations() == 1
    ti.try_number = 2
    again = make_op(images, tmp_path, wait_for_completion=False).execute({"ti": ti})["batch_ids"]
    assert again == first and srv.batch_creations() == 1 and [c["ds_name"] for c in calls] == [
        ra.TaskIdentity("reattach_dag", "ocr", "scheduled__2026-12-03").ds_name]
