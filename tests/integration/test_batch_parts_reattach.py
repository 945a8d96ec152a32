"""``runs.batch_parts.create_batches`` on the emulator: a second try of one task instance never pays twice.

The emulator counts the batches created and the lines each carried; ``BatchRunner.land`` turns what the
batches answered into rows. Loopback only, echo engine.
"""

from __future__ import annotations

import json

import pytest

from airflow_provider_qwenocr.dashscope.batch import BatchClient, cancel_batches
from airflow_provider_qwenocr.dashscope.batch_jsonl import BatchBuilder, BatchLimits, dump_manifest
from airflow_provider_qwenocr.dashscope.config import ClientConfig
from airflow_provider_qwenocr.ocr.request import build_ocr_request
from airflow_provider_qwenocr.runs import reattach as ra
from airflow_provider_qwenocr.runs.batch import BatchRunner
from airflow_provider_qwenocr.runs.batch_parts import create_batches
from tests.integration.batch_support import API_KEY, png, start_server, wait_status

pytestmark = pytest.mark.integration
ID = ra.TaskIdentity("reattach_dag", "ocr", "scheduled__2026-12-03", 3)


@pytest.fixture
def srv():
    s = start_server(batch_seconds=0.3)
    yield s
    s.stop()


@pytest.fixture
def client(srv):
    return BatchClient(ClientConfig(api_key=API_KEY, base_url=srv.base_url))


def lines_sent(srv) -> list[int]:
    from tests.integration.batch_support import _store

    store = _store(srv)
    return [len(store.content[b["input_file_id"]].splitlines()) for b in store.batches.values()]


def build(tmp_path, n=6, limits=None, text="page"):
    tmp_path.mkdir(parents=True, exist_ok=True)
    builder = BatchBuilder(request=build_ocr_request(task="text_recognition"), limits=limits,
                           spool_dir=str(tmp_path))
    for i in range(n):
        builder.add_image(f"img{i}.png", png(f"{text} {i}"))
    return builder.build()


def test_second_try_reattaches_to_every_part_and_creates_nothing(srv, client, tmp_path):
    plan = build(tmp_path, n=5, limits=BatchLimits(max_lines=2))  # 3 parts
    seen: list[list[str]] = []
    first = create_batches(client, plan, identity=ID, on_batch_created=seen.append)
    assert len(first.created) == 3 and seen[-1] == first.batch_ids and lines_sent(srv) == [2, 2, 1]
    again = create_batches(client, plan, identity=ID, recorded=first.batch_ids[:1])
    assert again.created == [] and again.input_file_ids == [] and sorted(again.batch_ids) == sorted(first.batch_ids)
    assert srv.batch_creations() == 3 and srv.file_uploads() == 3
    other_run = create_batches(client, plan, identity=ra.TaskIdentity("reattach_dag", "ocr", "other", 3))
    assert len(other_run.created) == 3  # another task instance is other work


def test_killed_between_parts_sends_only_the_missing_part(srv, client, tmp_path):
    plan = build(tmp_path, n=4, limits=BatchLimits(max_lines=2))

    class Killed(BaseException):
        pass

    def die_after_first(ids):
        raise Killed

    with pytest.raises(Killed):
        create_batches(client, plan, identity=ID, on_batch_created=die_after_first)
    again = create_batches(client, plan, identity=ID)
    assert len(again.created) == 1 and len(again.batch_ids) == 2 and lines_sent(srv) == [2, 2]
    meta = [b["metadata"] for b in (client.get_batch(i) for i in again.batch_ids)]
    assert sorted(m[ra.KEY_PART] for m in meta) == ["1/2", "2/2"]
    assert {m[ra.KEY_REQUEST] for m in meta} == {ra.request_fingerprint(
        [[e.custom_id for e in plan.manifest if e.part == i] for i in (0, 1)], plan.model, "/v1/chat/completions")}


def test_expired_half_done_retry_sends_the_other_half_and_lands_every_row_once(srv, client, tmp_path):
    srv.config.batch_outcome = "expire"
    plan = build(tmp_path)
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(dump_manifest(plan.manifest))
    first = create_batches(client, plan, identity=ID)
    wait_status(client, first.batch_ids[0], {"expired"})
    srv.config.batch_outcome = "complete"

    retry = create_batches(client, plan, identity=ID)
    assert lines_sent(srv) == [6, 3] and retry.credited == first.batch_ids
    assert retry.batch_ids == first.batch_ids + retry.created
    wait_status(client, retry.created[0], {"completed"})
    batches = [client.get_batch(b) for b in retry.batch_ids]
    assert [b["request_counts"]["completed"] for b in batches] == [3, 3]
    summary = BatchRunner(client).land(retry.batch_ids, output_uri=str(tmp_path / "r.jsonl"),
                                       manifest_uri=str(manifest), batches=batches)
    rows = [json.loads(x) for x in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert summary.n_ok == 6 and len(rows) == 6 and len({r["source"] for r in rows}) == 6
    assert all(r["status"] == "ok" for r in rows)
    assert [b["request_counts"] for b in ra.credit(batches, retry.credited)] == [
        {"total": 3, "completed": 3, "failed": 0}, {"total": 3, "completed": 3, "failed": 0}]


def test_metadata_the_service_would_refuse_is_refused_before_any_upload(srv, client, tmp_path):
    plan = build(tmp_path, n=1)
    with pytest.raises(ValueError, match="at most 16"):
        create_batches(client, plan, identity=ID, metadata={f"k{i}": "v" for i in range(12)})
    assert srv.file_uploads() == 0


def test_a_failed_create_cancels_only_what_this_call_created(srv, client, tmp_path):
    plan = build(tmp_path, n=4, limits=BatchLimits(max_lines=2))
    create_batches(client, plan, identity=ID, on_batch_created=lambda ids: None)
    srv.config.batch_seconds = 30
    plan3 = build(tmp_path / "more", n=6, limits=BatchLimits(max_lines=2), text="other")  # another request
    calls = {"n": 0}
    real = client.create_batch

    def flaky(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("boom")
        return real(*a, **k)

    client.create_batch = flaky
    cancelled: list[list[str]] = []
    with pytest.raises(RuntimeError):
        create_batches(client, plan3, identity=ID, cancel=lambda api, ids: cancelled.append(cancel_batches(api, ids)))
    assert len(cancelled) == 1 and len(cancelled[0]) == 1 and srv.batch_creations() == 3
    statuses = {b["id"]: b["status"] for b in client.find_batches(ds_name=ID.ds_name)}
    assert statuses.pop(cancelled[0][0]) in ("cancelling", "cancelled")
    assert len(statuses) == 2 and not {"cancelling", "cancelled"} & set(statuses.values())  # the first call's


def test_an_ended_batch_whose_output_was_deleted_is_not_reattached(srv, client, tmp_path):
    """delete_files=True removed the output after landing; with no cache, a re-run can only send again."""
    plan = build(tmp_path, n=2)
    first = create_batches(client, plan, identity=ID)
    done = wait_status(client, first.batch_ids[0], {"completed"})
    client.delete_file(done["output_file_id"])
    again = create_batches(client, plan, identity=ID)
    assert len(again.created) == 1 and again.batch_ids == again.created and lines_sent(srv) == [2, 2]
