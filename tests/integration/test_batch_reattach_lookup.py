"""Finding a task instance's batches through the documented list filters only (issue 19), on the emulator.

``BatchClient.find_batches`` pages with ``after``/``has_more`` and filters by ``ds_name``/``status``; the
emulator refuses any undocumented filter with 400, so passing here means the lookup needs nothing the
service does not document. The decision (``runs.reattach.decide``) is then run on what was found: a batch
that expired with half its lines answered leaves exactly the other half to send.
"""

from __future__ import annotations

import io
import time

import pytest

from airflow_provider_qwenocr.dashscope.batch import BATCH_ENDPOINT, BatchClient
from airflow_provider_qwenocr.dashscope.batch_jsonl import BatchBuilder
from airflow_provider_qwenocr.dashscope.config import ClientConfig
from airflow_provider_qwenocr.ocr.request import build_ocr_request
from airflow_provider_qwenocr.runs import orphans
from airflow_provider_qwenocr.runs import reattach as ra
from tests.integration.batch_support import API_KEY, png, wait_status

pytestmark = pytest.mark.integration
ID = ra.TaskIdentity("reattach_dag", "ocr", "manual__1", -1)


@pytest.fixture
def srv(make_emulator):
    return make_emulator(engine="echo", batch_seconds=0.3)


@pytest.fixture
def client(srv):
    return BatchClient(ClientConfig(api_key=API_KEY, base_url=srv.base_url))


def plan_of(n: int, tmp_path):
    builder = BatchBuilder(request=build_ocr_request(task="text_recognition"), spool_dir=str(tmp_path))
    for i in range(n):
        builder.add_image(f"img{i}.png", png(f"page {i}"))
    plan = builder.build()
    keys = [[e.custom_id for e in plan.manifest if e.part == i] for i in range(len(plan.parts))]
    return plan, keys


def create(client, content: bytes, identity, request_fp, keys, index=1, n=1) -> dict:
    f = client.upload_file(io.BytesIO(content), filename="part.jsonl")
    return client.create_batch(f["id"], metadata=ra.batch_metadata(identity, request_fp, index, n, keys))


def test_find_batches_pages_through_every_batch_of_one_task_instance(srv, client, tmp_path):
    plan, keys = plan_of(2, tmp_path)
    req = ra.request_fingerprint(keys, plan.model, BATCH_ENDPOINT)
    content = plan.parts[0].read_bytes()
    mine = [create(client, content, ID, req, keys[0])["id"] for _ in range(5)]
    other = create(client, content, ra.TaskIdentity("reattach_dag", "ocr", "manual__2"), req, keys[0])["id"]
    found = client.find_batches(ds_name=ID.ds_name, page_size=2)  # 3 pages
    assert sorted(b["id"] for b in found) == sorted(mine) and other not in {b["id"] for b in found}
    assert all(b["metadata"][ra.KEY_REQUEST] == req for b in found)
    assert client.find_batches(ds_name=ID.ds_name, statuses=["failed", "expired"]) == []
    assert client.find_batches(ds_name=ra.TaskIdentity("x", "y", "z").ds_name) == []
    assert sorted(b["id"] for b in ra.gather(client, ID, recorded=[mine[0], "batch_unknown"])) == sorted(mine)


def test_expired_half_done_leaves_only_the_other_half_to_submit(srv, client, tmp_path):
    srv.config.batch_outcome = "expire"  # the emulator answers the first half of the lines, then expires
    plan, keys = plan_of(6, tmp_path)
    req = ra.request_fingerprint(keys, plan.model, BATCH_ENDPOINT)
    first = create(client, plan.parts[0].read_bytes(), ID, req, keys[0])
    ended = wait_status(client, first["id"], {"expired"})
    assert ended["request_counts"] == {"total": 6, "completed": 3, "failed": 3}

    decision = ra.decide(keys, ra.gather(client, ID), ra.answered_ids(client))
    (part,) = decision.parts
    assert [b["id"] for b in part.attach] == [first["id"]] and part.done_elsewhere == 3
    assert part.submit == frozenset(keys[0][3:])  # the emulator answers lines in file order

    srv.config.batch_outcome = "complete"
    rest = io.BytesIO()
    with plan.parts[0].open() as fh:
        assert ra.copy_lines(fh, rest, part.submit) == 3
    second = create(client, rest.getvalue(), ID, req, part.submit)
    again = ra.decide(keys, ra.gather(client, ID), ra.answered_ids(client))
    assert again.to_submit == [] and {b["id"] for b in again.attached} == {first["id"], second["id"]}
    done = wait_status(client, second["id"], {"completed"})
    assert done["request_counts"]["total"] == 3
    plan.cleanup()


def test_find_orphans_lists_the_superseded_running_batch_with_documented_filters(make_emulator, tmp_path):
    slow = make_emulator(engine="echo", batch_seconds=30)
    client = BatchClient(ClientConfig(api_key=API_KEY, base_url=slow.base_url))
    plan, keys = plan_of(2, tmp_path)
    content = plan.parts[0].read_bytes()
    old = create(client, content, ID, "old-request", keys[0])
    new = create(client, content, ID, ra.request_fingerprint(keys, plan.model, BATCH_ENDPOINT), keys[0])
    foreign = client.create_batch(client.upload_file(io.BytesIO(content))["id"], metadata={"ds_name": "theirs"})
    assert [b["id"] for b in orphans.find_orphans(client)] == [old["id"]]
    assert orphans.find_orphans(client, dag_id="another_dag") == []
    gone = orphans.find_orphans(client, gone=lambda ident, b: ident == ID)
    assert [b["id"] for b in gone] == [new["id"], old["id"]] and foreign["id"] not in {b["id"] for b in gone}
    assert orphans.find_orphans(client, now=time.time() + 16 * 86400) == []  # created before the horizon
