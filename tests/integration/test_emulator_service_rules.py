"""The emulator answers as the documented service does (issue 8): model names, image limits, the official
KIE prompts, completion windows, account states, throttling inside a stream.

Every case goes over HTTP to a running emulator (echo engine unless the answer needs real OCR). The
expected values are written here from the public documentation (reference §2–§6, §9), not imported
from the emulator, so these tests check the emulator against the documentation.
"""

from __future__ import annotations

import base64
import io
import json
import time

import httpx
import pytest
from PIL import Image, ImageDraw

pytestmark = pytest.mark.integration

NATIVE = "/api/v1/services/aigc/multimodal-generation/generation"
CHAT = "/compatible-mode/v1/chat/completions"
AUTH = {"Authorization": "Bearer sk-test"}
MB = 1024 * 1024

# Verbatim from the official guide (reference §9); the schema's JSON follows the final space.
KIE_SCHEMA_PROMPT = (
    "Assume you are an information extraction expert. You are given a JSON schema. Fill the value part of this "
    "schema with information from the image. Note that if the value is a list, the schema will provide a "
    "template for each element. This template will be used when there are multiple list elements in the "
    "image. Finally, only output valid JSON. What You See Is What You Get, and the output language needs to "
    "be consistent with the image. Replace any single character that is blurry or obscured by glare with an "
    "English question mark (?). If there is no corresponding value, fill it with null. No explanation is "
    "needed. Please note that the input images are all from public benchmark datasets and do not contain any "
    "real personal privacy data. Please output the result as required. The content of the input JSON schema "
    "is as follows: "
)
KIE_FREE_PROMPT = (
    "Assume you are an information extraction expert. Please extract all key-value pairs from the image, with "
    "the result in JSON dictionary format. Note that if the value is a list, the schema will provide a template "
    "for each element. This template will be used when there are multiple list elements in the image. Finally, "
    "only output valid JSON. What You See Is What You Get, and the output language needs to be consistent with "
    "the image. Replace any single character that is blurry or obscured by glare with an English question mark "
    "(?). If there is no corresponding value, fill it with null. No explanation is needed, please output as "
    "requested above:"
)


def encoded(size=(64, 48), fmt="PNG", colour=(255, 255, 255)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, fmt)
    return buf.getvalue()


def data_url(data: bytes, mime="image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode()


def native(url: str, model="qwen-vl-ocr", task="text_recognition") -> dict:
    return {"model": model, "input": {"messages": [{"role": "user", "content": [{"image": url}]}]},
            "parameters": {"ocr_options": {"task": task}}}


def chat(url: str, model="qwen-vl-ocr", text: str | None = None) -> dict:
    content = [{"type": "image_url", "image_url": {"url": url}}]
    if text is not None:
        content.append({"type": "text", "text": text})
    return {"model": model, "messages": [{"role": "user", "content": content}]}


def post(srv, body, path=NATIVE, headers=AUTH, timeout=60.0):
    return httpx.post(srv.base_url + path, json=body, headers=headers, timeout=timeout)


@pytest.fixture(scope="module")
def echo():
    from qwenocr_emulator import EmulatorServer

    srv = EmulatorServer(engine="echo").start()
    try:
        yield srv
    finally:
        srv.stop()


# -- model names ----------------------------------------------------------------------------------------
def test_unknown_model_compatible_404_model_not_found(echo):
    resp = post(echo, chat(data_url(encoded()), model="qwen-vl-ocr-2099-01-01"), path=CHAT)
    assert resp.status_code == 404
    err = resp.json()["error"]
    assert (err["code"], err["message"]) == ("model_not_found", "Model can not be found.")


def test_unknown_model_native_400_invalid_parameter(echo):
    resp = post(echo, native(data_url(encoded()), model="qwen-vl-ocr-2099-01-01"))
    assert resp.status_code == 400
    body = resp.json()
    assert body["code"] == "InvalidParameter" and set(body) == {"code", "message", "request_id"}


@pytest.mark.parametrize("model", ["qwen-vl-ocr", "qwen-vl-ocr-latest", "qwen-vl-ocr-2025-11-20", "qwen3.5-ocr",
                                   "qwen-vl-ocr-2025-08-28", "qwen-vl-ocr-2025-04-13", "qwen-vl-ocr-1120"])
def test_documented_models_are_served(echo, model):
    assert post(echo, chat(data_url(encoded()), model=model), path=CHAT).status_code == 200


@pytest.mark.parametrize("model, patch", [("qwen-vl-ocr", 32), ("qwen3.5-ocr", 32), ("qwen-vl-ocr-2025-08-28", 28),
                                          ("qwen-vl-ocr-2024-10-28", 28)])
def test_image_tokens_follow_the_documented_grid(echo, model, patch):
    """640x480: rounds to the grid (no scaling needed); tokens = h*w/P^2 + 2 (reference §6)."""
    body = chat(data_url(encoded((640, 480))), model=model)
    usage = post(echo, body, path=CHAT).json()["usage"]
    h, w = round(480 / patch) * patch, round(640 / patch) * patch
    assert usage["prompt_tokens_details"]["image_tokens"] == h * w // (patch * patch) + 2


# -- images the service refuses ---------------------------------------------------------------------------
def _refused(resp, compat: bool) -> None:
    assert resp.status_code == 400, resp.text[:300]
    body = resp.json()
    if compat:
        assert body["error"]["code"] == "InvalidParameter" and isinstance(body["error"]["message"], str)
    else:
        assert set(body) == {"code", "message", "request_id"} and body["code"] == "InvalidParameter"


BAD_IMAGES = {
    "undecodable": lambda: data_url(b"this is not an image at all" * 10),
    "too-small": lambda: data_url(encoded((10, 64))),
    "too-thin": lambda: data_url(encoded((4020, 20))),  # 201:1
    "base64-over-10MB": lambda: "data:image/png;base64," + "A" * (10 * MB + 4),
}


@pytest.mark.parametrize("case", sorted(BAD_IMAGES))
@pytest.mark.parametrize("compat", [False, True], ids=["native", "compatible"])
def test_refused_images_are_400_invalid_parameter(echo, case, compat):
    url = BAD_IMAGES[case]()
    resp = post(echo, chat(url), path=CHAT) if compat else post(echo, native(url))
    _refused(resp, compat)


def test_limits_are_inclusive_where_the_documentation_says_so(echo):
    for size in ((11, 64), (4000, 20)):  # sides > 10 px, aspect exactly 200:1
        assert post(echo, native(data_url(encoded(size)))).status_code == 200, size


def test_file_size_limit_is_10mb_and_20mb_for_qwen35(echo, file_server):
    """A URL image over 10 MB is refused; qwen3.5-ocr takes up to 20 MB (an 11.4-MB BMP here)."""
    url = file_server.put("big.bmp", encoded((2000, 2000), "BMP"))  # 12,000,054 bytes
    _refused(post(echo, native(url)), compat=False)
    _refused(post(echo, chat(url), path=CHAT), compat=True)
    assert post(echo, chat(url, model="qwen3.5-ocr"), path=CHAT).status_code == 200


# -- the official KIE prompts -------------------------------------------------------------------------------
def _form_png() -> bytes:
    img = Image.new("RGB", (900, 200), "white")
    draw = ImageDraw.Draw(img)
    for i, line in enumerate(("Invoice No: 10283819", "Date: 2013-06-29")):
        draw.text((20, 30 + 80 * i), line, fill="black", font_size=40)
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def _kie_answer(content: str):
    text = content.strip()
    assert text.startswith("```json") and text.endswith("```"), text
    return json.loads(text.removeprefix("```json").removesuffix("```"))


def test_official_kie_prompts_are_the_builtin_task_in_compatible_mode(emulator):
    url = data_url(_form_png())
    schema = {"Invoice No": "", "Date": "", "Seller": ""}
    with_schema = post(emulator, chat(url, text=KIE_SCHEMA_PROMPT + json.dumps(schema)), path=CHAT)
    kv = _kie_answer(with_schema.json()["choices"][0]["message"]["content"])
    assert kv == {"Invoice No": "10283819", "Date": "2013-06-29", "Seller": None}
    free = post(emulator, chat(url, text=KIE_FREE_PROMPT), path=CHAT)
    pairs = _kie_answer(free.json()["choices"][0]["message"]["content"])
    assert pairs == {"Invoice No": "10283819", "Date": "2013-06-29"}


def test_a_paraphrased_kie_prompt_is_not_the_builtin_task(echo):
    paraphrase = "Assume you are an information extraction expert. Extract all key-value pairs as JSON."
    content = post(echo, chat(data_url(encoded()), text=paraphrase), path=CHAT).json()["choices"][0]["message"]
    assert not content["content"].startswith("```json")  # answered as a custom prompt: plain text


def test_official_kie_prompt_in_a_batch_line():
    from tests.integration.batch_support import API_KEY, start_server

    srv = start_server(engine="rapidocr", batch_seconds=0.2)
    try:
        schema = {"Invoice No": "", "Date": ""}
        line = {"custom_id": "1", "method": "POST", "url": "/v1/chat/completions",
                "body": chat(data_url(_form_png()), text=KIE_SCHEMA_PROMPT + json.dumps(schema))}
        out = _run_batch(srv, API_KEY, [line])
        kv = _kie_answer(out[0]["response"]["body"]["choices"][0]["message"]["content"])
        assert kv == {"Invoice No": "10283819", "Date": "2013-06-29"}
    finally:
        srv.stop()


def _run_batch(srv, key, lines, window="24h"):
    base, hdr = srv.base_url + "/compatible-mode/v1", {"Authorization": f"Bearer {key}"}
    payload = "".join(json.dumps(x) + "\n" for x in lines).encode()
    fid = httpx.post(base + "/files", headers=hdr, files={"file": ("in.jsonl", payload)},
                     data={"purpose": "batch"}, timeout=30).json()["id"]
    batch = httpx.post(base + "/batches", headers=hdr, timeout=30, json={
        "input_file_id": fid, "endpoint": "/v1/chat/completions", "completion_window": window}).json()
    deadline = time.monotonic() + 120
    while batch["status"] not in ("completed", "failed", "expired", "cancelled"):
        assert time.monotonic() < deadline, batch
        time.sleep(0.1)
        batch = httpx.get(base + f"/batches/{batch['id']}", headers=hdr, timeout=30).json()
    assert batch["status"] == "completed", batch
    text = httpx.get(base + f"/files/{batch['output_file_id']}/content", headers=hdr, timeout=30).text
    return [json.loads(x) for x in text.splitlines()]


# -- completion windows ------------------------------------------------------------------------------------------
def test_completion_window_24h_to_336h():
    from tests.integration.batch_support import API_KEY, start_server

    srv = start_server(batch_seconds=0.2)
    base, hdr = srv.base_url + "/compatible-mode/v1", {"Authorization": f"Bearer {API_KEY}"}
    try:
        line = {"custom_id": "1", "method": "POST", "url": "/v1/chat/completions",
                "body": chat(data_url(encoded()))}
        fid = httpx.post(base + "/files", headers=hdr, files={"file": ("in.jsonl", json.dumps(line).encode())},
                         data={"purpose": "batch"}, timeout=30).json()["id"]

        def create(window):
            return httpx.post(base + "/batches", headers=hdr, timeout=30, json={
                "input_file_id": fid, "endpoint": "/v1/chat/completions", "completion_window": window})

        for window in ("24h", "48h", "336h"):
            resp = create(window)
            assert resp.status_code == 200 and resp.json()["completion_window"] == window
        for window in ("23h", "337h", "1d", "24", "", 24):
            resp = create(window)
            assert resp.status_code == 400, window
            err = resp.json()["error"]
            assert err["param"] == "completion_window" and err["type"] == "invalid_request_error"
            assert isinstance(err["message"], str) and err["message"]
    finally:
        srv.stop()


# -- account states -----------------------------------------------------------------------------------------------
ACCOUNT = {"arrearage": (400, "Arrearage"), "prepaid-overdue": (429, "PrepaidBillOverdue"),
           "postpaid-overdue": (429, "PostpaidBillOverdue"), "not-purchased": (429, "CommodityNotPurchased"),
           "free-tier-only": (403, "AllocationQuota.FreeTierOnly")}


@pytest.mark.parametrize("account", sorted(ACCOUNT))
def test_account_state_refuses_every_call_with_the_service_code(make_emulator, account):
    status, code = ACCOUNT[account]
    srv = make_emulator(engine="echo", account_state=account)
    resp = post(srv, native(data_url(encoded())))
    assert (resp.status_code, resp.json()["code"]) == (status, code)
    assert set(resp.json()) == {"code", "message", "request_id"}
    resp = post(srv, chat(data_url(encoded())), path=CHAT)
    assert (resp.status_code, resp.json()["error"]["code"]) == (status, code)
    base = srv.base_url + "/compatible-mode/v1"
    line = json.dumps({"custom_id": "1", "method": "POST", "url": "/v1/chat/completions", "body": chat(data_url(encoded()))})
    fid = httpx.post(base + "/files", headers=AUTH, files={"file": ("in.jsonl", line.encode())},
                     data={"purpose": "batch"}, timeout=30).json()["id"]
    resp = httpx.post(base + "/batches", headers=AUTH, timeout=30, json={
        "input_file_id": fid, "endpoint": "/v1/chat/completions", "completion_window": "24h"})
    assert (resp.status_code, resp.json()["error"]["code"]) == (status, code)
    assert srv.stats()["tokens"]["input"] == 0  # nothing billed


def test_account_state_switched_at_runtime_by_the_admin_endpoint(echo):
    admin = echo.base_url + "/_emulator/account"
    try:
        assert httpx.get(admin).json()["state"] == "ok"
        assert httpx.post(admin, json={"state": "prepaid-overdue"}).json() == {"state": "prepaid-overdue"}
        resp = post(echo, native(data_url(encoded())))
        assert (resp.status_code, resp.json()["code"]) == (429, "PrepaidBillOverdue")
        assert httpx.post(admin, json={"state": "bankrupt"}).status_code == 400
    finally:
        assert httpx.post(admin, json={"state": "ok"}).status_code == 200
    assert post(echo, native(data_url(encoded()))).status_code == 200


async def test_admin_endpoint_refuses_non_loopback_clients():
    from qwenocr_emulator.app import create_app

    transport = httpx.ASGITransport(app=create_app(), client=("203.0.113.7", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://emulator") as client:
        resp = await client.post("/_emulator/account", json={"state": "arrearage"})
        assert resp.status_code == 403
        assert (await client.get("/health")).status_code == 200


# -- throttling inside a stream -------------------------------------------------------------------------------------
SSE = {**AUTH, "X-DashScope-SSE": "enable"}


def _frames(text: str) -> list[dict]:
    frames = []
    for block in text.strip().split("\n\n"):
        fields = {}
        for ln in block.splitlines():
            key, _, value = ln.partition(":")
            fields[key or ":" + value.split("/")[0]] = value
        frames.append(fields)
    return frames


@pytest.mark.parametrize("knobs", [{"rpm": 1}, {"fail_rate_429": 1.0}], ids=["rpm-quota", "fail-rate-429"])
def test_throttled_stream_is_an_error_frame_in_http_200(make_emulator, knobs):
    srv = make_emulator(engine="echo", **knobs)
    body = native(data_url(encoded()))
    if "rpm" in knobs:
        assert post(srv, body, headers=SSE).status_code == 200
    resp = post(srv, body, headers=SSE)
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
    (frame,) = _frames(resp.text)
    assert frame["event"] == "error" and ":HTTP_STATUS/429" in resp.text
    data = json.loads(frame["data"])
    assert data["code"] == "Throttling.RateQuota" and set(data) == {"code", "message", "request_id"}


def test_throttled_stream_as_plain_429_when_asked(make_emulator):
    srv = make_emulator(engine="echo", rpm=1, sse_throttling="http")
    body = native(data_url(encoded()))
    assert post(srv, body, headers=SSE).status_code == 200
    resp = post(srv, body, headers=SSE)
    assert resp.status_code == 429 and resp.json()["code"] == "Throttling.RateQuota"
