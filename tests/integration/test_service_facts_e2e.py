"""The service facts of issue 8, end to end: the provider's operator/hook/client against the REAL emulator.

The two halves of issue 8 were built apart — the provider's error semantics (``facts``) and the emulator's
account states, refusals and SSE frames (``emu``). Each half tested itself; these tests put them together
over real loopback HTTP, with the emulator's own counters as the witness of what was sent and billed:

- an account that goes billing-overdue / free-tier-exhausted mid-run stops ``QwenOcrOperator`` at once with
  :class:`QwenOcrAccountError` saying what to fix; the images after it are never sent, no error rows are
  published for them, and a re-run after the account is back to "ok" calls only for the images not done;
- an unknown model is accepted by the provider with one warning, refused by the emulator (native 400
  ``InvalidParameter``): one error row per image, cost null, one call per image (no retry storm);
- a throttling ``event:error`` frame inside an SSE stream (the SDK in stream mode; the provider itself never
  streams) is classified by the provider's ``response_error`` as a retryable 429.
"""

from __future__ import annotations

import base64
import io
import logging
import uuid

import httpx
import pytest
from PIL import Image

from airflow_provider_qwenocr.dashscope.errors import ACCOUNT_CODES, AccountError, RetryableError
from airflow_provider_qwenocr.dashscope.realtime import response_error
from airflow_provider_qwenocr.exceptions import QwenOcrAccountError, QwenOcrFailedImagesError
from airflow_provider_qwenocr.operators.ocr import QwenOcrOperator
from airflow_provider_qwenocr.runs.results_store import read_results
from tests.integration.test_operator_emulator import _ctx, _png, _set_conn

pytestmark = pytest.mark.integration
KEY = "sk-test-emulator"

#: emulator --account-state → (HTTP status, service code), as reference §9 documents them.
STATES = {"prepaid-overdue": (429, "PrepaidBillOverdue"), "postpaid-overdue": (429, "PostpaidBillOverdue"),
          "not-purchased": (429, "CommodityNotPurchased"), "free-tier-only": (403, "AllocationQuota.FreeTierOnly"),
          "arrearage": (400, "Arrearage")}


def _images(d, n: int):
    d.mkdir()
    for i in range(n):
        (d / f"{i:02d}.png").write_bytes(_png((64 + i, 48), (i * 9, 100, 200)))
    return d


def _switch_after(srv, k: int, state: str) -> None:
    """Put the emulator's account into ``state`` as soon as it has recognised ``k`` images.

    The switch hooks the emulator's own OCR counter (called after its account check, while the k-th
    answer is being made), so with one call in flight the k-th image is answered and the (k+1)-th is the
    first one refused: an exact, race-free "mid-run" for the assertions below.
    """
    count = srv.state.count_ocr

    def counting(n: int = 1) -> None:
        count(n)
        if srv.state.stats()["ocr_calls"] >= k:
            srv.set_account_state(state)

    srv.state.count_ocr = counting


# -- account states mid-run ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("state", sorted(STATES))
def test_account_state_mid_run_stops_at_once_and_rerun_does_only_the_rest(state, make_emulator, monkeypatch,
                                                                           tmp_path):
    status, code = STATES[state]
    n, k = 10, 4
    srv = make_emulator(engine="echo")
    conn_id = _set_conn(monkeypatch, "qwen_account", srv.base_url, KEY)
    d = _images(tmp_path / "imgs", n)
    out_uri, cache_uri = tmp_path / "r.jsonl", tmp_path / "cache"
    kw = dict(task_id="ocr", images=str(d), conn_id=conn_id, cache_uri=str(cache_uri), max_concurrency=1,
              max_failed_ratio=1.0)
    _switch_after(srv, k, state)

    with pytest.raises(QwenOcrAccountError) as err:
        QwenOcrOperator(output_uri=str(out_uri), **kw).execute(_ctx(run_id="r1"))
    msg = str(err.value)
    assert code in msg and ACCOUNT_CODES[code] in msg, msg  # names the state and says what to fix
    assert "re-run" in msg and KEY not in msg
    stats = srv.stats()
    assert stats["ocr_calls"] == k, "images after the refusal must not be recognised (billed)"
    assert stats["requests"]["native"] == k + 1, "exactly one refused call: no retry, no further image sent"
    assert stats["by_status"][status] == 1
    billed = dict(stats["tokens"])
    rows = list(read_results(str(out_uri))) if out_uri.exists() else []
    assert not [r for r in rows if r["status"] != "ok"], "no error rows for images never sent"

    # back to "ok" through the admin endpoint; the re-run sends only the n - k images not yet done
    srv.state.count_ocr = type(srv.state).count_ocr.__get__(srv.state)
    assert httpx.post(srv.base_url + "/_emulator/account", json={"state": "ok"}, timeout=10).status_code == 200
    second = QwenOcrOperator(output_uri=str(tmp_path / "r2.jsonl"), **kw).execute(_ctx(run_id="r2"))
    assert (second["n_ok"], second["n_failed"], second["n_cached"]) == (n, 0, k)
    assert srv.stats()["ocr_calls"] == n, "the re-run recognised exactly the images the first run did not"
    assert srv.stats()["requests"]["native"] == k + 1 + (n - k)
    assert srv.stats()["tokens"]["input"] > billed["input"]
    assert len(list(read_results(second["results_uri"]))) == n


def test_account_state_mid_run_with_four_workers_no_image_billed_twice(make_emulator, monkeypatch, tmp_path):
    """With calls in flight the stop cannot be exact, but it is bounded by the workers, and the answers that
    were in flight are cached: over both runs every image is recognised (billed) exactly once."""
    n, k, workers = 30, 8, 4
    srv = make_emulator(engine="echo", latency_ms=40, seed=3)
    conn_id = _set_conn(monkeypatch, "qwen_account4", srv.base_url, KEY)
    d = _images(tmp_path / "imgs", n)
    kw = dict(task_id="ocr", images=str(d), conn_id=conn_id, cache_uri=str(tmp_path / "cache"),
              max_concurrency=workers, max_failed_ratio=1.0)
    _switch_after(srv, k, "prepaid-overdue")
    with pytest.raises(QwenOcrAccountError, match="PrepaidBillOverdue"):
        QwenOcrOperator(output_uri=str(tmp_path / "r1.jsonl"), **kw).execute(_ctx(run_id="r1"))
    first = srv.stats()
    assert k <= first["ocr_calls"] < k + workers, first
    assert first["by_status"][429] <= workers, "only calls already started may be refused after the first"
    assert first["requests"]["native"] < k + 2 * workers, "the remaining images were not sent"
    srv.state.count_ocr = type(srv.state).count_ocr.__get__(srv.state)
    srv.set_account_state("ok")
    second = QwenOcrOperator(output_uri=str(tmp_path / "r2.jsonl"), **kw).execute(_ctx(run_id="r2"))
    assert second["n_ok"] == n and second["n_cached"] == first["ocr_calls"]
    assert srv.stats()["ocr_calls"] == n, "no image recognised (billed) twice across the two runs"


@pytest.mark.parametrize("state", ["prepaid-overdue", "free-tier-only"])
def test_account_refused_from_the_start_sends_one_call(state, make_emulator, monkeypatch, tmp_path):
    """``--account-state`` at start-up (the CLI's knob): the first refusal stops the task, nothing is billed."""
    srv = make_emulator(engine="echo", account_state=state)
    conn_id = _set_conn(monkeypatch, "qwen_refused", srv.base_url, KEY)
    d = _images(tmp_path / "imgs", 20)
    with pytest.raises(QwenOcrAccountError, match=STATES[state][1].replace(".", r"\.")):
        QwenOcrOperator(task_id="ocr", images=str(d), conn_id=conn_id, max_concurrency=2, use_cache=False,
                        max_failed_ratio=1.0, output_uri=str(tmp_path / "r.jsonl")).execute(_ctx())
    stats = srv.stats()
    assert stats["ocr_calls"] == 0 and stats["tokens"] == {"input": 0, "output": 0, "image": 0}
    assert stats["requests"]["native"] <= 2, "at most the calls already in flight (2 workers), not 20 images"
    assert not (tmp_path / "r.jsonl").exists()


# -- unknown models -----------------------------------------------------------------------------------------------
def test_unknown_model_warned_once_refused_by_the_service_one_row_each(make_emulator, monkeypatch, tmp_path,
                                                                      caplog):
    name = f"qwen-vl-ocr-2099-{uuid.uuid4().hex[:6]}"  # unique: the warning is once per name per process
    srv = make_emulator(engine="echo")
    conn_id = _set_conn(monkeypatch, "qwen_unknown", srv.base_url, KEY)
    d = _images(tmp_path / "imgs", 5)
    out_uri = tmp_path / "r.jsonl"
    with caplog.at_level(logging.WARNING):
        with pytest.raises(QwenOcrFailedImagesError, match="5 of 5 images failed"):
            QwenOcrOperator(task_id="ocr", images=str(d), conn_id=conn_id, model=name, max_concurrency=2,
                            use_cache=False, output_uri=str(out_uri)).execute(_ctx())
    warnings = [r for r in caplog.records if name in r.getMessage() and "catalogue" in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in caplog.records]
    assert "unknown price" in warnings[0].getMessage()
    rows = list(read_results(str(out_uri)))
    assert len(rows) == 5
    for row in rows:
        assert row["status"] == "error" and row["model"] == name
        assert row["error"]["code"] == "InvalidParameter", row["error"]
        assert row["cost"] is None
    stats = srv.stats()
    assert stats["requests"]["native"] == 5 and stats["by_status"][400] == 5, "one call per image, no retries"
    assert stats["ocr_calls"] == 0


# -- throttling inside an SSE stream -------------------------------------------------------------------------------
def _data_url() -> str:
    buf = io.BytesIO()
    Image.new("RGB", (120, 60), (240, 240, 240)).save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _stream(srv) -> list:
    """The dashscope SDK in stream mode (SSE) against the emulator: every response object it yields."""
    from dashscope import MultiModalConversation

    messages = [{"role": "user", "content": [{"image": _data_url()}, {"text": "Read all the text in the image."}]}]
    out = MultiModalConversation.call(model="qwen-vl-ocr", messages=messages, api_key=KEY, stream=True,
                                      base_address=srv.native_base, request_timeout=30)
    return list(out)


@pytest.mark.parametrize("mode", ["frame", "http"])
def test_throttling_in_a_stream_is_a_retryable_429(make_emulator, mode):
    srv = make_emulator(engine="echo", fail_rate_429=1.0, sse_throttling=mode)
    responses = _stream(srv)
    errors = [e for e in (response_error(r, secret=KEY) for r in responses) if e is not None]
    assert len(errors) == 1, [(r.status_code, r.code) for r in responses]
    (err,) = errors
    assert isinstance(err, RetryableError) and err.retryable
    assert err.status_code == 429 and err.code.startswith("Throttling"), (err.status_code, err.code)
    assert srv.stats()["ocr_calls"] == 0


def test_frame_mode_really_sends_the_error_inside_an_http_200_stream(make_emulator):
    """What the SDK hides: the default mode answers HTTP 200 text/event-stream with an ``event:error`` frame."""
    srv = make_emulator(engine="echo", fail_rate_429=1.0)
    body = {"model": "qwen-vl-ocr", "input": {"messages": [
        {"role": "user", "content": [{"image": _data_url()}, {"text": "Read all the text in the image."}]}]}}
    resp = httpx.post(srv.native_base + "/services/aigc/multimodal-generation/generation", json=body, timeout=30,
                      headers={"Authorization": f"Bearer {KEY}", "X-DashScope-SSE": "enable"})
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
    assert "event:error" in resp.text and "Throttling" in resp.text


def test_an_account_state_frame_in_a_stream_is_an_account_error(make_emulator):
    srv = make_emulator(engine="echo", account_state="prepaid-overdue")
    errors = [e for e in (response_error(r, secret=KEY) for r in _stream(srv)) if e is not None]
    assert len(errors) == 1
    assert isinstance(errors[0], AccountError) and not errors[0].retryable
    assert errors[0].code == "PrepaidBillOverdue" and errors[0].status_code == 429


def test_a_stream_that_succeeds_is_no_error(make_emulator):
    srv = make_emulator(engine="echo")
    responses = _stream(srv)
    assert responses and all(response_error(r, secret=KEY) is None for r in responses)
    text = "".join(part.get("text", "") for r in responses for c in r.output["choices"]
                   for part in c["message"]["content"])
    assert text.startswith("echo 120x60"), text  # the echo engine's answer for this 120x60 image
