"""QwenOcrOperator end to end against the offline emulator (real HTTP on loopback, real OCR by rapidocr).

What is checked here and not in the unit tests: the real hook + client + emulator path for every task,
error rows from the service (DataInspectionFailed) and from bad files, the failure ratio, zero API calls
on a re-run (the emulator's own counters), a kill mid-run whose retry re-bills nothing finished, and the
API key absent from logs, rows, cache and XCom.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from PIL import Image

from airflow_provider_qwenocr._compat import AirflowException
from airflow_provider_qwenocr.operators.ocr import QwenOcrOperator
from airflow_provider_qwenocr.runs.results_store import read_results

pytestmark = pytest.mark.integration
DOCS = Path(__file__).resolve().parents[1] / "data" / "docs"
SECRET = "sk-integration-secret-5f3a9c"


def _ctx(map_index=-1, run_id="manual__2026-11-25T12:00:00+00:00", dag_id="op_it"):
    ti = SimpleNamespace(dag_id=dag_id, task_id="ocr", run_id=run_id, map_index=map_index)
    return {"ti": ti, "run_id": run_id}


def _png(size, color=(255, 255, 255)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


def _calls(srv) -> int:
    return srv.stats()["ocr_calls"]


def _set_conn(monkeypatch, conn_id: str, base_url: str, key: str) -> str:
    conn = {"conn_type": "dashscope", "password": key, "host": base_url}
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
    return conn_id


def _norm(s: str) -> str:
    return "".join(str(s).split())


@pytest.fixture
def invoice(tmp_path) -> Path:
    d = tmp_path / "docs"
    d.mkdir()
    shutil.copy(DOCS / "invoice_zh_en.png", d / "invoice_zh_en.png")
    return d


# -- every task ------------------------------------------------------------------------------------

TASKS = [
    ("text_recognition", {}),
    ("multi_lan", {}),
    ("table_parsing", {}),
    ("document_parsing", {}),
    ("formula_recognition", {}),
    ("key_information_extraction", {"result_schema": {"发票代码": "invoice code", "发票号码": "invoice number"}}),
    ("advanced_recognition", {}),
    ("custom", {"prompt": "Read all the text in the image and return it as plain text."}),
]


@pytest.mark.parametrize("task,kw", TASKS, ids=[t for t, _ in TASKS])
def test_every_task_through_the_operator(task, kw, emulator, emulator_conn, invoice, tmp_path):
    before = _calls(emulator)
    out = QwenOcrOperator(task_id="ocr", images=str(invoice), task=task, output_uri=str(tmp_path / "r.jsonl"),
                          use_cache=False, **kw).execute(_ctx())
    assert out["n_ok"] == 1 and out["n_failed"] == 0 and _calls(emulator) - before == 1
    assert out["usage"]["image_tokens"] > 0 and out["cost"]["usd"] > 0
    (row,) = read_results(out["results_uri"])
    assert row["task"] == task and row["status"] == "ok" and row["model"] == "qwen-vl-ocr"
    assert row["usage"] == out["usage"]
    text = _norm(row["text"])
    if task in ("text_recognition", "multi_lan", "custom"):
        assert "221021325353" in text and "INVOICE" in text
    if task == "table_parsing":
        assert "<td" in (row["html"] or row["text"] or "")
    if task == "key_information_extraction":
        assert isinstance(row["kv"], dict) and _norm(row["kv"].get("发票代码") or "") == "221021325353"
    if task == "advanced_recognition":
        words = row["words"]
        assert words and all(len(w["location"]) == 8 for w in words)
        with Image.open(DOCS / "invoice_zh_en.png") as img:
            w, h = img.size
        xs = [v for wd in words for v in wd["location"][0::2]]
        ys = [v for wd in words for v in wd["location"][1::2]]
        assert max(xs) <= w + 2 and max(ys) <= h + 2, "boxes must be on the original image's scale"
        assert max(xs) > w / 2, "boxes span the original width, not the resized one"


def test_advanced_recognition_draws_boxes(emulator, emulator_conn, invoice, tmp_path):
    boxes = tmp_path / "boxes"
    QwenOcrOperator(task_id="ocr", images=str(invoice), task="advanced_recognition", use_cache=False,
                    output_uri=str(tmp_path / "r.jsonl"), draw_boxes_uri=str(boxes)).execute(_ctx())
    (png,) = list(boxes.iterdir())
    drawn = Image.open(png).convert("RGB")
    with Image.open(DOCS / "invoice_zh_en.png") as orig:
        assert drawn.size == orig.size
        assert drawn.tobytes() != orig.convert("RGB").tobytes()


# -- failures ----------------------------------------------------------------------------------------


def test_bad_inputs_become_error_rows(emulator, emulator_conn, tmp_path):
    d = tmp_path / "mixed"
    d.mkdir()
    shutil.copy(DOCS / "paragraph_en.png", d / "good.png")
    shutil.copy(DOCS / "inspection_red.png", d / "red.png")  # the emulator refuses it: DataInspectionFailed
    (d / "tiny.png").write_bytes(_png((8, 8)))
    (d / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    out_uri = tmp_path / "r.jsonl"
    before = _calls(emulator)
    with pytest.raises(AirflowException, match="3 of 4 images failed"):
        QwenOcrOperator(task_id="ocr", images=str(d), output_uri=str(out_uri), use_cache=False).execute(_ctx())
    rows = {Path(r["source"]).name: r for r in read_results(str(out_uri))}
    assert rows["good.png"]["status"] == "ok" and "Quarterly" in rows["good.png"]["text"]
    assert rows["red.png"]["error"]["code"] == "DataInspectionFailed"
    assert rows["tiny.png"]["error"]["code"] == "InvalidImage"
    assert rows["broken.jpg"]["error"]["code"] == "InvalidImage"
    assert _calls(emulator) - before <= 2, "invalid images never reach the service"
    out = QwenOcrOperator(task_id="ocr", images=str(d), output_uri=str(out_uri), use_cache=False,
                          max_failed_ratio=0.75).execute(_ctx())
    assert (out["n_ok"], out["n_failed"]) == (1, 3) and len(out["failed"]) == 3


def test_invalid_key_stops_the_task(make_emulator, monkeypatch, tmp_path):
    srv = make_emulator(api_key=SECRET, engine="echo")
    conn_id = _set_conn(monkeypatch, "qwen_wrong_key", srv.base_url, "sk-wrong-key-000000")
    d = tmp_path / "many"
    d.mkdir()
    for i in range(30):
        (d / f"{i:02d}.png").write_bytes(_png((64 + i, 64), (i, i, i)))
    with pytest.raises(AirflowException, match="refused the account") as err:
        QwenOcrOperator(task_id="ocr", images=str(d), conn_id=conn_id, max_concurrency=2, use_cache=False,
                        max_failed_ratio=1.0, output_uri=str(tmp_path / "r.jsonl")).execute(_ctx())
    assert "sk-wrong-key-000000" not in str(err.value)
    assert srv.stats()["requests"].get("native", 0) <= 6, "stop at once, do not try all 30 images"
    assert not (tmp_path / "r.jsonl").exists()


# -- idempotency ---------------------------------------------------------------------------------------


def test_rerun_makes_zero_api_calls(emulator, emulator_conn, tmp_path):
    d = tmp_path / "docs"
    d.mkdir()
    for name in ("paragraph_en.png", "paragraph_zh.png", "table_zh_en.png"):
        shutil.copy(DOCS / name, d / name)
    kw = dict(task_id="ocr", images=str(d), cache_uri=str(tmp_path / "cache"))
    before = _calls(emulator)
    first = QwenOcrOperator(output_uri=str(tmp_path / "run1.jsonl"), **kw).execute(_ctx(run_id="r1"))
    n = first["n_images"]
    assert n == 3
    assert first["n_ok"] == n and _calls(emulator) - before == n
    mid = _calls(emulator)
    second = QwenOcrOperator(output_uri=str(tmp_path / "run2.jsonl"), **kw).execute(_ctx(run_id="r2"))
    assert _calls(emulator) == mid, "a re-run must not call the service"
    assert second["n_cached"] == n and second["usage"]["total_tokens"] == 0 and second["cost"]["usd"] == 0
    rows1 = {r["key"]: r for r in read_results(first["results_uri"])}
    rows2 = {r["key"]: r for r in read_results(second["results_uri"])}
    assert rows1.keys() == rows2.keys() and all(rows1[k]["text"] == rows2[k]["text"] for k in rows1)


_KILL_SCRIPT = textwrap.dedent("""
    import sys, types
    from airflow_provider_qwenocr.operators.ocr import QwenOcrOperator
    ti = types.SimpleNamespace(dag_id="kill_it", task_id="ocr", run_id="r1", map_index=-1)
    QwenOcrOperator(task_id="ocr", images=sys.argv[1], output_uri=sys.argv[2], cache_uri=sys.argv[3],
                    conn_id="qwen_kill", max_concurrency=4).execute({"ti": ti, "run_id": "r1"})
""")


def test_killed_mid_run_then_retried_rebills_nothing_done(make_emulator, monkeypatch, tmp_path):
    srv = make_emulator(engine="echo", latency_ms=150, seed=1)
    _set_conn(monkeypatch, "qwen_kill", srv.base_url, "sk-test-emulator")
    d = tmp_path / "imgs"
    d.mkdir()
    n = 60
    for i in range(n):
        (d / f"{i:03d}.png").write_bytes(_png((64 + i, 48), (i, 2 * i, 3 * i)))
    out_uri, cache = tmp_path / "r.jsonl", tmp_path / "cache"
    proc = subprocess.Popen([sys.executable, "-c", _KILL_SCRIPT, str(d), str(out_uri), str(cache)],
                            env={**os.environ}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(cache.rglob("*.json"))) < 12:
        assert proc.poll() is None, "the first attempt finished before it could be killed"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    done_before_kill = len(list(cache.rglob("*.json")))
    calls_first = srv.stats()["ocr_calls"]
    assert 12 <= done_before_kill < n and not out_uri.exists(), "a killed task leaves no half results file"

    out = QwenOcrOperator(task_id="ocr", images=str(d), output_uri=str(out_uri), cache_uri=str(cache),
                          conn_id="qwen_kill", max_concurrency=4).execute(_ctx())
    calls_retry = srv.stats()["ocr_calls"] - calls_first
    assert out["n_ok"] == n and out["n_cached"] == done_before_kill
    assert calls_retry == n - done_before_kill, "the retry called the service only for unfinished images"
    rows = list(read_results(str(out_uri)))
    assert len(rows) == n and len({r["key"] for r in rows}) == n, "every image exactly once"


# -- mapping and secrets ---------------------------------------------------------------------------------


def test_mapped_instances_write_separate_files(emulator, emulator_conn, tmp_path, monkeypatch):
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "home"))
    chunks = [[str(DOCS / "paragraph_en.png")], [str(DOCS / "paragraph_zh.png"), str(DOCS / "mixed_notice.png")]]
    outs = [QwenOcrOperator(task_id="ocr", images=chunk).execute(_ctx(map_index=i)) for i, chunk in enumerate(chunks)]
    uris = [o["results_uri"] for o in outs]
    assert uris[0] != uris[1] and uris[0].endswith("ocr_0.jsonl") and uris[1].endswith("ocr_1.jsonl")
    assert [len(list(read_results(u))) for u in uris] == [1, 2]


def test_partial_expand_builds_mapped_operator():
    mapped = QwenOcrOperator.partial(task_id="ocr", task="text_recognition").expand(images=[["a.png"], ["b.png"]])
    assert type(mapped).__name__ == "MappedOperator"


def test_api_key_absent_from_logs_rows_cache_and_xcom(make_emulator, monkeypatch, tmp_path, caplog, capsys):
    srv = make_emulator(api_key=SECRET, engine="echo")
    conn_id = _set_conn(monkeypatch, "qwen_secret", srv.base_url, SECRET)
    d = tmp_path / "in"
    d.mkdir()
    shutil.copy(DOCS / "paragraph_en.png", d / "ok.png")
    shutil.copy(DOCS / "inspection_red.png", d / "red.png")
    caplog.set_level("DEBUG")
    out = QwenOcrOperator(task_id="ocr", images=str(d), conn_id=conn_id, output_uri=str(tmp_path / "out" / "r.jsonl"),
                          max_failed_ratio=1.0).execute(_ctx())
    assert out["n_ok"] == 1 and out["n_failed"] == 1
    captured = capsys.readouterr()
    logs = caplog.text + captured.out + captured.err
    assert "OCR done" in logs and SECRET not in logs
    assert SECRET not in json.dumps(out)
    for f in (tmp_path / "out").rglob("*"):
        if f.is_file():
            assert SECRET.encode() not in f.read_bytes(), f


# -- URLs and PDFs -------------------------------------------------------------------------------------


def test_urls_pass_through_unless_fetch(emulator, emulator_conn, static_http, tmp_path):
    url = static_http.url("paragraph_en.png")
    before = emulator.stats()["requests"].copy()
    out = QwenOcrOperator(task_id="ocr", images=[url], output_uri=str(tmp_path / "a.jsonl"),
                          use_cache=False).execute(_ctx())
    (row,) = read_results(out["results_uri"])
    assert row["source"] == url and row["status"] == "ok" and "Quarterly" in row["text"]
    assert row["width"] is None, "the service fetched the URL: we never saw its pixels"
    out = QwenOcrOperator(task_id="ocr", images=[url], output_uri=str(tmp_path / "b.jsonl"), use_cache=False,
                          image_transport="fetch").execute(_ctx())
    (fetched,) = read_results(out["results_uri"])
    with Image.open(DOCS / "paragraph_en.png") as img:
        assert (fetched["width"], fetched["height"]) == img.size, "fetched and prepared locally"
    assert "Quarterly" in fetched["text"]
    assert emulator.stats()["requests"].get("native", 0) - before.get("native", 0) == 2


def test_pdf_pages_become_rows(emulator, emulator_conn, tmp_path):
    pytest.importorskip("pypdfium2")
    d = tmp_path / "pdfs"
    d.mkdir()
    with Image.open(DOCS / "paragraph_en.png") as p1, Image.open(DOCS / "mixed_notice.png") as p2:
        p1.convert("RGB").save(d / "two_pages.pdf", "PDF", resolution=72, save_all=True,
                               append_images=[p2.convert("RGB")])
    out = QwenOcrOperator(task_id="ocr", images=str(d), output_uri=str(tmp_path / "r.jsonl")).execute(_ctx())
    assert out["n_images"] == 2 and out["n_ok"] == 2
    rows = sorted(read_results(out["results_uri"]), key=lambda r: r["page"])
    assert [r["page"] for r in rows] == [1, 2] and rows[0]["source"].endswith("two_pages.pdf#page=1")
    assert "Quarterly" in rows[0]["text"] and "Notice" in rows[1]["text"]
    assert rows[0]["key"] != rows[1]["key"]
