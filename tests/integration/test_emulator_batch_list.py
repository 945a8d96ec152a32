"""``GET /compatible-mode/v1/batches`` answers the documented filters and refuses the others (issue 19.4).

A batch re-attach must find its batches through the documented API only: ``limit``, ``after``, ``status``
(comma list), ``create_after``/``create_before`` (yyyyMMddHHmmss, Beijing time), ``ds_name``,
``input_file_ids`` (≤ 20). The official openai SDK (``batches.list`` + ``extra_query``) and raw httpx both
talk to the emulator; ``metadata`` given at create comes back whole on get and list.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from conftest import RECORDINGS

openai = pytest.importorskip("openai")

pytestmark = pytest.mark.integration
KEY = "sk-test-emulator"
BEIJING = timezone(timedelta(hours=8))
LINE = {"custom_id": "1", "method": "POST", "url": "/v1/chat/ds-test",
        "body": {"model": "batch-test-model", "messages": [{"role": "user", "content": "hello"}]}}


@pytest.fixture
def srv(make_emulator):
    return make_emulator(engine="echo", batch_seconds=30)  # batches stay in progress while the test lists them


@pytest.fixture
def client(srv):
    return openai.OpenAI(api_key=KEY, base_url=srv.compatible_base, max_retries=0, timeout=10)


@pytest.fixture
def http(srv):
    with httpx.Client(base_url=srv.compatible_base, headers={"Authorization": f"Bearer {KEY}"},
                      trust_env=False, timeout=10) as c:
        yield c


def create(client, metadata=None):
    f = client.files.create(file=("in.jsonl", json.dumps(LINE).encode() + b"\n", "application/jsonl"),
                            purpose="batch")
    return client.batches.create(input_file_id=f.id, endpoint="/v1/chat/ds-test", completion_window="24h",
                                 metadata=metadata)


def beijing(ts: int) -> str:
    return datetime.fromtimestamp(ts, BEIJING).strftime("%Y%m%d%H%M%S")


def test_metadata_is_kept_whole_and_found_by_ds_name(client):
    meta = {"ds_name": "qwenocr dag1.ocr run-7 #0", "ds_description": "idem:5f2a", "qwenocr_key": "5f2a",
            "ds_batch_finish_callback": "http://127.0.0.1:9/done"}
    mine = create(client, meta)
    other = create(client, {"ds_name": "someone else"})
    bare = create(client)  # no metadata at all
    assert mine.metadata == meta and client.batches.retrieve(mine.id).metadata == meta
    found = client.batches.list(extra_query={"ds_name": "dag1.ocr run-7"})  # a part of the name finds it
    assert [b.id for b in found.data] == [mine.id] and found.data[0].metadata == meta
    everything = client.batches.list().data
    assert [b.id for b in everything] == [bare.id, other.id, mine.id]
    assert [b.metadata for b in everything] == [None, {"ds_name": "someone else"}, meta]


def test_newest_first_and_paging_with_after(client):
    made = [create(client, {"ds_name": f"page {i}"}).id for i in range(5)]
    first = client.batches.list(limit=2)
    assert [b.id for b in first.data] == made[::-1][:2] and first.has_more is True
    assert [b.id for b in client.batches.list(limit=2)] == made[::-1], "the SDK's auto-paging follows after="
    last = client.batches.list(limit=2, after=made[1])
    assert [b.id for b in last.data] == [made[0]] and last.has_more is False


def test_status_filter_is_a_comma_list(client, srv):
    keep, stop = create(client), create(client)
    client.batches.cancel(stop.id)
    deadline = time.monotonic() + 10
    while client.batches.retrieve(stop.id).status != "cancelled":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert [b.id for b in client.batches.list(extra_query={"status": "cancelled"}).data] == [stop.id]
    busy = client.batches.list(extra_query={"status": "validating,in_progress"}).data
    assert [b.id for b in busy] == [keep.id]
    both = client.batches.list(extra_query={"status": "cancelled,validating,in_progress"}).data
    assert {b.id for b in both} == {keep.id, stop.id}


def test_create_window_is_beijing_wall_time_inclusive(client, http):
    b = create(client)
    at = b.created_at
    assert [x["id"] for x in http.get("/batches", params={"create_after": beijing(at)}).json()["data"]] == [b.id]
    assert http.get("/batches", params={"create_before": beijing(at - 1)}).json()["data"] is None
    page = http.get("/batches", params={"create_after": beijing(at), "create_before": beijing(at)}).json()
    assert [x["id"] for x in page["data"]] == [b.id]
    utc = datetime.fromtimestamp(at, timezone.utc).strftime("%Y%m%d%H%M%S")  # 8 h earlier than Beijing
    assert http.get("/batches", params={"create_before": utc}).json()["data"] is None


def test_input_file_ids_take_at_most_20(client, http):
    b = create(client)
    twenty = [b.input_file_id] + [f"file-batch-none{i}" for i in range(19)]
    page = client.batches.list(extra_query={"input_file_ids": ",".join(twenty)})
    assert [x.id for x in page.data] == [b.id]
    resp = http.get("/batches", params={"input_file_ids": ",".join(twenty + ["file-batch-x"])})
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "input_file_ids"


@pytest.mark.parametrize("query", [
    {"metadata[ds_name]": "x"},          # the OpenAI-style metadata filter: not documented here
    {"order": "asc"},
    {"limit": "0"}, {"limit": "101"}, {"limit": "ten"},
    {"status": "done"}, {"status": "completed,finished"},
    {"create_after": "2026-04-17"}, {"create_after": "20261301000000"}, {"create_before": "202604171800"},
])
def test_undocumented_filters_and_malformed_values_are_refused(http, query):
    resp = http.get("/batches", params=query)
    assert resp.status_code == 400, resp.text
    want = json.loads((RECORDINGS / "upload-file-error-nosse.response.body.txt").read_text())
    body = resp.json()
    assert set(body) == set(want) and set(body["error"]) == set(want["error"])
    assert body["error"]["type"] == "invalid_request_error" and body["error"]["param"] == next(iter(query))


def test_a_repeated_filter_and_the_sdk_path_are_refused(client, http):
    assert http.get("/batches?status=completed&status=failed").status_code == 400
    with pytest.raises(openai.BadRequestError) as err:
        client.batches.list(extra_query={"metadata[qwenocr_key]": "5f2a"})
    assert "metadata[qwenocr_key]" in str(err.value)


def test_metadata_must_be_string_values(client, http):
    f = client.files.create(file=("in.jsonl", json.dumps(LINE).encode() + b"\n", "application/jsonl"), purpose="batch")
    body = {"input_file_id": f.id, "endpoint": "/v1/chat/ds-test", "completion_window": "24h"}
    for bad in ({"ds_name": 7}, ["ds_name"], "ds_name"):
        resp = http.post("/batches", json={**body, "metadata": bad})
        assert resp.status_code == 400 and resp.json()["error"]["param"] == "metadata", bad
    assert http.get("/batches").json()["data"] is None, "nothing was created"
