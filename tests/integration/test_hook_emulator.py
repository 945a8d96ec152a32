"""Every OCR task through QwenOcrHook → dashscope SDK → the emulator (real OCR with rapidocr), on loopback."""

from __future__ import annotations

import json

import pytest

from airflow_provider_qwenocr.dashscope.errors import InvalidApiKeyError, PermanentError
from airflow_provider_qwenocr.hooks.qwenocr import QwenOcrHook
from airflow_provider_qwenocr.ocr.images import estimate_tokens

pytestmark = pytest.mark.integration


@pytest.fixture
def hook(emulator_conn):
    return QwenOcrHook(emulator_conn)


@pytest.fixture(scope="module")
def invoice(docs_dir):
    return (docs_dir / "invoice_zh_en.png").read_bytes()


def _norm(s: str | None) -> str:
    return "".join((s or "").split())


def test_text_recognition_reads_the_document(hook, invoice):
    res = hook.recognize(invoice, "text_recognition")
    assert res.ok and res.task == "text_recognition"
    assert "INVOICE" in res.text and "221021325353" in _norm(res.text)
    # the emulator bills with the same smart_resize: our estimate is exact
    assert res.usage.image_tokens == estimate_tokens(invoice, hook.model_spec())
    assert res.usage.output_tokens > 0 and res.cost["usd"] > 0
    assert res.request_id and res.sha256 and res.key


def test_multi_lan(hook, invoice):
    res = hook.recognize(invoice, "multi_lan")
    assert "发票" in res.text


def test_table_parsing(hook, docs_dir):
    res = hook.recognize(docs_dir / "table_zh_en.png", "table_parsing")
    assert res.html and res.html.lower().startswith("<table") and res.html.lower().count("<tr") >= 2
    first_cell = (docs_dir / "table_zh_en.txt").read_text().split()[0]
    assert first_cell in res.html


def test_document_parsing(hook, docs_dir):
    res = hook.recognize(str(docs_dir / "paragraph_en.png"), "document_parsing")
    assert res.latex
    assert res.source.endswith("paragraph_en.png")


def test_formula_recognition(hook, invoice):
    res = hook.recognize(invoice, "formula_recognition")
    assert res.latex is not None and res.text


def test_key_information_extraction_with_schema(hook, invoice):
    schema = {"发票代码": "the invoice code", "发票号码": "the invoice number"}
    res = hook.recognize(invoice, "key_information_extraction", result_schema=schema)
    assert isinstance(res.kv, dict) and set(schema) <= set(res.kv)
    assert res.kv["发票代码"] and "221021325353" in _norm(str(res.kv["发票代码"]))


def test_key_information_extraction_schema_as_json_string(hook, invoice):
    res = hook.recognize(invoice, "key_information_extraction", result_schema=json.dumps({"发票号码": "number"}))
    assert "10283819" in _norm(str(res.kv.get("发票号码")))


def test_key_information_extraction_free(hook, invoice):
    res = hook.recognize(invoice, "key_information_extraction")
    assert isinstance(res.kv, dict) and res.kv


def test_advanced_recognition_boxes_on_the_original_image(hook, invoice):
    full = hook.recognize(invoice, "advanced_recognition")
    small = hook.recognize(invoice, "advanced_recognition", max_pixels=32 * 32 * 120)  # sent at ~1/2 scale
    assert full.words and small.words
    assert (small.width, small.height) == (760, 420)

    def box(res, needle):
        word = next(w for w in res.words if needle in w.text)
        xs, ys = word.location[0::2], word.location[1::2]
        return min(xs), min(ys), max(xs), max(ys)

    for word in full.words:
        xs, ys = word.location[0::2], word.location[1::2]
        assert -5 <= min(xs) and max(xs) <= 760 + 5 and -5 <= min(ys) and max(ys) <= 420 + 5
    a, b = box(full, "INVOICE"), box(small, "INVOICE")
    # the same line, read from a half-size upload, lands on the same place of the original image
    assert all(abs(p - q) <= 0.06 * 760 for p, q in zip(a, b, strict=True)), (a, b)


def test_custom_prompt(hook, invoice):
    res = hook.recognize(invoice, "custom", prompt="Read every line of the invoice.")
    assert res.task == "custom" and "INVOICE" in res.text


def test_url_passes_through(hook, static_http):
    res = hook.recognize(static_http.url("paragraph_en.png"), "text_recognition")
    assert res.source.startswith("http://127.0.0.1") and res.text


def test_rotated_image_with_enable_rotate(hook, invoice):
    import io

    from PIL import Image

    img = Image.open(io.BytesIO(invoice)).rotate(90, expand=True)
    buf = io.BytesIO()
    img.save(buf, "PNG")
    res = hook.recognize(buf.getvalue(), "text_recognition", enable_rotate=True)
    assert res.ok  # the request shape with enable_rotate is accepted; recognition is the emulator's concern


def test_inspection_failure_is_permanent(hook, docs_dir):
    with pytest.raises(PermanentError) as ei:
        hook.recognize(docs_dir / "inspection_red.png")
    assert ei.value.code == "DataInspectionFailed" and ei.value.status_code == 400


def test_test_connection_against_the_emulator(hook):
    ok, msg = hook.test_connection()
    assert ok, msg


def test_wrong_key_stops(make_emulator, monkeypatch, invoice):
    srv = make_emulator(engine="echo", api_key="sk-the-right-one")
    monkeypatch.setenv("AIRFLOW_CONN_DASHSCOPE_WRONG", json.dumps(
        {"conn_type": "dashscope", "password": "sk-the-wrong-one", "host": srv.base_url}))
    hook = QwenOcrHook("dashscope_wrong")
    with pytest.raises(InvalidApiKeyError):
        hook.recognize(invoice)
    ok, msg = hook.test_connection()
    assert not ok and "InvalidApiKey" in msg and "sk-the-wrong-one" not in msg
    assert srv.stats()["by_status"].get(401, srv.stats()["by_status"].get("401")) == 2  # no retries


def test_two_hooks_with_different_connections_do_not_interfere(make_emulator, monkeypatch, invoice):
    """Each emulator accepts only its own key: a request sent to the other one would come back 401."""
    import threading

    servers = {name: make_emulator(engine="echo", api_key=f"sk-only-{name}") for name in ("a", "b")}
    for name, srv in servers.items():
        monkeypatch.setenv(f"AIRFLOW_CONN_DASHSCOPE_{name.upper()}", json.dumps(
            {"conn_type": "dashscope", "password": f"sk-only-{name}", "host": srv.base_url}))
    hooks = {name: QwenOcrHook(f"dashscope_{name}") for name in servers}
    errors: list[BaseException] = []

    def run(name):
        try:
            for _ in range(10):
                assert hooks[name].recognize(invoice).ok
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(name,)) for name in ("a", "b", "a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for srv in servers.values():
        by_status = srv.stats()["by_status"]
        assert by_status.get(200, 0) == 20 and by_status.get(401, 0) == 0
