"""Pure units behind issue 9: clean messages, readable names, cache rows of other versions, a row that
cannot be written, storage errors, the decode budget, the frame/pixel caps and the failure policy."""

from __future__ import annotations

import io
import json
import logging
import threading
import time
import warnings

import pytest
from PIL import Image

from airflow_provider_qwenocr.dashscope.errors import RetryableError, describe, from_exception, readable
from airflow_provider_qwenocr.ocr import images
from airflow_provider_qwenocr.ocr.models import get_model
from airflow_provider_qwenocr.ocr.request import build_ocr_request
from airflow_provider_qwenocr.ocr.results import OcrResult
from airflow_provider_qwenocr.runs import realtime as runner
from airflow_provider_qwenocr.runs.results_store import ResultCache, ResultsWriter, read_results
from airflow_provider_qwenocr.runs.sources import Source
from airflow_provider_qwenocr.runs.summary import failed_ratio_exceeded, resolve_max_failed_ratio


def test_describe_drops_reprs_and_repeated_prefixes():
    exc = OSError("cannot identify image file <_io.BytesIO object at 0x7f3a2c1d9e40>")
    assert describe(exc) == "cannot identify image file"
    assert describe(ConnectionError("ConnectionError: ConnectionError: refused")) == "ConnectionError: refused"
    assert describe(ValueError()) == "ValueError"
    import requests

    err = from_exception(requests.exceptions.ConnectionError("Connection refused"))
    assert str(err) == "ConnectionError: Connection refused"  # was "ConnectionError: ConnectionError: …"


def test_readable_names_encode_to_utf8():
    name = b"/in/caf\xe9.png".decode("utf-8", "surrogateescape")  # what os.listdir gives on POSIX
    shown = readable(name)
    assert shown == "/in/caf\\xe9.png" and shown.encode("utf-8")
    assert readable("/in/中文.png") == "/in/中文.png"
    assert Source(name, _reader=lambda: b"").name == shown


def _row(key: str) -> OcrResult:
    return OcrResult(source="a.png", task="text_recognition", model="qwen-vl-ocr", key=key, text="t", sha256="s")


def test_cache_get_is_a_miss_for_foreign_rows_and_storage_errors(tmp_path, monkeypatch, caplog):
    cache = ResultCache(str(tmp_path / "c"))
    assert cache.put(_row("ab12")) and cache.get("ab12")["text"] == "t"
    path = tmp_path / "c" / "ab" / "ab12.json"
    good = json.loads(path.read_text())
    caplog.set_level(logging.WARNING)
    for bad in ({"status": "ok", "key": "ab12"}, {**good, "new_field": 1}, {**good, "key": "other"},
                {**good, "words": [{"text": "x", "surprise": 1}]}, {**good, "usage": "lots"}):
        path.write_text(json.dumps(bad))
        assert cache.get("ab12") is None, bad
    assert caplog.text.count("treated as a miss") == 5

    from airflow_provider_qwenocr.runs import storage

    def broken(*a, **k):
        raise PermissionError("denied")

    monkeypatch.setattr(storage, "read_bytes", broken)
    monkeypatch.setattr(storage, "write_bytes", broken)
    assert cache.get("ab12") is None  # a miss, not a crash
    assert cache.put(_row("cd34")) is False


class _Client:
    def __init__(self):
        self.calls = 0

    def recognize(self, image, *, request, identity):
        self.calls += 1
        return OcrResult(**identity.fields(), task=request.task.value, model=request.model, text="ok",
                         kv={"bad": object()} if "unserialisable" in identity.source else None)


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 40), "white").save(buf, "PNG")
    return buf.getvalue()


def test_a_row_that_cannot_be_written_becomes_that_images_error_row(tmp_path, monkeypatch):
    job = runner.OcrJob(build_ocr_request(model="qwen-vl-ocr"))
    srcs = [Source("/in/fine.png", _reader=_png), Source("/in/unserialisable.png", _reader=lambda: _png()[:-1] + b"!")]

    def failing_write(self, result):
        if "unserialisable" in str(result.source) and result.ok:
            raise TypeError("Object of type object is not JSON serializable")
        return original(self, result)

    original = ResultsWriter.write
    monkeypatch.setattr(ResultsWriter, "write", failing_write)
    with ResultsWriter(str(tmp_path / "r.jsonl")) as w:
        summary = runner.run(srcs, job, _Client(), w, max_concurrency=2)
    rows = {r["source"]: r for r in read_results(str(tmp_path / "r.jsonl"))}
    assert rows["/in/fine.png"]["status"] == "ok"
    assert rows["/in/unserialisable.png"]["error"]["code"] == "ResultWriteError"
    assert summary.n_failed == 1


def test_outage_errors_after_the_breaker_opened_leave_no_row(tmp_path):
    from airflow_provider_qwenocr.dashscope.breaker import CircuitBreaker
    from airflow_provider_qwenocr.dashscope.errors import ServiceUnavailableError

    class Down:
        breaker = CircuitBreaker(failures=1)

        def recognize(self, image, **kw):
            self.breaker.before_call()
            err = RetryableError("refused", code="ConnectionError")
            self.breaker.record_failure(err)
            raise err

    job = runner.OcrJob(build_ocr_request(model="qwen-vl-ocr"))
    srcs = [Source(f"/in/{i}.png", _reader=_png) for i in range(5)]
    with pytest.raises(ServiceUnavailableError):
        with ResultsWriter(str(tmp_path / "r.jsonl")) as w:
            runner.run(srcs, job, Down(), w, max_concurrency=1)
    assert not (tmp_path / "r.jsonl").exists()


def test_images_over_the_pixel_cap_are_refused_before_decoding(monkeypatch):
    buf = io.BytesIO()
    Image.new("L", (400, 300), 255).save(buf, "PNG")
    monkeypatch.setattr(images, "MAX_SOURCE_PIXELS", 100_000)
    loaded = []
    monkeypatch.setattr(Image.Image, "load", lambda self: loaded.append(1))
    with pytest.raises(images.ImageValidationError, match="refusing to decode more than"):
        images.prepare_image(buf.getvalue(), get_model("qwen-vl-ocr"))
    assert not loaded


def test_decode_budget_serialises_large_decodes(monkeypatch):
    monkeypatch.setattr(images, "DECODE_BUDGET_BYTES", 100)
    budget, inside, peak = images._DecodeBudget(), [0], [0]
    lock = threading.Lock()

    def work():
        with budget.hold(80):
            with lock:
                inside[0] += 1
                peak[0] = max(peak[0], inside[0])
            time.sleep(0.05)
            with lock:
                inside[0] -= 1

    threads = [threading.Thread(target=work) for _ in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert peak[0] == 1
    with budget.hold(500):  # larger than the whole budget: runs alone instead of waiting forever
        pass


def test_large_rgba_png_is_reduced_before_conversion():
    """The prepared image is exactly the grid size, alpha on white, from an RGBA source 8× the target."""
    img = Image.new("RGBA", (4000, 3000), (0, 0, 0, 0))
    img.paste((0, 0, 0, 255), (100, 100, 3900, 400))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    spec = get_model("qwen-vl-ocr")
    prep = images.prepare_image(buf.getvalue(), spec, max_pixels=200_000)
    assert prep.sent_width * prep.sent_height <= 200_000 and (prep.width, prep.height) == (4000, 3000)
    _, data = images.decode_data_url(prep.data_url)
    out = Image.open(io.BytesIO(data)).convert("RGB")
    assert out.getpixel((out.width // 2, out.height - 5)) == (255, 255, 255)  # transparent → white
    assert out.getpixel((out.width // 2, int(250 / 3000 * out.height))) < (60, 60, 60)  # the black band


def test_failure_policy():
    assert resolve_max_failed_ratio(None) == 0.0
    with pytest.raises(TypeError):  # 1.0: fail_on_partial_error is gone
        resolve_max_failed_ratio(None, True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_max_failed_ratio(0.2) == 0.2
    with pytest.raises(ValueError):
        resolve_max_failed_ratio(1.5)
    assert failed_ratio_exceeded(2, 3, 0.0) == "2 of 3 images failed (66.7% > max_failed_ratio 0.0%)"
    assert failed_ratio_exceeded(1, 10, 0.1) is None and failed_ratio_exceeded(0, 0, 0.0) is None


def test_cache_stale_part_files_are_removed_but_fresh_ones_kept(tmp_path):
    import os

    cache = ResultCache(str(tmp_path / "c"))
    cache.put(_row("ab12"))
    old = tmp_path / "c" / "ab" / ".ab99.json.x1.part"
    fresh = tmp_path / "c" / "ab" / ".ab98.json.x2.part"
    old.write_text("torn")
    fresh.write_text("being written")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    assert cache.remove_stale_parts() == 1
    assert not old.exists() and fresh.exists() and cache.get("ab12") is not None
