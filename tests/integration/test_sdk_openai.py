"""The official openai SDK (chat.completions) against the emulator's compatible mode.

Built-in tasks do not exist in compatible mode: the task's fixed prompt travels as text (ocr.tasks.prompt_for)
and the emulator recognises it; the answer is text only, parsed by our ocr.parsing.
"""

from __future__ import annotations

import base64
import unicodedata

import pytest

openai = pytest.importorskip("openai")

from airflow_provider_qwenocr.ocr.parsing import extract_table_html, parse_json_loose  # noqa: E402
from airflow_provider_qwenocr.ocr.tasks import prompt_for  # noqa: E402

pytestmark = pytest.mark.integration


def norm(text: str) -> str:
    return "".join(unicodedata.normalize("NFKC", text or "").split())


def client(srv, key="sk-test-emulator"):
    return openai.OpenAI(api_key=key, base_url=srv.compatible_base, max_retries=0, timeout=120)


def image_part(path, **extra):
    url = "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()
    return {"type": "image_url", "image_url": {"url": url}, **extra}


def ask(srv, path, prompt, **kwargs):
    return client(srv).chat.completions.create(
        model="qwen-vl-ocr-latest",
        messages=[{"role": "user", "content": [image_part(path), {"type": "text", "text": prompt}]}], **kwargs)


def test_text_recognition_prompt(emulator, docs_dir):
    resp = ask(emulator, docs_dir / "mixed_notice.png", prompt_for("text_recognition"))
    assert resp.object == "chat.completion" and resp.choices[0].finish_reason == "stop"
    assert norm(resp.choices[0].message.content) == norm((docs_dir / "mixed_notice.txt").read_text())
    details = resp.usage.prompt_tokens_details
    assert (details["image_tokens"] if isinstance(details, dict) else details.image_tokens) > 0  # dict: openai<1.51
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens


def test_table_prompt_gives_html_rows_and_columns(emulator, docs_dir):
    resp = ask(emulator, docs_dir / "table_zh_en.png", prompt_for("table_parsing"))
    table = extract_table_html(resp.choices[0].message.content)
    rows = [line for line in table.splitlines() if line.startswith("<tr>")]
    truth = [line.split() for line in (docs_dir / "table_zh_en.txt").read_text().splitlines()]
    assert len(rows) == len(truth)
    assert all(row.count("<td>") == 3 for row in rows)
    assert "<td>Banana 香蕉</td><td>7</td><td>1.20</td>" in table


def test_kie_prompt_with_schema(emulator, docs_dir):
    schema = {"乘车日期": "", "Total Amount": "", "Phone": ""}
    resp = ask(emulator, docs_dir / "invoice_zh_en.png",
               prompt_for("key_information_extraction", result_schema=schema))
    kv = parse_json_loose(resp.choices[0].message.content)
    assert kv == {"乘车日期": "2013-06-29", "Total Amount": "1,234.56 USD", "Phone": None}


def test_pixel_bounds_next_to_and_inside_image_url(make_emulator, docs_dir):
    srv = make_emulator(engine="echo")
    c = client(srv)
    path = docs_dir / "paragraph_en.png"
    small = 32 * 32 * 50
    outside = c.chat.completions.create(model="qwen-vl-ocr", messages=[{"role": "user", "content": [
        image_part(path, max_pixels=small)]}])
    part = image_part(path)
    part["image_url"]["max_pixels"] = small
    inside = c.chat.completions.create(model="qwen-vl-ocr", messages=[{"role": "user", "content": [part]}])
    default = c.chat.completions.create(model="qwen-vl-ocr", messages=[{"role": "user", "content": [
        image_part(path)]}])
    details = [r.usage.prompt_tokens_details for r in (outside, inside, default)]
    tokens = [d["image_tokens"] if isinstance(d, dict) else d.image_tokens for d in details]  # a dict in openai<1.51
    assert tokens[0] == tokens[1] <= 52 < tokens[2]


def test_streaming(emulator, docs_dir):
    stream = ask(emulator, docs_dir / "paragraph_en.png", prompt_for("text_recognition"), stream=True)
    chunks = list(stream)
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert norm(text) == norm((docs_dir / "paragraph_en.txt").read_text())
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_errors_raise_typed_openai_exceptions(make_emulator, docs_dir):
    locked = make_emulator(engine="echo", api_key="sk-right")
    with pytest.raises(openai.AuthenticationError):
        client(locked, key="sk-wrong").chat.completions.create(
            model="qwen-vl-ocr", messages=[{"role": "user", "content": [image_part(docs_dir / "paragraph_en.png")]}])
    throttled = make_emulator(engine="echo", fail_rate_429=1.0)
    with pytest.raises(openai.RateLimitError) as err:
        client(throttled).chat.completions.create(
            model="qwen-vl-ocr", messages=[{"role": "user", "content": [image_part(docs_dir / "paragraph_en.png")]}])
    assert err.value.response.headers["retry-after"] == "1"
    assert err.value.body["code"] == "Throttling.RateQuota"
    open_srv = make_emulator(engine="echo")
    with pytest.raises(openai.BadRequestError) as bad:
        client(open_srv).chat.completions.create(
            model="qwen-vl-ocr", messages=[{"role": "user", "content": [image_part(docs_dir / "inspection_red.png")]}])
    assert bad.value.body["code"] == "DataInspectionFailed"
