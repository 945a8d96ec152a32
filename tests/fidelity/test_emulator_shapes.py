"""Emulator-shape fidelity: the same request the service got, sent to the running emulator, comes back in
the service's shape — key by key, JSON type by JSON type, and the service's conventions — never its texts.

Expected shapes, per built-in task and mode:
- recorded real traffic where it exists (``tests/data/recordings/``, cnblogs/dashscope-sdk, MIT): native
  ``advanced_recognition`` and ``key_information_extraction`` (2025-11), a streamed plain prompt (2025-11),
  a plain prompt on the 2024 model, and a Batch output file (2026-04). The recorded request is replayed
  with the (unreachable) image URL replaced by a local document.
- otherwise the official documentation's example response (Model Studio "Text extraction (Qwen-OCR)"
  guide, 2026 revision: the native success body of the DashScope API reference and the OpenAI-compatible
  ``chat.completion`` example), written inline below as ``NATIVE_EXAMPLE`` / ``COMPATIBLE_EXAMPLE``.

Conventions checked beyond shape: ``location`` = 8 ints, ``rotate_rect`` = 5 ints written as the service
writes horizontal lines (``[cx, cy, height, length, ±90]`` or near it), usage totals add up, a
``request_id`` equal to the ``x-request-id`` header, the service's headers, each task's text form (fences).
"""

from __future__ import annotations

import copy
import json
import re

import httpx
import pytest

from tests.conftest_paths import RECORDINGS

pytestmark = pytest.mark.integration

NATIVE = "/api/v1/services/aigc/multimodal-generation/generation"
CHAT = "/compatible-mode/v1/chat/completions"
AUTH = {"Authorization": "Bearer sk-fidelity"}
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

# The official fixed prompts (documentation, verbatim; the KIE ones per its 2026 revision).
TEXT_PROMPT = "Please output only the text content from the image without any additional descriptions or formatting."
PROMPTS = {
    "text_recognition": TEXT_PROMPT,
    "multi_lan": TEXT_PROMPT,
    "table_parsing": (
        "In a safe, sandbox environment, you're tasked with converting tables from a synthetic image into HTML. "
        "Transcribe each table using <tr> and <td> tags, reflecting the image's layout from top-left to "
        "bottom-right. Ensure merged cells are accurately represented. This is purely a simulation with no "
        "real-world implications. Begin."),
    "document_parsing": (
        "In a secure sandbox, transcribe the text, tables, and equations in the provided image into LaTeX format "
        "without modification. This is a simulation that uses fabricated data. Your task is to accurately "
        "convert the visual elements into LaTeX to demonstrate your transcription skills. Begin."),
    "formula_recognition": ("Extract and output the LaTeX representation of the formula from the image, without "
                            "any additional text or descriptions."),
    "advanced_recognition": ("Locate all text lines and return the coordinates of the rotated rectangle "
                             "([cx, cy, width, height, angle])."),
    "key_information_extraction": (
        "Assume you are an information extraction expert. You are given a JSON schema. Fill the value part of "
        "this schema with information from the image. Note that if the value is a list, the schema will provide "
        "a template for each element. This template will be used when there are multiple list elements in the "
        "image. Finally, only output valid JSON. What You See Is What You Get, and the output language needs to "
        "be consistent with the image. Replace any single character that is blurry or obscured by glare with an "
        "English question mark (?). If there is no corresponding value, fill it with null. No explanation is "
        "needed. Please note that the input images are all from public benchmark datasets and do not contain "
        "any real personal privacy data. Please output the result as required. The content of the input JSON "
        "schema is as follows: "),
}
KIE_SCHEMA = {"发票代码": "", "发票号码": "", "乘车日期": ""}

# Native success body, DashScope API reference / the OCR guide's examples (2026): values are placeholders
# of the right JSON type; only keys and types are compared.
NATIVE_EXAMPLE = {
    "output": {"choices": [{"finish_reason": "stop",
                            "message": {"role": "assistant", "content": [{"text": "..."}]}}]},
    "usage": {"input_tokens": 1, "output_tokens": 1, "total_tokens": 2, "image_tokens": 1,
              "input_tokens_details": {"text_tokens": 1, "image_tokens": 1},
              "output_tokens_details": {"text_tokens": 1}},
    "request_id": "e72413ae-c147-4904-a63b-c09e87ea133a",
}
# OpenAI-compatible example response of the OCR guide (2026).
COMPATIBLE_EXAMPLE = {
    "id": "chatcmpl-x", "object": "chat.completion", "created": 1764161850, "model": "qwen-vl-ocr-latest",
    "system_fingerprint": None,
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "..."}, "finish_reason": "stop",
                 "logprobs": None}],
    "usage": {"prompt_tokens": 519, "completion_tokens": 58, "total_tokens": 577,
              "prompt_tokens_details": {"image_tokens": 310, "text_tokens": 209},
              "completion_tokens_details": {"text_tokens": 58}},
}
# Headers every recorded native answer carries that a client may read (transport headers excluded).
NATIVE_HEADERS = ("content-type", "x-request-id", "x-dashscope-call-gateway", "x-dashscope-finished",
                  "x-dashscope-timeout", "req-cost-time", "req-arrive-time", "resp-start-time",
                  "x-envoy-upstream-service-time", "server")

DOCS = {  # task -> local document that stands in for the recorded/official example image
    "text_recognition": "paragraph_en.png", "multi_lan": "paragraph_zh.png", "table_parsing": "table_zh_en.png",
    "document_parsing": "mixed_notice.png", "formula_recognition": "paragraph_en.png",
    "advanced_recognition": "mixed_notice.png", "key_information_extraction": "invoice_zh_en.png",
}
RECORDED_NATIVE = {
    "advanced_recognition": "multimodal-generation-vl-ocr-advanced-recognition-nosse",
    "key_information_extraction": "multimodal-generation-vl-ocr-key-information-extraction-nosse",
}


# -- comparison -----------------------------------------------------------------------------------------
def _kind(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return {str: "string", list: "array", dict: "object"}[type(value)]


def shape_diff(expected, actual, where="$", *, exact_keys=True, nullable=()) -> list[str]:
    """Differences in keys and JSON types; list items are compared with the expected first item.

    ``exact_keys``: the emulator must send the same keys (not only the recorded ones). ``nullable``:
    paths where the service itself writes a value or null (a KIE field it cannot fill).
    """
    if where in nullable and actual is None:
        return []
    if _kind(expected) != _kind(actual):
        return [f"{where}: {_kind(expected)} expected, {_kind(actual)} sent"]
    out = []
    if isinstance(expected, dict):
        missing, extra = set(expected) - set(actual), set(actual) - set(expected)
        if missing:
            out.append(f"{where}: missing keys {sorted(missing)}")
        if extra and exact_keys:
            out.append(f"{where}: extra keys {sorted(extra)}")
        for key in set(expected) & set(actual):
            out += shape_diff(expected[key], actual[key], f"{where}.{key}", exact_keys=exact_keys, nullable=nullable)
    elif isinstance(expected, list) and expected:
        if not actual:
            out.append(f"{where}: the service sends items, the emulator none")
        for item in actual:
            out += shape_diff(expected[0], item, f"{where}[]", exact_keys=exact_keys, nullable=nullable)
    return out


def assert_usage_adds_up(usage: dict, native: bool) -> None:
    if native:
        assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
        assert usage["input_tokens_details"]["image_tokens"] == usage["image_tokens"]
        assert usage["input_tokens"] == sum(usage["input_tokens_details"].values())
    else:
        assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
        assert usage["prompt_tokens"] == sum(usage["prompt_tokens_details"].values())
    assert all(isinstance(v, int) for v in _leaves(usage))


def _leaves(value):
    if isinstance(value, dict):
        for v in value.values():
            yield from _leaves(v)
    else:
        yield value


def assert_words_convention(words: list[dict]) -> None:
    """8-int location (TL, TR, BR, BL); 5-int rotate_rect; a horizontal line written [cx, cy, h, w, ±90]."""
    assert words
    for word in words:
        loc, rect = word["location"], word["rotate_rect"]
        assert len(loc) == 8 and all(type(v) is int for v in loc)
        assert len(rect) == 5 and all(type(v) is int for v in rect)
        xs, ys = loc[0::2], loc[1::2]
        assert min(xs) <= rect[0] <= max(xs) and min(ys) <= rect[1] <= max(ys)
        width, height = max(xs) - min(xs), max(ys) - min(ys)
        if width > 2 * height and abs(loc[1] - loc[3]) <= 0.05 * width:  # a (near-)horizontal line
            assert 85 <= abs(rect[4]) <= 90 and rect[2] < rect[3], (word, "not the service's form")


def text_convention(task: str, text: str) -> None:
    if task == "table_parsing":
        assert text.startswith("```html") and "<table>" in text
    elif task == "document_parsing":
        assert text.startswith("```latex")
    elif task == "formula_recognition":
        assert "$$" in text or text.startswith("```latex")
    elif task in ("key_information_extraction", "advanced_recognition"):
        assert text.startswith("```json") and text.rstrip().endswith("```")
        json.loads(text.strip().removeprefix("```json").removesuffix("```"))
    else:
        assert not text.startswith("```")


def recording(name: str) -> tuple[dict, dict, dict]:
    request = json.loads((RECORDINGS / f"{name}.request.body.json").read_text(encoding="utf-8"))
    body = (RECORDINGS / f"{name}.response.body.txt").read_text(encoding="utf-8")
    head = (RECORDINGS / f"{name}.response.header.txt").read_text(encoding="utf-8").splitlines()[1:]
    headers = {k.strip().lower(): v.strip() for k, v in (h.split(":", 1) for h in head if ":" in h)}
    return request, body, headers


def with_image(body: dict, url: str) -> dict:
    body = copy.deepcopy(body)
    for msg in body["input"]["messages"]:
        for item in msg["content"]:
            if "image" in item:
                item["image"] = url
    return body


def assert_native_headers(resp: httpx.Response, request_id: str) -> None:
    missing = [h for h in NATIVE_HEADERS if h not in resp.headers]
    assert not missing, missing
    assert resp.headers["x-request-id"] == request_id and UUID.match(request_id)
    assert resp.headers["x-dashscope-call-gateway"] == "true" and resp.headers["server"] == "istio-envoy"


# -- native, one case per built-in task ------------------------------------------------------------------------
@pytest.mark.parametrize("task", sorted(DOCS))
def test_native_builtin_task_shape(task, emulator, static_http):
    if task in RECORDED_NATIVE:
        request, body, rec_headers = recording(RECORDED_NATIVE[task])
        expected = json.loads(body)
        assert rec_headers["content-type"] == "application/json"
    else:  # the recorded advanced_recognition request with this task: what a client sends for it
        request, _, _ = recording(RECORDED_NATIVE["advanced_recognition"])
        request["parameters"]["ocr_options"] = {"task": task}
        expected = NATIVE_EXAMPLE
    request = with_image(request, static_http.url(DOCS[task]))
    resp = httpx.post(emulator.base_url + NATIVE, json=request, headers=AUTH, timeout=120)
    assert resp.status_code == 200, resp.text[:500]
    actual = resp.json()
    nullable = {"$.output.choices[].message.content[].ocr_result.kv_result.发票.发票代码",
                "$.output.choices[].message.content[].ocr_result.kv_result.发票.发票号码",
                "$.output.choices[].message.content[].ocr_result.kv_result.乘车日期"}
    assert shape_diff(expected, actual, nullable=nullable) == []
    assert resp.headers["content-type"] == "application/json" and resp.headers["x-dashscope-finished"] == "true"
    assert_native_headers(resp, actual["request_id"])
    assert_usage_adds_up(actual["usage"], native=True)
    content = actual["output"]["choices"][0]["message"]["content"][0]
    text_convention(task, content["text"])
    if task == "advanced_recognition":
        assert_words_convention(content["ocr_result"]["words_info"])
        # the convention check holds for the real capture too (so it checks the service's form, not ours)
        assert_words_convention(expected["output"]["choices"][0]["message"]["content"][0]["ocr_result"]["words_info"])


def test_native_plain_prompt_2024_recording_shape(emulator, static_http):
    """The 2024 capture has fewer usage keys: the emulator (2026 shape) must carry at least those."""
    request, body, _ = recording("multimodal-generation-vl-ocr-nosse")
    resp = httpx.post(emulator.base_url + NATIVE, json=with_image(request, static_http.url("paragraph_zh.png")),
                      headers=AUTH, timeout=120)
    assert resp.status_code == 200
    actual = resp.json()
    assert shape_diff(json.loads(body), actual, exact_keys=False) == []
    assert shape_diff(NATIVE_EXAMPLE, actual) == []
    assert_native_headers(resp, actual["request_id"])


def _sse(text: str) -> list[dict]:
    frames = []
    for block in text.strip().split("\n\n"):
        frame = {}
        for ln in block.splitlines():
            key, _, value = ln.partition(":")
            frame[key or "comment"] = value
        frames.append(frame)
    return frames


def test_native_stream_recording_shape(emulator, static_http):
    request, body, rec_headers = recording("multimodal-generation-vl-ocr-sse")
    resp = httpx.post(emulator.base_url + NATIVE, json=with_image(request, static_http.url("paragraph_zh.png")),
                      headers={**AUTH, "X-DashScope-SSE": "enable"}, timeout=120)
    assert resp.status_code == 200 and resp.headers["content-type"] == rec_headers["content-type"]
    recorded, actual = _sse(body), _sse(resp.text)
    assert [set(f) for f in actual] == [set(recorded[0])] * len(actual)  # id, event, :HTTP_STATUS, data
    assert all(f["event"] == "result" and f["comment"] == "HTTP_STATUS/200" for f in actual)
    for rec_frame, frame in ((recorded[0], actual[0]), (recorded[-1], actual[-1])):
        assert shape_diff(json.loads(rec_frame["data"]), json.loads(frame["data"])) == []
    rid = json.loads(actual[0]["data"])["request_id"]
    assert resp.headers["x-request-id"] == rid and resp.headers["x-dashscope-finished"] == "false"


# -- compatible mode, one case per built-in task ----------------------------------------------------------------
@pytest.mark.parametrize("task", sorted(DOCS))
def test_compatible_builtin_task_shape(task, emulator, static_http):
    prompt = PROMPTS[task] + (json.dumps(KIE_SCHEMA, ensure_ascii=False) if task == "key_information_extraction" else "")
    request = {"model": "qwen-vl-ocr-2025-11-20", "stream": False, "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": static_http.url(DOCS[task])},
         "min_pixels": 3072, "max_pixels": 8388608},
        {"type": "text", "text": prompt}]}]}
    resp = httpx.post(emulator.base_url + CHAT, json=request, headers=AUTH, timeout=120)
    assert resp.status_code == 200, resp.text[:500]
    actual = resp.json()
    assert shape_diff(COMPATIBLE_EXAMPLE, actual) == []
    assert actual["object"] == "chat.completion" and actual["id"].startswith("chatcmpl-")
    assert actual["model"] == "qwen-vl-ocr-2025-11-20" and "ocr_result" not in json.dumps(actual)
    assert_usage_adds_up(actual["usage"], native=False)
    assert UUID.match(resp.headers["x-request-id"])
    text = actual["choices"][0]["message"]["content"]
    text_convention(task, text)
    if task == "advanced_recognition":  # the text block's 0–1000 rectangles: 5 ints, the service's form
        for item in json.loads(text.strip().removeprefix("```json").removesuffix("```")):
            assert len(item["rotate_rect"]) == 5 and all(type(v) is int for v in item["rotate_rect"])
            assert all(0 <= v <= 1000 for v in item["rotate_rect"][:2])
    if task == "key_information_extraction":
        kv = json.loads(text.strip().removeprefix("```json").removesuffix("```"))
        assert set(kv) == set(KIE_SCHEMA)


# -- Batch output line ------------------------------------------------------------------------------------------
def test_batch_output_line_shape(static_http):
    from tests.integration.batch_support import API_KEY, start_server

    recorded = [json.loads(x) for x in (RECORDINGS / "get-file-content-compatible-nosse.response.body.txt")
                .read_text(encoding="utf-8").splitlines() if x.strip()]
    srv = start_server(batch_seconds=0.2)
    base, hdr = srv.base_url + "/compatible-mode/v1", {"Authorization": f"Bearer {API_KEY}"}
    try:
        line = {"custom_id": "1", "method": "POST", "url": "/v1/chat/completions", "body": {
            "model": "qwen-vl-ocr", "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": static_http.url("paragraph_en.png")}},
                {"type": "text", "text": TEXT_PROMPT}]}]}}
        fid = httpx.post(base + "/files", headers=hdr, files={"file": ("in.jsonl", json.dumps(line).encode())},
                         data={"purpose": "batch"}, timeout=30).json()["id"]
        batch = httpx.post(base + "/batches", headers=hdr, timeout=30, json={
            "input_file_id": fid, "endpoint": "/v1/chat/completions", "completion_window": "24h"}).json()
        for _ in range(600):
            if batch["status"] in ("completed", "failed", "expired", "cancelled"):
                break
            batch = httpx.get(base + f"/batches/{batch['id']}", headers=hdr, timeout=30).json()
        assert batch["status"] == "completed", batch
        out = httpx.get(base + f"/files/{batch['output_file_id']}/content", headers=hdr, timeout=30).text
    finally:
        srv.stop()
    (actual,) = [json.loads(x) for x in out.splitlines()]
    # the recorded line is a text model's (fewer usage keys, no system_fingerprint/logprobs): at least its keys
    assert shape_diff(recorded[0], actual, exact_keys=False) == []
    assert shape_diff(COMPATIBLE_EXAMPLE, actual["response"]["body"]) == []
    assert actual["id"] == actual["response"]["request_id"] and actual["response"]["body"]["id"] == f"chatcmpl-{actual['id']}"
