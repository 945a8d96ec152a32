"""The one request spec (ocr/request.py): its rules, its payloads, and keys that existing caches still hit."""

from __future__ import annotations

import hashlib
import io
import logging

import pytest
from PIL import Image

from airflow_provider_qwenocr.dashscope.batch_jsonl import BatchBuilder
from airflow_provider_qwenocr.ocr.images import PreparedImage, decode_data_url
from airflow_provider_qwenocr.ocr.models import get_model
from airflow_provider_qwenocr.ocr.plan import legacy_url_key, payload_identity, reference_key
from airflow_provider_qwenocr.ocr.request import OcrRequest, build_ocr_request, request_key
from airflow_provider_qwenocr.ocr.tasks import KIE_SCHEMA_PROMPT, TEXT_PROMPT, OcrTask
from airflow_provider_qwenocr.runs.realtime import OcrJob

SHA = hashlib.sha256(b"pinned image bytes").hexdigest()
PROMPT = "Return the ticket number"

# Computed by the code on main before the spec existed (dashscope.realtime.request_key, BatchBuilder.key /
# url_key, OcrJob.key at 58c88c2). A changed value would make every existing result cache miss.
PINNED = {
    "default": "1d34261176c213dc21c267582c9099ecb18ec729a9331ff59baaf25e00f5be97",
    "custom": "00c8309c17080110327d6c85473fc39357b91da5e16c2dbcfb2cf1196cd88805",
    "kie": "e039da22653a20c966c0648eba515b548927b4d665f13ea18559ed4761317262",
    "rotate": "1b3f030239d4358e95a6dc7b96197fbe0f4d264d838e40c24bbde26378d172d8",
    "batch_url": "3f1caecfc41881733ecc89d97b6a028cd7c1b092cf9ce017f17897008734c9a4",
    "realtime_url": "44daa1f1424d45253d691404ce5b8d7124921fbb0012d05676e3a918cf22ae70",
}


def _png(size=(64, 48)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, "white").save(buf, "PNG")
    return buf.getvalue()


def test_keys_are_the_values_the_old_code_computed():
    assert build_ocr_request().key(SHA) == PINNED["default"]
    custom = build_ocr_request(prompt=PROMPT)  # a prompt with the default task means custom
    assert custom.key(SHA) == PINNED["custom"]
    kie = build_ocr_request("key_information_extraction", result_schema='{"total": "amount due"}',
                            min_pixels="3072", max_pixels=800000)  # templated text and JSON, as rendered
    assert kie.key(SHA) == PINNED["kie"]
    rotate = build_ocr_request("advanced_recognition", model="qwen-vl-ocr-1120", enable_rotate=True)  # an alias
    assert rotate.key(SHA) == PINNED["rotate"]
    assert reference_key(custom, "s3://bucket/a.jpg") == PINNED["batch_url"]  # by reference (ocr/plan.py)
    assert legacy_url_key(custom, "https://example.com/a.png") == PINNED["realtime_url"]  # still looked up
    assert request_key(SHA, "text_recognition", "qwen-vl-ocr") == PINNED["default"]


def test_realtime_runner_batch_builder_and_request_share_one_key():
    request = build_ocr_request(prompt=PROMPT, min_pixels=3072)
    by_fields = OcrJob(OcrRequest(task=OcrTask.CUSTOM, spec=get_model("qwen-vl-ocr"), prompt=PROMPT, min_pixels=3072))
    old_builder = BatchBuilder(prompt=PROMPT, min_pixels=3072)  # old keyword form builds the same spec
    assert OcrJob(request).key(SHA) == by_fields.key(SHA) == old_builder.request.key(SHA) == request.key(SHA)
    assert old_builder.request == request and old_builder.text == request.text == PROMPT


def test_prompt_rules_are_applied_once(caplog):
    assert build_ocr_request(prompt=PROMPT).task is OcrTask.CUSTOM
    with caplog.at_level(logging.WARNING, logger="airflow_provider_qwenocr.ocr.request"):
        table = build_ocr_request("table_parsing", prompt=PROMPT)
    assert table.task is OcrTask.TABLE_PARSING and table.prompt is None and "prompt ignored" in caplog.text
    for empty in (None, ""):  # an empty rendered template is no prompt
        with pytest.raises(ValueError, match="custom' needs a prompt"):
            build_ocr_request("custom", prompt=empty)
    with pytest.raises(ValueError, match="unknown OCR task 'ocr'"):
        build_ocr_request("ocr")


def test_the_text_sent_is_the_tasks_prompt_or_the_users():
    assert build_ocr_request().text == TEXT_PROMPT
    assert build_ocr_request(prompt=PROMPT).text == PROMPT
    kie = build_ocr_request("key_information_extraction", result_schema={"total": "amount"})
    assert kie.text == KIE_SCHEMA_PROMPT + '{"total": "amount"}'


@pytest.mark.parametrize(("arguments", "message"), [
    ({"result_schema": "[1, 2]"}, "non-empty JSON object"),
    ({"result_schema": "{not json"}, "Expecting property name"),
    ({"result_schema": {"a": {"b": {"c": {"d": "x"}}}}}, "at most 3"),
    ({"model": "qwen vl ocr"}, "is not a model name"),
    ({"model": 7}, "is not a model name"),
    ({"min_pixels": 900_000, "max_pixels": 800_000}, "fix the pixel bounds"),
    ({"max_pixels": "lots"}, "whole number of pixels"),
])
def test_bad_arguments_are_value_errors_with_the_reason(arguments, message):
    with pytest.raises(ValueError, match=message):
        build_ocr_request("key_information_extraction", **arguments)


def test_model_and_bounds_defaults():
    request = build_ocr_request(min_pixels="", max_pixels=None, default_model="qwen-vl-ocr-2025-04-13")
    assert request.model == "qwen-vl-ocr-2025-04-13" and (request.min_pixels, request.max_pixels) == (None, None)
    assert request.bounds == (request.spec.default_min_pixels, request.spec.default_max_pixels)
    assert build_ocr_request(model="qwen-vl-ocr", default_model="qwen-vl-ocr-2025-04-13").model == "qwen-vl-ocr"


def test_payload_turns_bytes_paths_and_urls_into_what_is_sent(tmp_path):
    request = build_ocr_request(max_pixels=200_000)
    data = _png()
    prepared, source = request.payload(data)
    assert isinstance(prepared, PreparedImage) and source is None
    assert prepared.sha256 == hashlib.sha256(data).hexdigest() == payload_identity(prepared, request).sha256
    path = tmp_path / "a.png"
    path.write_bytes(data)
    for given in (path, str(path), f"file://{path}"):
        from_path, source = request.payload(given)
        assert isinstance(from_path, PreparedImage) and source == str(path)
        assert from_path.sha256 == prepared.sha256
    assert request.payload("https://example.com/a.png") == ("https://example.com/a.png", "https://example.com/a.png")
    data_url = prepared.data_url
    assert request.payload(data_url) == (data_url, None)
    # a data URL is keyed on the image it carries, not on its text
    assert payload_identity(data_url, request).sha256 == hashlib.sha256(decode_data_url(data_url)[1]).hexdigest()
    assert payload_identity(data_url, request).key == request.key(hashlib.sha256(decode_data_url(data_url)[1]).hexdigest())


def test_the_spec_is_frozen_and_batch_refuses_rotation():
    request = build_ocr_request(enable_rotate=True)
    with pytest.raises(AttributeError):
        request.task = OcrTask.CUSTOM  # type: ignore[misc]
    with pytest.raises(ValueError, match="cannot rotate"):
        BatchBuilder(request=request)
    with pytest.raises(TypeError, match="not both"):
        BatchBuilder(request=build_ocr_request(), task="table_parsing")
    assert isinstance(OcrJob(request).request, OcrRequest) and OcrJob(request).enable_rotate is True
