"""Replay every OCR, error and native-upload recording against the emulator and compare with the real service.

The recorded requests point at Alibaba hosts this machine cannot reach, so each image URL is swapped for
a local document served on 127.0.0.1. Compared: the HTTP status, the response's shape (every recorded
key present with the same JSON type, recursively; list items against the recorded first item), error
codes/messages where they are fixed strings, and the headers SDKs read (content-type, x-request-id equal
to the body's request_id, x-dashscope-call-gateway, the timing headers).
"""

from __future__ import annotations

import json
import unicodedata

import httpx
import pytest

from conftest import RECORDINGS

pytestmark = pytest.mark.integration

OCR_RECORDINGS = {
    # recording name -> local document that stands in for its (unreachable) image
    "multimodal-generation-vl-ocr-nosse": "paragraph_zh.png",
    "multimodal-generation-vl-ocr-advanced-recognition-nosse": "mixed_notice.png",
    "multimodal-generation-vl-ocr-key-information-extraction-nosse": "invoice_zh_en.png",
    "multimodal-generation-vl-ocr-sse": "paragraph_zh.png",
}
TIMING_HEADERS = ("req-cost-time", "req-arrive-time", "resp-start-time", "x-envoy-upstream-service-time")


def read_recording(name: str) -> dict:
    out = {}
    for part in ("request.header.txt", "request.body.json", "response.header.txt", "response.body.txt"):
        path = RECORDINGS / f"{name}.{part}"
        out[part] = path.read_text(encoding="utf-8") if path.exists() else None
    head = out["response.header.txt"].splitlines()
    out["status"] = int(head[0].split()[1])
    out["headers"] = {k.strip().lower(): v.strip() for k, v in (l.split(":", 1) for l in head[1:] if ":" in l)}
    req_head = out["request.header.txt"].splitlines()
    out["method"], out["path"] = req_head[0].split()[:2]
    out["request_headers"] = {k.strip().lower(): v.strip()
                              for k, v in (l.split(":", 1) for l in req_head[1:] if ":" in l)}
    return out


def assert_same_shape(recorded, actual, where="$"):
    """Every key the service sent is present with the same JSON type; lists compare their first items."""
    if recorded is None:
        assert actual is None, f"{where}: expected null, got {actual!r}"
        return
    if isinstance(recorded, bool) or isinstance(actual, bool):
        assert type(recorded) is type(actual), f"{where}: {type(recorded).__name__} vs {type(actual).__name__}"
        return
    if isinstance(recorded, (int, float)):
        assert isinstance(actual, (int, float)), f"{where}: expected a number, got {actual!r}"
        return
    assert type(actual) is type(recorded), f"{where}: {type(recorded).__name__} vs {type(actual).__name__}"
    if isinstance(recorded, dict):
        missing = set(recorded) - set(actual)
        assert not missing, f"{where}: keys missing from the emulator's answer: {sorted(missing)}"
        for key, value in recorded.items():
            assert_same_shape(value, actual[key], f"{where}.{key}")
    elif isinstance(recorded, list) and recorded:
        assert actual, f"{where}: the service returned items, the emulator none"
        for item in actual:
            assert_same_shape(recorded[0], item, f"{where}[]")


def assert_service_headers(resp: httpx.Response, recorded: dict, request_id: str | None) -> None:
    rec_ct = recorded["headers"].get("content-type")
    if rec_ct:
        assert resp.headers["content-type"].split(";")[0] == rec_ct.split(";")[0]
    if request_id is not None:
        assert resp.headers["x-request-id"] == request_id
    if "x-dashscope-call-gateway" in recorded["headers"]:
        assert resp.headers["x-dashscope-call-gateway"] == "true"
    for name in TIMING_HEADERS:
        if name in recorded["headers"]:
            assert int(resp.headers[name]) >= 0


def with_local_image(body: dict, url: str) -> dict:
    for msg in body["input"]["messages"]:
        for item in msg["content"]:
            if "image" in item:
                item["image"] = url
    return body


def parse_sse(text: str) -> list[dict]:
    events = []
    for block in text.strip().split("\n\n"):
        ev = {}
        for line in block.splitlines():
            if line.startswith(":HTTP_STATUS/"):
                ev["http_status"] = int(line.split("/", 1)[1])
            elif ":" in line:
                key, value = line.split(":", 1)
                ev[key] = json.loads(value) if key == "data" else value
        events.append(ev)
    return events


@pytest.mark.parametrize("name", [n for n in OCR_RECORDINGS if n.endswith("-nosse")])
def test_ocr_recording_nosse(name, emulator, static_http):
    rec = read_recording(name)
    body = with_local_image(json.loads(rec["request.body.json"]), static_http.url(OCR_RECORDINGS[name]))
    resp = httpx.post(emulator.base_url + rec["path"], json=body, timeout=120,
                      headers={"Authorization": "Bearer sk-any", "Accept": rec["request_headers"]["accept"]})
    assert resp.status_code == rec["status"]
    recorded = json.loads(rec["response.body.txt"])
    actual = resp.json()
    assert_same_shape(recorded, actual)
    assert_service_headers(resp, rec, actual["request_id"])
    assert resp.headers["x-dashscope-finished"] == "true"
    content = actual["output"]["choices"][0]["message"]["content"][0]
    if "advanced" in name:
        info = content["ocr_result"]["words_info"]
        assert all(len(w["location"]) == 8 and len(w["rotate_rect"]) == 5 for w in info)
        assert content["text"].startswith("```json")
    if "key-information" in name:
        kv = content["ocr_result"]["kv_result"]
        assert set(kv) == {"乘车日期", "发票"} and set(kv["发票"]) == {"发票代码", "发票号码"}
        assert kv["发票"]["发票代码"] == "221021325353" and kv["乘车日期"] == "2013-06-29"


def test_ocr_recording_sse(emulator, static_http, docs_dir):
    name = "multimodal-generation-vl-ocr-sse"
    rec = read_recording(name)
    body = with_local_image(json.loads(rec["request.body.json"]), static_http.url(OCR_RECORDINGS[name]))
    resp = httpx.post(emulator.base_url + rec["path"], json=body, timeout=120,
                      headers={"Authorization": "Bearer sk-any", "Accept": "text/event-stream"})
    assert resp.status_code == 200
    assert_service_headers(resp, rec, None)
    recorded, actual = parse_sse(rec["response.body.txt"]), parse_sse(resp.text)
    assert len(actual) >= 2
    rid = actual[0]["data"]["request_id"]
    assert resp.headers["x-request-id"] == rid and resp.headers["x-dashscope-finished"] == "false"
    for i, ev in enumerate(actual, start=1):
        assert ev["id"] == str(i) and ev["event"] == "result" and ev["http_status"] == 200
        assert ev["data"]["request_id"] == rid
    for rec_ev, act_ev in ((recorded[0], actual[0]), (recorded[-1], actual[-1])):
        assert_same_shape(rec_ev["data"], act_ev["data"])
    finishes = [ev["data"]["output"]["choices"][0]["finish_reason"] for ev in actual]
    assert finishes[:-1] == ["null"] * (len(actual) - 1) and finishes[-1] == "stop"
    assert actual[-1]["data"]["output"]["choices"][0]["message"]["content"] == []  # as recorded
    outs = [ev["data"]["usage"]["output_tokens"] for ev in actual]
    assert outs == sorted(outs), "usage is cumulative"
    streamed = "".join(ev["data"]["output"]["choices"][0]["message"]["content"][0]["text"] for ev in actual[:-1])
    truth = (docs_dir / "paragraph_zh.txt").read_text(encoding="utf-8")
    assert normalise(streamed) == normalise(truth), "the streamed deltas add up to the document's text"


def normalise(text: str) -> str:
    return "".join(unicodedata.normalize("NFKC", text).split())


def test_auth_error_recording(make_emulator):
    rec = read_recording("auth-error-nosse")
    srv = make_emulator(engine="echo", api_key="sk-the-right-key")
    body = json.loads(rec["request.body.json"])
    recorded = json.loads(rec["response.body.txt"])
    for headers in ({"Authorization": "Bearer sk-wrong"}, {}):
        resp = httpx.post(srv.base_url + rec["path"], json=body, headers=headers, timeout=30)
        assert resp.status_code == rec["status"] == 401
        actual = resp.json()
        assert set(actual) == set(recorded)
        assert (actual["code"], actual["message"]) == (recorded["code"], recorded["message"])
        assert resp.headers["x-request-id"] == actual["request_id"]
        assert "application/json" in resp.headers["content-type"]  # the SDK parses code/message only then


def test_parameter_error_recording(emulator):
    rec = read_recording("parameter-error-nosse")
    resp = httpx.post(emulator.base_url + rec["path"], json=json.loads(rec["request.body.json"]),
                      headers={"Authorization": "Bearer sk-any"}, timeout=30)
    assert resp.status_code == rec["status"] == 400
    recorded, actual = json.loads(rec["response.body.txt"]), resp.json()
    assert set(actual) == set(recorded)
    assert (actual["code"], actual["message"]) == (recorded["code"], recorded["message"])
    assert_service_headers(resp, rec, actual["request_id"])


def test_upload_file_recording(make_emulator):
    rec = read_recording("upload-file-nosse")
    srv = make_emulator(engine="echo")
    files = [("files", (f"test{i}.txt", f"hello {i}".encode(), "text/plain")) for i in range(11)]
    resp = httpx.post(srv.base_url + rec["path"], data={"purpose": "file-extract"}, files=files,
                      headers={"Authorization": "Bearer sk-any"}, timeout=30)
    assert resp.status_code == rec["status"] == 200
    recorded, actual = json.loads(rec["response.body.txt"]), resp.json()
    assert_same_shape(recorded, actual)
    assert len(actual["data"]["uploaded_files"]) == 10
    assert [f["code"] for f in actual["data"]["failed_uploads"]] == ["BadRequest.TooMany"]
    assert len({f["file_id"] for f in actual["data"]["uploaded_files"]}) == 10
    assert_service_headers(resp, rec, actual["request_id"])


def test_upload_file_error_recording(make_emulator):
    rec = read_recording("upload-file-error-nosse")
    srv = make_emulator(engine="echo")
    for data in ({}, {"purpose": "batch"}):
        resp = httpx.post(srv.base_url + rec["path"], data=data,
                          files=[("files", ("a.txt", b"x", "text/plain"))],
                          headers={"Authorization": "Bearer sk-any"}, timeout=30)
        assert resp.status_code == rec["status"] == 400
        assert resp.json() == json.loads(rec["response.body.txt"])
        assert resp.headers["content-type"] == rec["headers"]["content-type"]


def test_every_ocr_error_and_native_upload_recording_is_replayed():
    """Guard: a new OCR/error/native-upload recording must get a replay here."""
    names = {p.name.split(".")[0] for p in RECORDINGS.glob("*.response.body.txt")}
    wanted = {n for n in names if n.startswith("multimodal-generation") or "error" in n
              or (n.startswith("upload-file") and "compatible" not in n)}
    covered = set(OCR_RECORDINGS) | {"auth-error-nosse", "parameter-error-nosse", "upload-file-nosse",
                                     "upload-file-error-nosse"}
    assert wanted <= covered, f"recordings without a replay: {sorted(wanted - covered)}"
