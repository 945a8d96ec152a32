"""The service facts of issue 8 through the compatible endpoint and the Batch API, end to end.

The provider writes the official KIE prompts and the completion window; the emulator (an independent
implementation) must recognise those prompts as the built-in task and accept/refuse windows as the service
does. Here the provider's own operator / prompt table / parsers run against the real emulator:

- ``QwenOcrBatchOperator(completion_window="336h")`` creates its batch with 336h (read back through the
  batches API); "337h" is refused before anything is uploaded;
- the provider's KIE prompts (``prompt_for``) sent to the compatible endpoint with the OpenAI SDK, and as
  Batch lines by the operator, come back as the built-in KIE answer, parsed by the provider into ``kv``;
- a Batch ``advanced_recognition`` line's text block (0–1000 rotate_rects) parses into words with locations
  on the original image.
"""

from __future__ import annotations

import base64
import io

import httpx
import pytest
from PIL import Image, ImageDraw

from airflow_provider_qwenocr.hooks.qwenocr import QwenOcrHook
from airflow_provider_qwenocr.ocr.parsing import parse_answer
from airflow_provider_qwenocr.ocr.tasks import OcrTask, prompt_for
from airflow_provider_qwenocr.operators.batch import QwenOcrBatchOperator
from airflow_provider_qwenocr.runs.results_store import read_results
from tests.integration.batch_support import API_KEY, FakeTI, conn_env, png, start_server

pytestmark = pytest.mark.integration
FORM = {"Invoice No": "10283819", "Date": "2013-06-29"}


def _form_png() -> bytes:
    img = Image.new("RGB", (900, 200), "white")
    draw = ImageDraw.Draw(img)
    for i, (k, v) in enumerate(FORM.items()):
        draw.text((20, 30 + 80 * i), f"{k}: {v}", fill="black", font_size=40)
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def echo_server():
    srv = start_server(batch_seconds=0.2)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def ocr_server():
    srv = start_server(engine="rapidocr", batch_seconds=0.2)
    yield srv
    srv.stop()


def _op(images, tmp_path, name="r", **kw):
    kw.setdefault("deferrable", False)
    kw.setdefault("poll_interval", 0.1)
    return QwenOcrBatchOperator(task_id="ocr_batch", images=str(images),
                                output_uri=str(tmp_path / "out" / f"{name}.jsonl"), **kw)


def _rows(summary) -> dict:
    return {r["source"].rsplit("/", 1)[-1]: r for r in read_results(summary["results_uri"])}


# -- completion windows ---------------------------------------------------------------------------------------------
def test_batch_created_with_336h_and_337h_refused_before_upload(echo_server, monkeypatch, tmp_path):
    monkeypatch.setenv("AIRFLOW_CONN_DASHSCOPE_DEFAULT", conn_env(echo_server.base_url))
    d = tmp_path / "in"
    d.mkdir()
    (d / "a.png").write_bytes(png("alpha"))
    summary = _op(d, tmp_path, completion_window="336h").execute({"ti": FakeTI()})
    assert summary["n_ok"] == 1
    (batch_id,) = summary["batch_ids"]
    assert QwenOcrHook().get_batch(batch_id)["completion_window"] == "336h"
    raw = httpx.get(f"{echo_server.compatible_base}/batches/{batch_id}", timeout=10,
                    headers={"Authorization": f"Bearer {API_KEY}"}).json()
    assert raw["completion_window"] == "336h", "the service's own record of the batch says 336h"

    uploads, batches = echo_server.file_uploads(), echo_server.batch_creations()
    with pytest.raises(ValueError, match="completion_window='337h'"):
        _op(d, tmp_path, name="r2", completion_window="337h")  # at parse time
    op = _op(d, tmp_path, name="r3", completion_window="{{ params.window }}")
    op.completion_window = "337h"  # what template rendering would produce
    with pytest.raises(ValueError, match="336"):
        op.execute({"ti": FakeTI()})
    assert (echo_server.file_uploads(), echo_server.batch_creations()) == (uploads, batches), \
        "a refused window must not upload anything"


# -- the official KIE prompts ----------------------------------------------------------------------------------------
def _data_url(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


@pytest.mark.parametrize("schema", [{"Invoice No": "", "Date": "", "Seller": ""}, None], ids=["schema", "free"])
def test_provider_kie_prompts_through_the_compatible_endpoint(ocr_server, schema):
    from openai import OpenAI

    text = prompt_for(OcrTask.KEY_INFORMATION_EXTRACTION, result_schema=schema)
    client = OpenAI(api_key=API_KEY, base_url=ocr_server.compatible_base, max_retries=0, timeout=60)
    resp = client.chat.completions.create(model="qwen-vl-ocr", messages=[{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": _data_url(_form_png())}}, {"type": "text", "text": text}]}])
    content = resp.choices[0].message.content
    assert content.lstrip().startswith("```json"), f"not answered as the built-in KIE task: {content[:200]}"
    kv = parse_answer(OcrTask.KEY_INFORMATION_EXTRACTION, content).kv
    assert kv == ({**FORM, "Seller": None} if schema else FORM)


def test_kie_and_advanced_recognition_as_batch_lines(ocr_server, monkeypatch, tmp_path):
    monkeypatch.setenv("AIRFLOW_CONN_DASHSCOPE_DEFAULT", conn_env(ocr_server.base_url))
    d = tmp_path / "in"
    d.mkdir()
    (d / "form.png").write_bytes(_form_png())
    kie = _op(d, tmp_path, name="kie", task="key_information_extraction",
              result_schema={"Invoice No": "", "Date": ""}).execute({"ti": FakeTI()})
    row = _rows(kie)["form.png"]
    assert row["status"] == "ok" and row["kv"] == FORM, row

    adv = _op(d, tmp_path, name="adv", task="advanced_recognition").execute({"ti": FakeTI()})
    row = _rows(adv)["form.png"]
    assert row["status"] == "ok", row
    words = row["words"]
    assert {w["text"].replace(" ", "") for w in words} >= {"InvoiceNo:10283819", "Date:2013-06-29"}, words
    for w in words:
        xs, ys = w["location"][0::2], w["location"][1::2]
        assert len(w["location"]) == 8 and len(w["rotate_rect"]) == 5
        assert 0 <= min(xs) < max(xs) <= 902 and 0 <= min(ys) < max(ys) <= 202, w
    first = min(words, key=lambda w: w["location"][1])
    assert first["text"].startswith("Invoice") and max(first["location"][1::2]) < 110, "the first line's box"


# -- unknown models in a batch ---------------------------------------------------------------------------------------
def test_unknown_model_batch_fails_validation_with_one_error_row_each_cost_null(echo_server, monkeypatch, tmp_path):
    """The provider accepts the name (a warning); the service's batch validation refuses it (model_not_found):
    the task fails naming the cause, every image gets an error row with a null cost, nothing is recognised."""
    from airflow_provider_qwenocr.exceptions import QwenOcrException

    monkeypatch.setenv("AIRFLOW_CONN_DASHSCOPE_DEFAULT", conn_env(echo_server.base_url))
    d = tmp_path / "in"
    d.mkdir()
    for name in ("a", "b"):
        (d / f"{name}.png").write_bytes(png(name))
    calls = echo_server.stats()["ocr_calls"]
    op = _op(d, tmp_path, name="unknown", model="qwen-vl-ocr-2099-01-01")
    with pytest.raises(QwenOcrException, match="model_not_found"):
        op.execute({"ti": FakeTI()})
    rows = list(read_results(str(tmp_path / "out" / "unknown.jsonl")))
    assert len(rows) == 2
    assert all(r["status"] == "error" and r["cost"] is None and r["model"] == "qwen-vl-ocr-2099-01-01" for r in rows)
    assert echo_server.stats()["ocr_calls"] == calls
