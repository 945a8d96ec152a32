"""Batch input building/splitting and output parsing (pure: no server, no Airflow)."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image, ImageDraw

from airflow_provider_qwenocr.dashscope.batch import BATCH_ENDPOINT, BatchClient, BatchRegionError, BatchStatus
from airflow_provider_qwenocr.dashscope.batch_jsonl import (
    BatchBuilder,
    BatchLimits,
    dump_manifest,
    load_manifest,
)
from airflow_provider_qwenocr.dashscope.batch_results import index_lines, result_from_line, results_for
from airflow_provider_qwenocr.dashscope.config import ClientConfig
from airflow_provider_qwenocr.ocr.images import image_tokens
from airflow_provider_qwenocr.ocr.models import get_model
from airflow_provider_qwenocr.ocr.request import OcrRequest
from airflow_provider_qwenocr.ocr.tasks import OcrTask, prompt_for
from conftest import RECORDINGS


def png(text: str, size=(240, 80), color=(255, 255, 255)) -> bytes:
    img = Image.new("RGB", size, color)
    ImageDraw.Draw(img).text((10, 30), text, fill=(0, 0, 0))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def lines_of(part) -> list[dict]:
    return [json.loads(x) for x in part.read_bytes().decode().splitlines()]


def test_lines_carry_fixed_prompt_key_and_pixels_next_to_image_url():
    b = BatchBuilder(task="table_parsing", model="qwen-vl-ocr", min_pixels=3072, max_pixels=800_000)
    entry = b.add_image("a.png", png("hello"))
    plan = b.build()
    assert len(plan.parts) == 1
    (line,) = lines_of(plan.parts[0])
    assert line["custom_id"] == entry.custom_id
    assert entry.custom_id == b.request.key(entry.sha256) != b.request.key("0" * 64)
    assert line["method"] == "POST" and line["url"] == BATCH_ENDPOINT
    body = line["body"]
    assert body["model"] == "qwen-vl-ocr"
    image, text = body["messages"][0]["content"]
    assert text == {"type": "text", "text": prompt_for("table_parsing")}
    assert image["image_url"]["url"].startswith("data:image/")
    assert image["min_pixels"] == 3072 and image["max_pixels"] == 800_000
    assert "ocr_options" not in json.dumps(body)
    # the manifest can map boxes back: sent size is the model grid, scale = original / sent
    assert entry.width == 240 and entry.height == 80 and entry.scale_x > 0
    assert plan.image_tokens == image_tokens(80, 240, 32, 3072, 800_000)  # what the service would bill


def test_split_by_line_count_and_by_file_size():
    images = [png(f"img {i}", color=(255, 255 - i, 255)) for i in range(5)]
    by_lines = BatchBuilder(limits=BatchLimits(max_lines=2))
    for i, data in enumerate(images):
        by_lines.add_image(f"{i}.png", data)
    plan = by_lines.build()
    assert [len(lines_of(p)) for p in plan.parts] == [2, 2, 1] == [p.n_lines for p in plan.parts]
    assert [e.part for e in plan.manifest] == [0, 0, 1, 1, 2]

    one_line = plan.parts[2].n_bytes
    by_size = BatchBuilder(limits=BatchLimits(max_file_bytes=int(one_line * 2.5)))
    for i, data in enumerate(images):
        by_size.add_image(f"{i}.png", data)
    sized = by_size.build()
    assert len(sized.parts) >= 2
    assert all(len(p.read_bytes()) == p.n_bytes <= int(one_line * 2.5) for p in sized.parts)
    assert sum(len(lines_of(p)) for p in sized.parts) == 5
    # every custom_id is unique across all parts
    ids = [x["custom_id"] for p in sized.parts for x in lines_of(p)]
    assert len(ids) == len(set(ids)) == 5


def test_oversized_line_and_bad_image_become_error_entries_not_crashes():
    b = BatchBuilder(limits=BatchLimits(max_line_bytes=200))
    big = b.add_image("big.png", png("x"))
    bad = b.add_image("broken.png", b"not an image")
    plan = b.build()
    assert plan.parts == []
    assert big.error["code"] == "LineTooLarge" and "max_pixels" in big.error["message"]
    assert bad.error["code"] == "InvalidImage"
    rows = [r.to_row() for r in results_for(plan.manifest, {})]
    assert [r["status"] for r in rows] == ["error", "error"]
    assert {r["source"] for r in rows} == {"big.png", "broken.png"}


def test_duplicates_sent_once_but_each_source_gets_a_row():
    data = png("same")
    b = BatchBuilder()
    first = b.add_image("a.png", data)
    b.add_image("copy-of-a.png", data)
    plan = b.build()
    assert plan.n_requests == 1 and plan.n_images == 2
    assert first.duplicates == ["copy-of-a.png"]
    line = {"custom_id": first.custom_id, "response": {"status_code": 200, "request_id": "r1", "body": {
        "model": "qwen-vl-ocr", "choices": [{"message": {"content": "same"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110}}}, "error": None}
    rows = [r.to_row() for r in results_for(plan.manifest, index_lines(json.dumps(line)))]
    assert [r["source"] for r in rows] == ["a.png", "copy-of-a.png"]
    assert [r["text"] for r in rows] == ["same", "same"]
    # the duplicate carries the one request's usage and cost (as a cache hit does): a warehouse load keeping one
    # row per key records the bill once whichever row comes last; the landing counts it as not billed
    assert rows[0]["usage"] == rows[1]["usage"] and rows[0]["cost"] == rows[1]["cost"]
    assert rows[0]["key"] == rows[1]["key"]


def test_recorded_output_file_parses_into_rows_with_half_price():
    content = (RECORDINGS / "get-file-content-compatible-nosse.response.body.txt").read_bytes()
    lines = index_lines(content)
    assert set(lines) == {"1", "2"}
    b = BatchBuilder(task="text_recognition", model="qwen-vl-ocr")
    entry = b.add_image("doc.png", png("doc"))
    entry.custom_id = "1"
    row = result_from_line(entry, lines["1"]).to_row()
    recorded = lines["1"]["response"]["body"]
    assert row["status"] == "ok"
    assert row["text"] == recorded["choices"][0]["message"]["content"]
    assert row["usage"]["input_tokens"] == recorded["usage"]["prompt_tokens"]
    assert row["usage"]["output_tokens"] == recorded["usage"]["completion_tokens"]
    assert row["request_id"] == lines["1"]["response"]["request_id"]
    full = get_model("qwen-vl-ocr").price("cn-beijing").cost(26, 49)
    assert row["cost"]["usd"] == pytest.approx(full["usd"] / 2, abs=1e-8)
    assert row["cost"]["cny"] == pytest.approx(full["cny"] / 2, abs=1e-8)
    for key in ("source", "sha256", "task", "model", "status", "text", "kv", "words", "usage", "error"):
        assert key in row


def test_error_lines_and_missing_lines_become_error_rows():
    b = BatchBuilder(task="key_information_extraction")
    e1 = b.add_image("1.png", png("one", color=(250, 250, 250)))
    e2 = b.add_image("2.png", png("two", color=(240, 240, 240)))
    e3 = b.add_image("3.png", png("three", color=(230, 230, 230)))
    plan = b.build()
    ok = {"custom_id": e1.custom_id, "response": {"status_code": 200, "body": {
        "choices": [{"message": {"content": '```json\n{"name": "Ann"}\n```'}}], "usage": {}}}, "error": None}
    failed = {"custom_id": e2.custom_id, "response": {"status_code": 400, "body": {"error": {
        "code": "DataInspectionFailed", "message": "inappropriate content"}}},
        "error": {"code": "DataInspectionFailed", "message": "inappropriate content"}}
    rows = {r.source: r.to_row() for r in results_for(plan.manifest, index_lines(json.dumps(ok), json.dumps(failed)),
                                                      missing_reason="batch expired")}
    assert rows["1.png"]["kv"] == {"name": "Ann"}
    assert rows["2.png"]["error"]["code"] == "DataInspectionFailed"
    assert rows["3.png"]["error"] == {"code": "NotProcessed", "message": "batch expired"}
    assert e3.custom_id not in index_lines(json.dumps(ok))


def test_manifest_round_trip():
    b = BatchBuilder(task="advanced_recognition")
    b.add_image("p.png", png("p"))
    b.add_image("bad.png", b"xx")
    manifest = b.build().manifest
    again = load_manifest(dump_manifest(manifest))
    assert [e.to_dict() for e in again] == [e.to_dict() for e in manifest]


def test_region_without_ocr_batch_is_refused_unless_custom_base_url():
    with pytest.raises(BatchRegionError, match="does not offer Qwen-OCR"):
        BatchClient(ClientConfig(api_key="sk-x", region="ap-southeast-1"))
    BatchClient(ClientConfig(api_key="sk-x", region="ap-southeast-1", base_url="http://127.0.0.1:9"))
    BatchClient(ClientConfig(api_key="sk-x", region="cn-beijing"))


@pytest.mark.parametrize(("status", "terminal", "success", "failure"), [
    ("validating", False, False, False), ("in_progress", False, False, False),
    ("finalizing", False, False, False), ("cancelling", False, False, False),
    ("completed", True, True, False), ("failed", True, False, True),
    ("expired", True, False, True), ("cancelled", True, False, True),
])
def test_status_mapping(status, terminal, success, failure):
    s = BatchStatus.of({"status": status})
    assert (s.is_terminal, s.is_success, s.is_failure) == (terminal, success, failure)


@pytest.mark.parametrize(("task", "prompt", "schema", "page"), [
    ("text_recognition", None, None, None),
    ("text_recognition", "Read the stamps only", None, 2),  # a prompt with the default task → custom
    ("key_information_extraction", None, {"name": "the name"}, None),
])
def test_custom_id_is_the_realtime_idempotency_key(task, prompt, schema, page):
    """One key per image + task + model + params for both APIs: the result cache serves realtime and batch."""
    from airflow_provider_qwenocr.runs.realtime import OcrJob

    data = png("shared key")
    b = BatchBuilder(task=task, prompt=prompt, result_schema=schema, min_pixels=3072)
    entry = b.add_image("k.png", data, page=page)
    effective_task = "custom" if prompt else task
    job = OcrJob(OcrRequest(task=OcrTask.parse(effective_task), spec=get_model(None), prompt=prompt,
                            result_schema=schema, min_pixels=3072))
    assert entry.task == effective_task
    assert entry.custom_id == job.key(entry.sha256)
