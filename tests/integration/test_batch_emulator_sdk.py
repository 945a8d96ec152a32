"""The emulator's Batch API through the official openai SDK, and its shapes against the recorded exchanges."""

from __future__ import annotations

import json
import time

import openai
import pytest

from airflow_provider_qwenocr.dashscope.batch_jsonl import BatchBuilder, encode_line, request_line
from conftest import RECORDINGS
from tests.integration.batch_support import API_KEY, png, red_png, server_fixture, start_server

pytestmark = pytest.mark.integration


server = server_fixture(batch_seconds=0.6)


@pytest.fixture
def client(server):
    return openai.OpenAI(api_key=API_KEY, base_url=server.base_url + "/compatible-mode/v1", max_retries=0, timeout=10)


def recorded(name: str) -> dict:
    return json.loads((RECORDINGS / f"{name}.response.body.txt").read_text())


def poll(client, batch_id: str, timeout: float = 30.0):
    deadline = time.time() + timeout
    seen = []
    while True:
        b = client.batches.retrieve(batch_id)
        if not seen or seen[-1] != b.status:
            seen.append(b.status)
        if b.status in ("completed", "failed", "expired", "cancelled"):
            return b, seen
        assert time.time() < deadline, f"stuck: {seen}"
        time.sleep(0.05)


def upload_images(client, images: list[bytes], **builder_kw) -> tuple[str, list[str]]:
    b = BatchBuilder(**builder_kw)
    ids = [b.add_image(f"{i}.png", data).custom_id for i, data in enumerate(images)]
    (part,) = b.build().parts
    f = client.files.create(file=("in.jsonl", part.read_bytes(), "application/jsonl"), purpose="batch")
    return f.id, ids


def test_full_lifecycle_upload_create_poll_content(client):
    file_id, ids = upload_images(client, [png("one"), png("two", size=(300, 90))])
    assert file_id.startswith("file-batch-")
    created = client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions",
                                    completion_window="24h", metadata={"ds_name": "nightly ocr"})
    assert created.status == "validating" and created.id.startswith("batch_")
    done, seen = poll(client, created.id)
    assert seen[-1] == "completed"
    assert "in_progress" in seen  # the lifecycle is observable, not a jump to completed
    assert done.request_counts.total == 2 and done.request_counts.completed == 2 and done.request_counts.failed == 0
    assert done.in_progress_at and done.finalizing_at and done.completed_at and done.error_file_id is None
    lines = [json.loads(x) for x in client.files.content(done.output_file_id).content.decode().splitlines()]
    assert sorted(x["custom_id"] for x in lines) == sorted(ids)
    for x in lines:
        assert x["response"]["status_code"] == 200 and x["error"] is None
        assert x["response"]["body"]["choices"][0]["message"]["content"]
        assert x["response"]["body"]["usage"]["prompt_tokens"] > 0
    # file get/delete
    assert client.files.retrieve(file_id).bytes > 0
    assert client.files.delete(file_id).deleted is True
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(file_id)


def test_failed_line_goes_to_error_file(client):
    file_id, ids = upload_images(client, [png("fine"), red_png()])
    done, _ = poll(client, client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions",
                                                 completion_window="24h").id)
    assert done.status == "completed"
    assert (done.request_counts.completed, done.request_counts.failed) == (1, 1)
    err = [json.loads(x) for x in client.files.content(done.error_file_id).content.decode().splitlines()]
    assert len(err) == 1 and err[0]["custom_id"] == ids[1]
    assert err[0]["error"]["code"] == "DataInspectionFailed"


@pytest.mark.parametrize(("mutate", "code"), [
    (lambda lines: [{**lines[0], "url": "/v1/chat/completion"}, *lines[1:]], "url_not_found"),
    (lambda lines: [lines[0], {**lines[1], "body": {**lines[1]["body"], "model": "qwen-vl-ocr-latest"}}],
     "mismatched_model"),
    (lambda lines: [lines[0], {**lines[1], "custom_id": lines[0]["custom_id"]}], "duplicate_custom_id"),
    (lambda lines: [{**x, "body": {**x["body"], "model": "qwen-max"}} for x in lines], "model_not_found"),
])
def test_validation_failures_fail_the_batch_with_errors(client, mutate, code):
    lines = [request_line(f"id-{i}", "data:image/png;base64,AAAA", "hi", model="qwen-vl-ocr") for i in range(2)]
    content = b"".join(encode_line(x) for x in mutate(lines))
    f = client.files.create(file=("bad.jsonl", content, "application/jsonl"), purpose="batch")
    done, _ = poll(client, client.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions",
                                                 completion_window="24h").id)
    assert done.status == "failed" and done.failed_at
    assert {e.code for e in done.errors.data} == {code}
    assert done.errors.data[0].line >= 1
    assert done.output_file_id is None


def test_cancel_goes_through_cancelling_to_cancelled():
    srv = start_server(batch_seconds=20)
    try:
        client = openai.OpenAI(api_key=API_KEY, base_url=srv.base_url + "/compatible-mode/v1", max_retries=0)
        file_id, _ = upload_images(client, [png("a"), png("b", size=(210, 70))])
        b = client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h")
        cancelling = client.batches.cancel(b.id)
        assert cancelling.status == "cancelling" and cancelling.cancelling_at
        done, _ = poll(client, b.id)
        assert done.status == "cancelled" and done.cancelled_at
        assert done.request_counts.failed + done.request_counts.completed == 2
        if done.request_counts.failed:
            assert done.error_file_id
    finally:
        srv.stop()


@pytest.mark.parametrize("outcome", ["fail", "expire"])
def test_outcome_knob(outcome):
    srv = start_server(batch_seconds=0.4, batch_outcome=outcome)
    try:
        client = openai.OpenAI(api_key=API_KEY, base_url=srv.base_url + "/compatible-mode/v1", max_retries=0)
        file_id, ids = upload_images(client, [png("a"), png("b", size=(210, 70))])
        done, _ = poll(client, client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions",
                                                     completion_window="24h").id)
        if outcome == "fail":
            assert done.status == "failed" and done.errors.data
        else:
            assert done.status == "expired" and done.expired_at
            assert done.request_counts.completed == 1 and done.request_counts.failed == 1
            err = [json.loads(x) for x in client.files.content(done.error_file_id).content.decode().splitlines()]
            assert err[0]["error"]["code"] == "batch_expired"
    finally:
        srv.stop()


def test_missing_key_is_refused(client):
    resp = client._client.get(f"{client.base_url}batches")  # no Authorization header
    assert resp.status_code == 401
    assert "error" in resp.json() or resp.json().get("code") == "InvalidApiKey"


def test_list_filters_and_paging_like_the_service(client):
    made = []
    for name in ("alpha 任务", "beta 任务", "gamma"):
        file_id, _ = upload_images(client, [png(name)])
        made.append(client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions",
                                          completion_window="24h", metadata={"ds_name": name}))
    base = client.base_url
    http = client._client  # httpx client of the SDK: raw query strings as the recordings use them
    headers = {"Authorization": f"Bearer {API_KEY}"}

    def get(query: str) -> dict:
        return http.get(f"{base}batches?{query}", headers=headers).json()

    page1 = get("limit=1&ds_name=%E4%BB%BB%E5%8A%A1")
    assert [b["metadata"]["ds_name"] for b in page1["data"]] == ["beta 任务"]  # newest first
    assert page1["has_more"] is True and page1["first_id"] == page1["last_id"] == made[1].id
    page2 = get(f"after={page1['last_id']}&limit=1&ds_name=%E4%BB%BB%E5%8A%A1")
    assert [b["id"] for b in page2["data"]] == [made[0].id] and page2["has_more"] is False
    by_file = get(f"input_file_ids={made[2].input_file_id}")
    assert [b["id"] for b in by_file["data"]] == [made[2].id]
    assert get("limit=2&input_file_ids=hello") == recorded("list-batches-empty-compatible-nosse")
    far_future = get("create_after=20990101000000")
    assert far_future["data"] is None
    assert len(get("create_before=20990101000000&limit=100")["data"]) >= 3


def _shape(value):
    """Keys (recursively) and JSON types, ignoring values: what must match the real service."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shape(value[0])] if value else []
    return type(value).__name__ if value is not None else None


def _keys(value):
    return set(value) if isinstance(value, dict) else set()


def test_recorded_shapes_are_reproduced(client, server):
    file_id, _ = upload_images(client, [png("shape")])
    http, base = client._client, client.base_url
    headers = {"Authorization": f"Bearer {API_KEY}"}
    rec_create = json.loads((RECORDINGS / "create-batch-compatible-nosse.request.body.json").read_text())
    body = {**rec_create, "input_file_id": file_id, "endpoint": "/v1/chat/completions"}
    created = http.post(f"{base}batches", json=body, headers=headers).json()
    want = recorded("create-batch-compatible-nosse")
    assert _keys(created) == _keys(want)
    assert created["status"] == "validating" and created["metadata"] == rec_create["metadata"]
    assert _keys(created["request_counts"]) == _keys(want["request_counts"])
    done = http.get(f"{base}batches/{created['id']}", headers=headers).json()
    while done["status"] not in ("completed", "failed"):
        time.sleep(0.05)
        done = http.get(f"{base}batches/{created['id']}", headers=headers).json()
    rec_done = recorded("get-completed-batch-compatible-nosse")
    assert _keys(done) == _keys(rec_done)
    for k in ("created_at", "in_progress_at", "finalizing_at", "completed_at"):
        assert isinstance(done[k], int)  # unix seconds, like the service
    assert done["output_file_id"].startswith("file-batch_output-")
    content = http.get(f"{base}files/{done['output_file_id']}/content", headers=headers).text
    line = json.loads(content.splitlines()[0])
    rec_line = json.loads((RECORDINGS / "get-file-content-compatible-nosse.response.body.txt").read_text()
                          .splitlines()[0])
    assert _keys(line) == _keys(rec_line)
    assert _keys(line["response"]) == _keys(rec_line["response"])
    assert {"usage", "model", "id", "choices", "object", "created"} <= _keys(line["response"]["body"])
    f = http.get(f"{base}files/{file_id}", headers=headers).json()
    assert _keys(f) == _keys(recorded("get-file-compatible-nosse"))
    assert _keys(http.delete(f"{base}files/{file_id}", headers=headers).json()) == \
        _keys(recorded("delete-file-compatible-nosse"))
    listed = http.get(f"{base}batches?limit=2", headers=headers).json()
    assert _keys(listed) == _keys(recorded("list-batches-search-status-compatible-nosse"))
    cancel = recorded("cancel-batch-compatible-nosse")
    got = http.post(f"{base}batches/{done['id']}/cancel", headers=headers).json()
    assert _keys(got) == _keys(cancel)
    assert got["status"] == "completed"  # a finished batch cannot be cancelled any more


def test_recorded_failure_cancel_and_upload_shapes(client):
    http, base = client._client, client.base_url
    headers = {"Authorization": f"Bearer {API_KEY}"}
    up = client.files.create(file=("test2.txt", b"hello", "text/plain"), purpose="file-extract")
    assert up.id.startswith("file-fe-")  # the recorded upload's prefix for this purpose
    assert set(up.model_dump()) >= set(recorded("upload-file-compatible-nosse"))
    bad = http.post(f"{base}files", files={"file": ("x.jsonl", b"{}")}, data={"purpose": "nope"}, headers=headers)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "purpose"

    lines = [request_line("1", "data:image/png;base64,AAAA", "hi", model="qwen-vl-ocr")]
    content = b"".join(encode_line({**x, "url": "/v1/chat/completion"}) for x in lines)
    f = client.files.create(file=("bad.jsonl", content, "application/jsonl"), purpose="batch")
    failed, _ = poll(client, client.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions",
                                                   completion_window="24h").id)
    got = http.get(f"{base}batches/{failed.id}", headers=headers).json()  # raw JSON, not the SDK's model
    want = recorded("get-invalid-batch-compatible-nosse")
    assert set(got) == set(want) and set(got["errors"]) == set(want["errors"])
    assert set(got["errors"]["data"][0]) == set(want["errors"]["data"][0])
    assert got["errors"]["data"][0]["message"] == want["errors"]["data"][0]["message"]

    file_id, _ = upload_images(client, [png("c")])
    srv_batch = client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h")
    client.batches.cancel(srv_batch.id)
    cancelled, _ = poll(client, srv_batch.id)
    want = recorded("get-cancelled-batch-compatible-nosse")
    assert set(http.get(f"{base}batches/{cancelled.id}", headers=headers).json()) == set(want)
    assert cancelled.cancelling_at and cancelled.cancelled_at
    for name in ("list-batches-filter-by-time", "list-batches-search-status", "list-batches-filter-by-input-file-id"):
        query = (RECORDINGS / f"{name}-compatible-nosse.request.header.txt").read_text().split()[1].split("?", 1)[1]
        page = http.get(f"{base}batches?{query}", headers=headers)
        assert page.status_code == 200 and set(page.json()) == {"object", "data", "first_id", "last_id", "has_more"}


def test_test_endpoint_answers_without_inference(client):
    lines = [{"custom_id": str(i), "method": "POST", "url": "/v1/chat/ds-test",
              "body": {"model": "batch-test-model", "messages": [{"role": "user", "content": "hello"}]}}
             for i in (1, 2)]
    f = client.files.create(file=("t.jsonl", b"".join(encode_line(x) for x in lines), "application/jsonl"),
                            purpose="batch")
    done, _ = poll(client, client.batches.create(input_file_id=f.id, endpoint="/v1/chat/ds-test",
                                                 completion_window="24h").id)
    assert done.status == "completed" and done.request_counts.completed == 2
    out = [json.loads(x) for x in client.files.content(done.output_file_id).content.decode().splitlines()]
    assert {x["custom_id"] for x in out} == {"1", "2"}
    assert all(x["response"]["body"]["usage"]["total_tokens"] == 0 for x in out)


def test_our_client_lists_files_and_batches(server, client):
    from airflow_provider_qwenocr.dashscope.batch import BatchClient
    from airflow_provider_qwenocr.dashscope.config import ClientConfig

    ours = BatchClient(ClientConfig(api_key=API_KEY, base_url=server.base_url, max_retries=0))
    f = ours.upload_file(b'{"custom_id":"x"}\n', "one.jsonl")
    assert f["id"] in {x["id"] for x in ours.list_files()["data"]}
    b = ours.create_batch(f["id"], metadata={"ds_name": "ours-only"})
    page = ours.list_batches(ds_name="ours-only", status=["validating", "in_progress", "failed"],
                             input_file_ids=[f["id"]], limit=5)
    assert [x["id"] for x in page["data"]] == [b["id"]]
    assert ours.list_batches(ds_name="no-such-name")["data"] == []  # null from the service becomes []
    with pytest.raises(ValueError, match="at most 20"):
        ours.list_batches(input_file_ids=[f"f{i}" for i in range(21)])
