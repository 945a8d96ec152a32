"""The official dashscope SDK (MultiModalConversation) against the emulator: data URL, https on loopback,
file:// (getPolicy + OSS upload + oss:// resolve), SSE streaming, built-in tasks and error responses.

The base address is passed per call (``base_address=``); module globals are never touched. The SDK's
file:// upload ignores ``base_address`` for its getPolicy call, so that case runs in a subprocess whose
``DASHSCOPE_HTTP_BASE_URL`` points at the emulator.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import unicodedata

import pytest

dashscope = pytest.importorskip("dashscope")
from dashscope import MultiModalConversation  # noqa: E402

pytestmark = pytest.mark.integration
KEY = "sk-test-emulator"


def norm(text: str) -> str:
    return "".join(unicodedata.normalize("NFKC", text or "").split())


def call(emulator, image: str, **kwargs):
    return MultiModalConversation.call(
        model="qwen-vl-ocr-latest", api_key=KEY, base_address=emulator.native_base,
        messages=[{"role": "user", "content": [{"image": image}]}], **kwargs)


def answer_text(resp) -> str:
    return "".join(item.get("text", "") for item in resp.output.choices[0].message.content)


def test_data_url_text_recognition(emulator, docs_dir):
    url = "data:image/png;base64," + base64.b64encode((docs_dir / "paragraph_en.png").read_bytes()).decode()
    resp = call(emulator, url, ocr_options={"task": "text_recognition"})
    assert resp.status_code == 200, resp
    assert norm(answer_text(resp)) == norm((docs_dir / "paragraph_en.txt").read_text())
    assert resp.request_id and resp.usage["image_tokens"] > 0
    assert resp.usage["input_tokens"] > resp.usage["image_tokens"]


def test_https_loopback_key_information_extraction(emulator, static_https):
    schema = {"发票": {"发票代码": "", "发票号码": ""}, "Customer": "", "Tax ID": ""}
    resp = call(emulator, static_https.url("invoice_zh_en.png"),
                ocr_options={"task": "key_information_extraction", "task_config": {"result_schema": schema}})
    assert resp.status_code == 200, resp
    kv = resp.output.choices[0].message.content[0]["ocr_result"]["kv_result"]
    assert kv["发票"] == {"发票代码": "221021325353", "发票号码": "10283819"}
    assert kv["Customer"] == "Hangzhou Tech Co., Ltd."
    assert kv["Tax ID"] is None  # not on the document: null, never invented


def test_file_url_goes_through_get_policy_and_oss_upload(emulator, docs_dir):
    emulator.reset_stats()
    script = (
        "import json, sys\n"
        "from dashscope import MultiModalConversation\n"
        "r = MultiModalConversation.call(model='qwen-vl-ocr', api_key=sys.argv[1],\n"
        "    messages=[{'role': 'user', 'content': [{'image': 'file://' + sys.argv[2]}]}],\n"
        "    ocr_options={'task': 'text_recognition'})\n"
        "print(json.dumps({'status': r.status_code, 'code': r.code,\n"
        "    'text': ''.join(i.get('text', '') for i in r.output.choices[0].message.content) if r.output else None}))\n"
    )
    env = {**os.environ, "DASHSCOPE_HTTP_BASE_URL": emulator.native_base, "NO_PROXY": "127.0.0.1,localhost"}
    out = subprocess.run([sys.executable, "-c", script, KEY, str(docs_dir / "mixed_notice.png")], env=env,
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["status"] == 200, result
    assert norm(result["text"]) == norm((docs_dir / "mixed_notice.txt").read_text())
    stats = emulator.stats()
    assert stats["requests"]["upload_policy"] == 1 and stats["requests"]["oss_upload"] == 1
    assert stats["oss_objects"] >= 1


def test_streaming_incremental_output(emulator, docs_dir):
    url = "data:image/png;base64," + base64.b64encode((docs_dir / "paragraph_zh.png").read_bytes()).decode()
    chunks = list(call(emulator, url, stream=True, incremental_output=True,
                       ocr_options={"task": "text_recognition"}))
    assert len(chunks) >= 3 and all(c.status_code == 200 for c in chunks)
    assert [c.output.choices[0].finish_reason for c in chunks][-1] == "stop"
    text = "".join(answer_text(c) for c in chunks)
    assert norm(text) == norm((docs_dir / "paragraph_zh.txt").read_text())


def test_errors_come_back_as_responses(make_emulator, docs_dir):
    srv = make_emulator(engine="echo", api_key="sk-right")
    url = "data:image/png;base64," + base64.b64encode((docs_dir / "paragraph_en.png").read_bytes()).decode()
    wrong = MultiModalConversation.call(model="qwen-vl-ocr", api_key="sk-wrong", base_address=srv.native_base,
                                        messages=[{"role": "user", "content": [{"image": url}]}])
    assert (wrong.status_code, wrong.code) == (401, "InvalidApiKey")
    red = "data:image/png;base64," + base64.b64encode((docs_dir / "inspection_red.png").read_bytes()).decode()
    blocked = MultiModalConversation.call(model="qwen-vl-ocr", api_key="sk-right", base_address=srv.native_base,
                                          messages=[{"role": "user", "content": [{"image": red}]}])
    assert (blocked.status_code, blocked.code) == (400, "DataInspectionFailed")
    assert blocked.request_id
