"""Issue 9 ("never lose a night's run"): one test per row of its table, against the emulator on loopback.

Rows and where they are tested:
- hostile memory set (4 RGBA PNGs 13000², a 200×200-inch PDF page) → test_hostile_set_peak_rss
- a file name that is not valid UTF-8 → test_non_utf8_file_name
- a cache entry written by another version → test_cache_rows_of_another_version_are_misses
- the service goes away mid-run → test_outage_stops_the_task_fast_and_rerun_sends_only_the_rest
- a server that drips one byte every 2 s → test_dripping_server_fails_the_task_in_time
  (client level: tests/unit/test_client_deadline_breaker.py)
- the API key with a trailing newline under dag.test() → test_key_with_newline_never_logged_under_dag_test
- min_pixels > max_pixels → test_impossible_pixel_bounds_fail_before_any_call
- output_uri a directory; cache_uri not writable; stray .part files → test_unwritable_outputs_fail_before_any_call,
  test_stale_part_files_removed_at_start
- 3-page TIFF, animated GIF → test_multipage_tiff_and_animated_gif_give_one_row_per_page
- .heic, broken symlink, fifo → test_unreadable_inputs_become_error_rows
- batch with 2 bad images (sensor) → test_sensor_fails_on_rejected_images_like_realtime;
  expired batch → tests/integration/test_batch_operator.py::test_failed_and_expired_batches[expire]
- object reprs / repeated prefixes → test_messages_name_the_file_without_reprs
- calls re-billed after a SIGKILL → test_sigkill_then_rerun_rebills_only_calls_in_flight
"""

from __future__ import annotations

import io
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from PIL import Image

from airflow_provider_qwenocr._compat import AirflowException
from airflow_provider_qwenocr.exceptions import (
    QwenOcrConfigError,
    QwenOcrFailedImagesError,
    QwenOcrServiceUnavailableError,
)
from airflow_provider_qwenocr.operators.ocr import QwenOcrOperator
from airflow_provider_qwenocr.runs.results_store import read_results

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "tests" / "data" / "docs"
KEY = "sk-test-emulator"


def _ctx(run_id="manual__rel", dag_id="rel_it"):
    ti = SimpleNamespace(dag_id=dag_id, task_id="ocr", run_id=run_id, map_index=-1)
    return {"ti": ti, "run_id": run_id}


def _png(size, color=(255, 255, 255)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


def _conn(monkeypatch, conn_id: str, base_url: str, key: str = KEY, **extra) -> str:
    conn = {"conn_type": "dashscope", "password": key, "host": base_url, "extra": extra}
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
    return conn_id


def _calls(srv) -> int:
    return srv.stats()["ocr_calls"]


# -- memory -------------------------------------------------------------------------------------------

_MEMORY_CHILD = textwrap.dedent("""
    import json, resource, sys
    from airflow_provider_qwenocr.operators.ocr import QwenOcrOperator
    from bench.rss import peak_rss_kb  # this process's own peak: ru_maxrss also holds the parent's (see there)
    out = QwenOcrOperator(task_id="ocr", images=sys.argv[1], output_uri=sys.argv[2], use_cache=False,
                          conn_id="qwen_mem", max_concurrency=4).execute({})
    print(json.dumps({"peak_kb": peak_rss_kb(), "ru_maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                      "n_ok": out["n_ok"], "n_images": out["n_images"]}))
""")


def test_hostile_set_peak_rss(make_emulator, monkeypatch, tmp_path):
    """4 RGBA PNGs of 13000×13000 px at concurrency 4 and a PDF with one 200×200-inch page, through the
    operator in a fresh process: all recognised, peak RSS ≤ 1.5 GB (was 8.7 GB / 6.3 GB)."""
    pytest.importorskip("pypdfium2")
    from bench.memory import write_hostile_png, write_huge_page_pdf

    d = tmp_path / "hostile"
    d.mkdir()
    for i in range(4):
        write_hostile_png(str(d / f"huge_{i}.png"), seed=i)
    write_huge_page_pdf(str(d / "huge_page.pdf"))
    assert all((d / f"huge_{i}.png").stat().st_size < 2_000_000 for i in range(4))
    srv = make_emulator(engine="echo")
    _conn(monkeypatch, "qwen_mem", srv.base_url, rpm=100000, tpm=100000000)
    proc = subprocess.run([sys.executable, "-c", _MEMORY_CHILD, str(d), str(tmp_path / "r.jsonl")],
                          env={**os.environ}, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    parent_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"hostile set peak RSS: {r['peak_kb'] / 1024:.0f} MB (child ru_maxrss {r['ru_maxrss_kb'] / 1024:.0f} MB, "
          f"this pytest process's peak {parent_kb / 1024:.0f} MB)")
    assert (r["n_ok"], r["n_images"]) == (5, 5)
    assert r["peak_kb"] / 1024 <= 1536, f"peak RSS {r['peak_kb'] / 1024:.0f} MB"


def test_pdf_page_rendered_at_most_max_pixels_and_absurd_pages_refused(tmp_path):
    pdfium = pytest.importorskip("pypdfium2")
    from airflow_provider_qwenocr.ocr import pdf
    from airflow_provider_qwenocr.runs.sources import expand_sources

    path = tmp_path / "big.pdf"
    doc = pdfium.PdfDocument.new()
    doc.new_page(200 * 72, 200 * 72).close()  # pages closed before their document (pypdfium2 4.0 crashes
    doc.new_page(100, 30000).close()  # at exit otherwise); this one is taller than the PDF format allows
    with open(path, "wb") as fh:
        doc.save(fh)
    doc.close()
    big, absurd = expand_sources(str(path), max_pixels=2_000_000)
    with Image.open(io.BytesIO(big.read())) as img:
        assert img.width * img.height <= 2_000_000 and img.width > 1000
    with pytest.raises(ValueError, match="PDF format allows"):
        absurd.read()
    assert pdf.render_scale(612, 792) == pytest.approx(150 / 72)  # a letter page keeps its 150 dpi


# -- names and cache ------------------------------------------------------------------------------------


def test_non_utf8_file_name(emulator, emulator_conn, tmp_path):
    d = tmp_path / "names"
    d.mkdir()
    raw = os.fsencode(str(d)) + b"/caf\xe9-invoice.png"
    with open(raw, "wb") as fh:
        fh.write((DOCS / "paragraph_en.png").read_bytes())
    out_uri, cache = tmp_path / "r.jsonl", tmp_path / "cache"
    before = _calls(emulator)
    out = QwenOcrOperator(task_id="ocr", images=str(d), output_uri=str(out_uri), cache_uri=str(cache)).execute(_ctx())
    assert out["n_ok"] == 1 and _calls(emulator) - before == 1
    text = out_uri.read_bytes().decode("utf-8")  # the results file is valid UTF-8
    (row,) = [json.loads(line) for line in text.splitlines()]
    assert row["source"].endswith("caf\\xe9-invoice.png") and "Quarterly" in row["text"]
    again = QwenOcrOperator(task_id="ocr", images=str(d), output_uri=str(out_uri), cache_uri=str(cache)).execute(_ctx())
    assert again["n_cached"] == 1 and _calls(emulator) - before == 1, "the cached row is found again"


@pytest.mark.parametrize("stored", [{"status": "ok"}, "unknown_field", "not json {"])
def test_cache_rows_of_another_version_are_misses(emulator, emulator_conn, tmp_path, caplog, stored):
    d = tmp_path / "in"
    d.mkdir()
    (d / "a.png").write_bytes((DOCS / "paragraph_en.png").read_bytes())
    out_uri, cache = tmp_path / "r.jsonl", tmp_path / "cache"
    op = dict(task_id="ocr", images=str(d), output_uri=str(out_uri), cache_uri=str(cache))
    QwenOcrOperator(**op).execute(_ctx())
    (entry,) = cache.rglob("*.json")
    row = json.loads(entry.read_text())
    if stored == "unknown_field":
        entry.write_text(json.dumps({**row, "confidence_v9": 0.9}))
    elif isinstance(stored, dict):
        entry.write_text(json.dumps({**stored, "key": row["key"]}))
    else:
        entry.write_text(stored)
    before = _calls(emulator)
    caplog.set_level("WARNING")
    out = QwenOcrOperator(**op).execute(_ctx())
    assert out["n_ok"] == 1 and out["n_cached"] == 0 and _calls(emulator) - before == 1
    assert "treated as a miss" in caplog.text
    assert json.loads(entry.read_text())["text"] == row["text"], "the entry was rewritten as today's row"


# -- outage, deadlines ------------------------------------------------------------------------------------


def test_outage_stops_the_task_fast_and_rerun_sends_only_the_rest(make_emulator, monkeypatch, tmp_path):
    """The service goes away after ~20 of 60 images: the task stops within seconds (default breaker), no
    error rows, nothing published; the re-run against the service back sends only the images not done."""
    srv = make_emulator(engine="echo", latency_ms=40)
    _conn(monkeypatch, "qwen_out", srv.base_url)
    d = tmp_path / "imgs"
    d.mkdir()
    n = 60
    for i in range(n):
        (d / f"{i:03d}.png").write_bytes(_png((64 + i, 48), (i, 2 * i, 3 * i)))
    out_uri, cache = tmp_path / "r.jsonl", tmp_path / "cache"
    stopped_at: list[float] = []

    def kill_service():
        while _calls(srv) < 20:
            time.sleep(0.01)
        srv.stop()
        stopped_at.append(time.monotonic())

    killer = threading.Thread(target=kill_service, daemon=True)
    killer.start()
    op = dict(task_id="ocr", images=str(d), output_uri=str(out_uri), cache_uri=str(cache), conn_id="qwen_out",
              max_concurrency=4)
    with pytest.raises(QwenOcrServiceUnavailableError, match="circuit breaker open") as ei:
        QwenOcrOperator(**op).execute(_ctx())
    outage_to_stop = time.monotonic() - stopped_at[0]
    print(f"outage -> task stop: {outage_to_stop:.2f} s")
    assert outage_to_stop < 30, outage_to_stop  # was 20 minutes
    assert "re-run" in str(ei.value)
    assert not out_uri.exists(), "no results file with error rows for images never sent"
    done = len(list(cache.rglob("*.json")))
    assert 15 <= done < n

    srv2 = make_emulator(engine="echo")  # the service is back (on another port)
    _conn(monkeypatch, "qwen_out", srv2.base_url)
    out = QwenOcrOperator(**op).execute(_ctx())
    assert out["n_ok"] == n and out["n_cached"] == done
    assert _calls(srv2) == n - done, "only the images not done were sent"


def test_dripping_server_fails_the_task_in_time(monkeypatch, tmp_path):
    from tests.fixtures.hostile import HostileServer

    srv = HostileServer("drip", interval=2.0, content_length=10000, prefix=b"{")  # 10 kB promised, 1 byte / 2 s
    try:
        _conn(monkeypatch, "qwen_drip", srv.base_url, timeout=5, max_retry_seconds=10)
        (tmp_path / "a.png").write_bytes((DOCS / "paragraph_en.png").read_bytes())
        started = time.monotonic()
        with pytest.raises(QwenOcrFailedImagesError, match="1 of 1"):
            QwenOcrOperator(task_id="ocr", images=str(tmp_path / "a.png"), conn_id="qwen_drip", use_cache=False,
                            output_uri=str(tmp_path / "out" / "r.jsonl")).execute(_ctx())
        elapsed = time.monotonic() - started
    finally:
        srv.stop()
    print(f"dripping server: task failed after {elapsed:.1f} s")
    assert elapsed <= 25, elapsed  # 5 s per attempt, retries stop after 10 s: ~15 s (was: hung)
    (row,) = read_results(str(tmp_path / "out" / "r.jsonl"))
    assert row["error"]["code"] == "RequestTimeOut" and "deadline" in row["error"]["message"]


# -- secrets under real task logging ---------------------------------------------------------------------

_SECRET_DAG = textwrap.dedent('''
    import pendulum
    try:
        from airflow.sdk import DAG
    except ImportError:
        from airflow import DAG
    from airflow_provider_qwenocr.operators.ocr import QwenOcrOperator

    with DAG("rel_secret_dag", schedule=None, start_date=pendulum.datetime(2026, 1, 1), catchup=False) as dag:
        QwenOcrOperator(task_id="ocr", images=IMAGES, conn_id="qwen_nl", output_uri=OUTPUT, use_cache=False,
                        max_failed_ratio=1.0)
''')


def _dag_test(dag_id: str, folder: Path):
    """``dag.test()`` a DAG file outside the configured dags folder (Airflow 3 needs it serialized first)."""
    from tests.fixtures.airflow import load_dag

    try:
        from airflow.dag_processing.dagbag import BundleDagBag, sync_bag_to_db
    except ImportError:  # Airflow 2.x: dag.test() runs the DAG object as is
        return load_dag(dag_id, folder / f"{dag_id}.py").test()
    from airflow.dag_processing.bundles.manager import DagBundlesManager

    DagBundlesManager().sync_bundles_to_db()  # the bundle row the DAG refers to
    bag = BundleDagBag(dag_folder=str(folder), bundle_path=str(folder), bundle_name="dags-folder")
    sync_bag_to_db(bag, "dags-folder", None)
    return bag.get_dag(dag_id).test() if hasattr(bag, "get_dag") else load_dag(dag_id, folder / f"{dag_id}.py").test()


def test_key_with_newline_never_logged_under_dag_test(airflow_db, make_emulator, monkeypatch, tmp_path, caplog,
                                                      capfd):
    secret = "sk-rel-secret-7c1e2b9d"
    srv = make_emulator(api_key=secret, engine="echo")
    _conn(monkeypatch, "qwen_nl", srv.base_url, key=secret + "\n")
    d = tmp_path / "in"
    d.mkdir()
    (d / "ok.png").write_bytes((DOCS / "paragraph_en.png").read_bytes())
    (d / "broken.png").write_bytes(b"not an image")
    dag_dir = tmp_path / "dagdir"
    dag_dir.mkdir()
    (dag_dir / "rel_secret_dag.py").write_text(f"IMAGES = {str(d)!r}\nOUTPUT = {str(tmp_path / 'r.jsonl')!r}\n"
                                               + _SECRET_DAG)
    caplog.set_level("DEBUG")
    dag_run = _dag_test("rel_secret_dag", dag_dir)
    assert str(dag_run.state).lower().endswith("success")
    rows = list(read_results(str(tmp_path / "r.jsonl")))
    assert sorted(r["status"] for r in rows) == ["error", "ok"], "the stripped key worked"
    captured = capfd.readouterr()
    logs = caplog.text + captured.out + captured.err
    home = Path(os.environ["AIRFLOW_HOME"]) / "logs"
    for f in home.rglob("*") if home.exists() else []:
        if f.is_file():
            logs += f.read_text(errors="replace")
    assert "OCR done" in logs or "ocr" in logs
    assert secret not in logs
    assert secret not in json.dumps(rows)


# -- validation before spending --------------------------------------------------------------------------


def test_impossible_pixel_bounds_fail_before_any_call(emulator, emulator_conn, tmp_path):
    before = _calls(emulator)
    with pytest.raises(QwenOcrConfigError, match="min_pixels .* is larger than max_pixels"):
        QwenOcrOperator(task_id="ocr", images=str(DOCS / "paragraph_en.png"), min_pixels=3_000_000,
                        max_pixels=1_000_000, output_uri=str(tmp_path / "r.jsonl")).execute(_ctx())
    with pytest.raises(QwenOcrConfigError, match="not a model name"):
        QwenOcrOperator(task_id="ocr", images=str(DOCS / "paragraph_en.png"), model="qwen vl ocr",
                        output_uri=str(tmp_path / "r.jsonl")).execute(_ctx())
    assert _calls(emulator) == before


def test_unwritable_outputs_fail_before_any_call(emulator, emulator_conn, tmp_path):
    if os.geteuid() == 0:
        read_only = "/proc/qwenocr-cache"  # root ignores file modes; /proc refuses everyone
    else:
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        read_only = str(ro / "cache")
    before = _calls(emulator)
    (tmp_path / "outdir").mkdir()
    with pytest.raises(QwenOcrConfigError, match="is an existing directory"):
        QwenOcrOperator(task_id="ocr", images=str(DOCS), output_uri=str(tmp_path / "outdir")).execute(_ctx())
    with pytest.raises(QwenOcrConfigError, match="cache_uri .* is not writable"):
        QwenOcrOperator(task_id="ocr", images=str(DOCS), output_uri=str(tmp_path / "r.jsonl"),
                        cache_uri=read_only).execute(_ctx())
    assert _calls(emulator) == before, "nothing billed"
    assert not list(tmp_path.rglob("*.part")), "no stray temp files"


def test_stale_part_files_removed_at_start(emulator, emulator_conn, tmp_path):
    out_uri = tmp_path / "r.jsonl"
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a writer that no longer runs on this host
    host = socket.gethostname()
    stale = tmp_path / f".r.jsonl.{gone.pid}@{host}.abc123.part"  # what a SIGKILLed writer leaves
    stale.write_text("half a file")
    old = tmp_path / ".r.jsonl.legacy1.part"  # no writer in its name: removed once it is old
    old.write_text("an old version's leftover")
    os.utime(old, (time.time() - 2 * 86400,) * 2)
    other = tmp_path / ".other.jsonl.x.part"
    other.write_text("another output's")
    QwenOcrOperator(task_id="ocr", images=str(DOCS / "paragraph_en.png"), output_uri=str(out_uri),
                    use_cache=False).execute(_ctx())
    assert not stale.exists() and not old.exists() and other.exists() and out_uri.exists()
    assert not [p for p in tmp_path.glob(".r.jsonl.*.part")]


# -- nothing dropped silently -----------------------------------------------------------------------------


def test_multipage_tiff_and_animated_gif_give_one_row_per_page(emulator, emulator_conn, tmp_path):
    d = tmp_path / "multi"
    d.mkdir()
    pages = [Image.new("RGB", (300, 120), c) for c in ("white", (240, 240, 200), (200, 240, 240))]
    pages[0].save(d / "three.tiff", save_all=True, append_images=pages[1:])
    frames = [Image.new("RGB", (200, 100), (i * 60, 255 - i * 50, 100)) for i in range(4)]
    frames[0].save(d / "anim.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    out = QwenOcrOperator(task_id="ocr", images=str(d), output_uri=str(tmp_path / "r.jsonl"),
                          use_cache=False).execute(_ctx())
    assert out["n_ok"] == 7
    rows = list(read_results(out["results_uri"]))
    by_file = {}
    for r in rows:
        by_file.setdefault(Path(r["source"].split("#")[0]).name, []).append(r["page"])
    assert sorted(by_file["three.tiff"]) == [1, 2, 3] and sorted(by_file["anim.gif"]) == [1, 2, 3, 4]
    assert len({r["sha256"] for r in rows if "three.tiff" in r["source"]}) == 3, "each page is its own image"


def test_unreadable_inputs_become_error_rows(emulator, emulator_conn, tmp_path):
    d = tmp_path / "odd"
    d.mkdir()
    (d / "ok.png").write_bytes((DOCS / "paragraph_en.png").read_bytes())
    (d / "photo.heic").write_bytes(b"\x00\x00\x00\x18ftypheic")
    os.symlink(d / "gone.png", d / "link.png")
    os.mkfifo(d / "pipe.png")
    started = time.monotonic()
    with pytest.raises(QwenOcrFailedImagesError, match="3 of 4 images failed"):
        QwenOcrOperator(task_id="ocr", images=str(d), output_uri=str(tmp_path / "r.jsonl"),
                        use_cache=False).execute(_ctx())
    assert time.monotonic() - started < 60, "the fifo was never opened (it would block)"
    rows = {Path(r["source"]).name: r for r in read_results(str(tmp_path / "r.jsonl"))}
    assert rows["ok.png"]["status"] == "ok"
    assert "unsupported format .heic" in rows["photo.heic"]["error"]["message"]
    assert "broken symbolic link" in rows["link.png"]["error"]["message"]
    assert "fifo" in rows["pipe.png"]["error"]["message"]


# -- one policy for batch ---------------------------------------------------------------------------------


def test_sensor_fails_on_rejected_images_like_realtime(emulator, emulator_conn, tmp_path):
    from airflow_provider_qwenocr.hooks.qwenocr import QwenOcrHook
    from airflow_provider_qwenocr.runs.sources import expand_sources
    from airflow_provider_qwenocr.sensors.batch import QwenOcrBatchSensor

    d = tmp_path / "in"
    d.mkdir()
    (d / "ok.png").write_bytes((DOCS / "paragraph_en.png").read_bytes())
    (d / "bad1.png").write_bytes(b"not an image")
    (d / "bad2.jpg").write_bytes(b"\xff\xd8\xff nope")
    output = str(tmp_path / "out" / "r.jsonl")
    manifest = str(tmp_path / "out" / "r.manifest.jsonl")
    hook = QwenOcrHook()
    submitted = hook.batch_runner().submit(expand_sources(str(d)), hook.ocr_request(task="text_recognition"),
                                           manifest_uri=manifest)
    assert submitted.n_rejected == 2
    sensor = QwenOcrBatchSensor(task_id="wait", batch_ids=submitted.batch_ids, output_uri=output,
                                manifest_uri=manifest, poke_interval=0.2, timeout=120, deferrable=False)
    with pytest.raises(QwenOcrFailedImagesError, match="2 of 3 images failed"):
        sensor.execute({})
    rows = list(read_results(output))
    assert sorted(r["status"] for r in rows) == ["error", "error", "ok"], "rows landed before failing"


# -- messages and kills -----------------------------------------------------------------------------------


def test_messages_name_the_file_without_reprs(emulator, emulator_conn, tmp_path):
    (tmp_path / "garbage.png").write_bytes(b"GIF89a but not really")
    with pytest.raises(AirflowException):
        QwenOcrOperator(task_id="ocr", images=str(tmp_path / "garbage.png"), output_uri=str(tmp_path / "r.jsonl"),
                        use_cache=False).execute(_ctx())
    (row,) = read_results(str(tmp_path / "r.jsonl"))
    assert row["source"].endswith("garbage.png")
    assert "0x" not in row["error"]["message"] and "BytesIO" not in row["error"]["message"]


_KILL = textwrap.dedent("""
    import sys
    from airflow_provider_qwenocr.operators.ocr import QwenOcrOperator
    QwenOcrOperator(task_id="ocr", images=sys.argv[1], output_uri=sys.argv[2], cache_uri=sys.argv[3],
                    conn_id="qwen_kill9", max_concurrency=4).execute({})
""")


def test_sigkill_then_rerun_rebills_only_calls_in_flight(make_emulator, monkeypatch, tmp_path):
    """Calls re-billed after a SIGKILL and a re-run = calls the killed run made whose rows were not yet
    cached (at most the calls in flight, ≤ max_concurrency); finished images cost nothing again."""
    srv = make_emulator(engine="echo", latency_ms=150, seed=3)
    _conn(monkeypatch, "qwen_kill9", srv.base_url)
    d = tmp_path / "imgs"
    d.mkdir()
    n = 40
    for i in range(n):
        (d / f"{i:03d}.png").write_bytes(_png((70 + i, 50), (3 * i, i, 2 * i)))
    out_uri, cache = tmp_path / "r.jsonl", tmp_path / "cache"
    proc = subprocess.Popen([sys.executable, "-c", _KILL, str(d), str(out_uri), str(cache)], env={**os.environ},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(cache.rglob("*.json"))) < 10:
        assert proc.poll() is None
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    time.sleep(0.5)  # calls the killed process had in flight still reach the emulator's counter
    first_calls, done = _calls(srv), len(list(cache.rglob("*.json")))
    out = QwenOcrOperator(task_id="ocr", images=str(d), output_uri=str(out_uri), cache_uri=str(cache),
                          conn_id="qwen_kill9", max_concurrency=4).execute(_ctx())
    rerun_calls = _calls(srv) - first_calls
    rebilled = first_calls + rerun_calls - n
    print(f"SIGKILL after {done} cached: first run {first_calls} calls, re-run {rerun_calls}, re-billed {rebilled}")
    assert out["n_ok"] == n and out["n_cached"] == done and rerun_calls == n - done
    assert 0 <= rebilled <= 4
    assert not list(tmp_path.glob(".r.jsonl.*.part")), "the killed run's temp file was cleaned at the re-run"
