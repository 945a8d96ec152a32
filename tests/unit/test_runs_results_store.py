"""ResultsWriter (atomic publish), read_results, ResultCache (per key, ok rows only): local and s3 (moto)."""

from __future__ import annotations

import pytest

from airflow_provider_qwenocr.ocr.results import OcrResult, Usage, Word
from airflow_provider_qwenocr.runs.results_store import ResultCache, ResultsWriter, read_results


def _ok(name: str, key: str) -> OcrResult:
    return OcrResult(source=name, task="text_recognition", model="qwen-vl-ocr", key=key, sha256="ab" * 32,
                     text=f"text of {name} 中文", words=[Word("w", [0, 0, 1, 0, 1, 1, 0, 1], [0, 0, 1, 1, 0])],
                     usage=Usage(10, 2, 8, 12))


def test_writer_publishes_only_on_clean_exit(tmp_path):
    out = tmp_path / "sub" / "results.jsonl"
    with ResultsWriter(str(out)) as w:
        w.write(_ok("a.png", "k1"))
        w.write(OcrResult.failure("b.png", "text_recognition", "qwen-vl-ocr", "InvalidImage", "too small"))
        assert not out.exists(), "nothing may appear at output_uri before the end"
    rows = list(read_results(str(out)))
    assert [r["source"] for r in rows] == ["a.png", "b.png"]
    assert rows[0]["text"] == "text of a.png 中文" and rows[0]["words"][0]["location"][2] == 1
    assert rows[1]["status"] == "error" and rows[1]["error"] == {"code": "InvalidImage", "message": "too small"}
    assert [p.name for p in out.parent.iterdir()] == ["results.jsonl"], "temp file left behind"


def test_writer_crash_leaves_previous_file_untouched(tmp_path):
    out = tmp_path / "results.jsonl"
    out.write_text('{"old": true}\n')
    with pytest.raises(RuntimeError):
        with ResultsWriter(str(out)) as w:
            w.write(_ok("a.png", "k1"))
            raise RuntimeError("killed")
    assert out.read_text() == '{"old": true}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["results.jsonl"]


def test_cache_round_trip_only_ok_rows(tmp_path):
    cache = ResultCache(str(tmp_path / "cache"))
    assert cache.get("ffff") is None
    assert cache.put(_ok("a.png", "abcdef")) is True
    assert cache.get("abcdef")["text"] == "text of a.png 中文"
    assert (tmp_path / "cache" / "ab" / "abcdef.json").is_file()
    err = OcrResult.failure("b.png", "text_recognition", "m", "Throttling", "x", key="bbbb")
    assert cache.put(err) is False and cache.get("bbbb") is None
    assert cache.put({"status": "ok"}) is False  # no key, nothing to store under
    with pytest.raises(ValueError):
        cache.get("../etc")


def test_cache_ignores_torn_file(tmp_path):
    cache = ResultCache(str(tmp_path))
    (tmp_path / "ab").mkdir()
    (tmp_path / "ab" / "abcd.json").write_text('{"status": "ok", "te')
    assert cache.get("abcd") is None


def test_s3_writer_reader_and_cache(s3_conn, s3_bucket):
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    s3 = S3Hook(aws_conn_id=s3_conn)
    uri = f"s3://{s3_bucket}/run1/part.jsonl"
    with ResultsWriter(uri, aws_conn_id=s3_conn) as w:
        w.write(_ok("a.png", "k1"))
        w.write(_ok("b.png", "k2"))
        assert not s3.check_for_key("run1/part.jsonl", bucket_name=s3_bucket)
    assert [r["key"] for r in read_results(uri, aws_conn_id=s3_conn)] == ["k1", "k2"]
    cache = ResultCache(f"s3://{s3_bucket}/cache", aws_conn_id=s3_conn)
    assert cache.get("cafe01") is None
    cache.put(_ok("a.png", "cafe01"))
    assert s3.check_for_key("cache/ca/cafe01.json", bucket_name=s3_bucket)
    assert cache.get("cafe01")["source"] == "a.png"


def test_a_second_task_keeps_the_first_ones_temp_file(tmp_path):
    """Issue 20 #7: two tasks over one output, started a little apart. The second one's start-up clean-up
    must not delete the first one's temp file in progress (it failed at publish after paying)."""
    import os
    import socket
    import subprocess
    import sys

    from airflow_provider_qwenocr.runs import storage

    out = tmp_path / "r.jsonl"
    with ResultsWriter(str(out)) as first:
        first.write({"source": "a.png", "status": "ok"})
        gone = subprocess.Popen([sys.executable, "-c", "pass"])
        gone.wait()
        orphan = tmp_path / f".r.jsonl.{gone.pid}@{socket.gethostname()}.x1y2z3.part"
        orphan.write_text("a killed writer's")
        removed = storage.remove_stale_parts(str(out))  # what the second task does first
        assert removed == [str(orphan)]  # the dead writer's file goes, the live one's stays
        first.write({"source": "b.png", "status": "ok"})
    assert [r["source"] for r in read_results(str(out))] == ["a.png", "b.png"]
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".part")]
