"""Each emulator knob, on loopback, bounded: auth, quotas, random faults, timeouts, latency, inspection, bad input.

These servers use the ``echo`` engine (no recognition) so the tests cost milliseconds per request; the
OCR path itself is covered by the recordings and accuracy tests.
"""

from __future__ import annotations

import base64
import io
import statistics

import httpx
import pytest
from PIL import Image
from qwenocr_emulator.config import EmulatorConfig
from qwenocr_emulator.faults import FaultInjector

from airflow_provider_qwenocr.ocr.images import prepare_image
from airflow_provider_qwenocr.ocr.models import get_model

pytestmark = pytest.mark.integration

NATIVE = "/api/v1/services/aigc/multimodal-generation/generation"
CHAT = "/compatible-mode/v1/chat/completions"
AUTH = {"Authorization": "Bearer sk-test"}


def png(size=(64, 48), colour=(255, 255, 255)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "PNG")
    return buf.getvalue()


def data_url(data: bytes, mime="image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode()


def native_body(url: str, task="text_recognition", **item) -> dict:
    return {"model": "qwen-vl-ocr", "input": {"messages": [{"role": "user", "content": [{"image": url, **item}]}]},
            "parameters": {"ocr_options": {"task": task}}}


def post(srv, body=None, headers=AUTH, path=NATIVE, timeout=30.0):
    return httpx.post(srv.base_url + path, json=body or native_body(data_url(png())), headers=headers,
                      timeout=timeout)


def test_auth_with_and_without_configured_key(make_emulator):
    open_srv = make_emulator(engine="echo")
    assert post(open_srv, headers={"Authorization": "Bearer anything"}).status_code == 200
    missing = post(open_srv, headers={})
    assert missing.status_code == 401 and missing.json()["code"] == "InvalidApiKey"
    locked = make_emulator(engine="echo", api_key="sk-right")
    assert post(locked, headers={"Authorization": "Bearer sk-right"}).status_code == 200
    wrong = post(locked, headers={"Authorization": "Bearer sk-wrong"})
    assert wrong.status_code == 401 and wrong.json()["code"] == "InvalidApiKey"
    compat = post(locked, {"model": "m", "messages": []}, headers={"Authorization": "Bearer sk-wrong"}, path=CHAT)
    assert compat.status_code == 401 and compat.json()["error"]["code"] == "invalid_api_key"


def test_rpm_window_answers_rate_quota_with_retry_after(make_emulator):
    srv = make_emulator(engine="echo", rpm=3)
    statuses = [post(srv).status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 429]
    resp = post(srv)
    assert resp.json()["code"] == "Throttling.RateQuota"
    assert 1 <= int(resp.headers["Retry-After"]) <= 60
    assert srv.stats()["by_status"][429] == 3


def test_tpm_window_answers_allocation_quota(make_emulator):
    # 64x48 on 32-px patches -> 64x64 grid (min_pixels) ... a few tokens per call; allow about two calls.
    srv = make_emulator(engine="echo", tpm=60)
    statuses, codes = [], []
    for _ in range(4):
        resp = post(srv)
        statuses.append(resp.status_code)
        if resp.status_code == 429:
            codes.append(resp.json()["code"])
            assert int(resp.headers["Retry-After"]) >= 1
    assert statuses[0] == 200 and 429 in statuses
    assert set(codes) == {"Throttling.AllocationQuota"}


def test_compatible_mode_quota_error_is_openai_shaped(make_emulator):
    srv = make_emulator(engine="echo", fail_rate_429=1.0)
    body = {"model": "qwen-vl-ocr", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": data_url(png())}}]}]}
    resp = post(srv, body, path=CHAT)
    assert resp.status_code == 429
    assert resp.json()["error"]["code"] == "Throttling.RateQuota" and resp.headers["Retry-After"] == "1"


def test_fail_rates_500_and_429(make_emulator):
    srv500 = make_emulator(engine="echo", fail_rate_500=1.0)
    resp = post(srv500)
    assert resp.status_code == 500 and resp.json()["code"] == "InternalError"
    assert resp.headers["x-request-id"] == resp.json()["request_id"]
    srv429 = make_emulator(engine="echo", fail_rate_429=1.0)
    assert post(srv429).json()["code"] == "Throttling.RateQuota"
    assert srv429.stats()["ocr_calls"] == 0, "a refused call never reaches the engine"


def test_seed_makes_random_faults_reproducible(make_emulator):
    runs = []
    for _ in range(2):
        srv = make_emulator(engine="echo", fail_rate_429=0.3, fail_rate_500=0.3, seed=7)
        runs.append([post(srv).status_code for _ in range(20)])
    assert runs[0] == runs[1]
    assert {200, 429, 500} <= set(runs[0])
    other = make_emulator(engine="echo", fail_rate_429=0.3, fail_rate_500=0.3, seed=8)
    assert [post(other).status_code for _ in range(20)] != runs[0]


def test_timeout_fault_holds_then_drops_the_connection(make_emulator):
    srv = make_emulator(engine="echo", fail_rate_timeout=1.0, timeout_hold_seconds=0.5)
    with pytest.raises(httpx.ReadTimeout):  # a client with a shorter timeout gives up first
        post(srv, timeout=httpx.Timeout(5.0, read=0.1))
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):  # a patient one sees the socket drop
        post(srv, timeout=10.0)
    assert srv.stats()["by_status"].get(0) == 2  # both dropped answers count under status 0


def test_latency_jitter_is_seeded_and_centred_on_the_mean():
    samples = []
    for _ in range(2):
        inj = FaultInjector(EmulatorConfig(engine="echo", latency_ms=200, seed=3))
        samples.append([inj.latency_seconds() for _ in range(400)])
    assert samples[0] == samples[1]
    assert all(0.1 <= s <= 0.3 for s in samples[0])
    assert abs(statistics.mean(samples[0]) - 0.2) < 0.02


def test_latency_delays_the_answer(make_emulator):
    import time

    srv = make_emulator(engine="echo", latency_ms=300, seed=1)
    started = time.perf_counter()
    assert post(srv).status_code == 200
    assert time.perf_counter() - started >= 0.15  # lower bound only: jitter is at least 0.5 x mean


def test_red_image_fails_inspection_even_after_client_preparation(make_emulator, docs_dir):
    srv = make_emulator(engine="echo")
    raw = (docs_dir / "inspection_red.png").read_bytes()
    prepared = prepare_image(raw, get_model("qwen-vl-ocr"), fmt="JPEG")  # resize + JPEG re-encode
    for url in (data_url(raw), prepared.data_url):
        resp = post(srv, native_body(url))
        assert resp.status_code == 400 and resp.json()["code"] == "DataInspectionFailed"
    near_red = post(srv, native_body(data_url(png(colour=(200, 40, 40)))))
    assert near_red.status_code == 200


def test_marker_in_the_image_name_fails_inspection(make_emulator, static_http, docs_dir, tmp_path):
    srv = make_emulator(engine="echo")
    ok = post(srv, native_body(static_http.url("paragraph_en.png")))
    assert ok.status_code == 200
    marked = docs_dir / "x-inspection-fail.png"
    assert not marked.exists()
    try:
        marked.write_bytes(png())
        resp = post(srv, native_body(static_http.url(marked.name)))
    finally:
        marked.unlink()
    assert resp.status_code == 400 and resp.json()["code"] == "DataInspectionFailed"


@pytest.mark.parametrize("url, needle", [
    ("data:image/png;base64,bm90IGFuIGltYWdl", "cannot be opened"),
    ("https://example.com/a.png", "Failed to download"),
    ("file:///etc/hostname", "not supported"),
    ("oss://dashscope-instant/nothing.png", "X-DashScope-OssResourceResolve"),
])
def test_bad_images_are_invalid_parameter(make_emulator, url, needle):
    srv = make_emulator(engine="echo")
    resp = post(srv, native_body(url))
    assert resp.status_code == 400 and resp.json()["code"] == "InvalidParameter"
    assert needle in resp.json()["message"]


def test_too_small_and_too_thin_images_are_refused(make_emulator):
    srv = make_emulator(engine="echo")
    for size in ((8, 40), (2300, 11)):  # 8 px side; 209:1
        resp = post(srv, native_body(data_url(png(size))))
        assert resp.status_code == 400 and resp.json()["code"] == "InvalidParameter", size


def test_invalid_parameters(make_emulator):
    srv = make_emulator(engine="echo")
    bad_task = post(srv, native_body(data_url(png()), task="poetry"))
    assert bad_task.status_code == 400 and "task" in bad_task.json()["message"]
    old_model = native_body(data_url(png()))
    old_model["model"] = "qwen-vl-ocr-2024-10-28"
    assert post(srv, old_model).status_code == 400
    bounds = post(srv, native_body(data_url(png()), min_pixels=10_000_000, max_pixels=100_000))
    assert bounds.status_code == 400
    empty = post(srv, {"model": "qwen-vl-ocr", "input": {"messages": []}})
    assert empty.status_code == 400 and empty.json()["code"] == "InvalidParameter"


def test_sse_error_event_keeps_http_200(make_emulator, docs_dir):
    srv = make_emulator(engine="echo")
    resp = post(srv, native_body(data_url((docs_dir / "inspection_red.png").read_bytes())),
                headers={**AUTH, "X-DashScope-SSE": "enable"})
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
    assert "event:error" in resp.text and ":HTTP_STATUS/400" in resp.text and "DataInspectionFailed" in resp.text


def test_usage_follows_smart_resize_per_image(make_emulator):
    srv = make_emulator(engine="echo")
    url = data_url(png((1000, 500)))
    body = native_body(url)
    body["input"]["messages"][0]["content"].append({"image": url, "max_pixels": 32 * 32 * 100})
    usage = post(srv, body).json()["usage"]
    # 1000x500 -> 992x512 grid (31x16 patches) = 496+2; capped at 100 patches: 14x7 = 98+2.
    assert usage["image_tokens"] == 498 + 100
    assert usage["input_tokens"] == usage["image_tokens"] + usage["input_tokens_details"]["text_tokens"]


def test_stats_count_kinds_and_statuses(make_emulator):
    srv = make_emulator(engine="echo")
    post(srv)
    post(srv, headers={})
    stats = httpx.get(srv.base_url + "/emulator/stats").json()
    assert stats["requests"]["native"] == 2 and stats["by_status"] == {"200": 1, "401": 1}
    assert stats["ocr_calls"] == 1
    srv.reset_stats()
    assert srv.stats()["requests"] == {} and srv.stats()["ocr_calls"] == 0


def test_a_handler_bug_is_a_json_internal_error(make_emulator, monkeypatch):
    srv = make_emulator(engine="echo")

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(srv.state.engine, "recognize", broken)
    resp = post(srv)
    assert resp.status_code == 500 and resp.json()["code"] == "InternalError"
    assert resp.headers["x-request-id"] == resp.json()["request_id"]


def test_max_tokens_cuts_the_answer_with_finish_reason_length(make_emulator):
    srv = make_emulator(engine="echo")
    full = post(srv, native_body(data_url(png()), task="advanced_recognition")).json()
    body = native_body(data_url(png()), task="advanced_recognition")
    body["parameters"]["max_tokens"] = 3
    cut = post(srv, body).json()
    choice = cut["output"]["choices"][0]
    assert choice["finish_reason"] == "length" and "ocr_result" not in choice["message"]["content"][0]
    assert full["output"]["choices"][0]["message"]["content"][0]["text"].startswith(
        choice["message"]["content"][0]["text"])
    assert cut["usage"]["output_tokens"] <= 3 < full["usage"]["output_tokens"]
    for bad in (0, 100_000):
        body["parameters"]["max_tokens"] = bad
        resp = post(srv, body)
        assert resp.status_code == 400 and "max_tokens" in resp.json()["message"]
    chat = {"model": "qwen-vl-ocr", "max_tokens": 2, "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": data_url(png())}}]}]}
    assert post(srv, chat, path=CHAT).json()["choices"][0]["finish_reason"] == "length"
