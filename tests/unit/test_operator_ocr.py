"""QwenOcrOperator with a fake client: rows, XCom, failure policy, cache, budget, stop on bad key, drawings."""

from __future__ import annotations

import io
import json
import logging
import threading
from types import SimpleNamespace

import pytest
from PIL import Image

from airflow_provider_qwenocr._compat import AirflowException
from airflow_provider_qwenocr.dashscope.config import ClientConfig
from airflow_provider_qwenocr.dashscope.errors import InvalidApiKeyError, PermanentError, RetryableError
from airflow_provider_qwenocr.exceptions import QwenOcrConfigError
from airflow_provider_qwenocr.ocr.images import PreparedImage
from airflow_provider_qwenocr.ocr.models import DEFAULT_REGION, get_model
from airflow_provider_qwenocr.ocr.results import OcrResult, Usage, Word
from airflow_provider_qwenocr.operators.ocr import QwenOcrOperator
from airflow_provider_qwenocr.runs.results_store import read_results

SECRET = "sk-unit-test-secret-0123456789"


def _png(size=(64, 48), color=(255, 255, 255)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


class FakeClient:
    """Answers from the prepared image itself, so rows depend on the input; raises by file-name marker."""

    def __init__(self):
        self.calls: list[str] = []
        self.lock = threading.Lock()
        self.in_flight = self.max_in_flight = 0

    def recognize(self, image, *, request, identity):  # the client returns the finished row (its identity)
        source = identity.source
        task, model, result_schema = request.task.value, request.model, request.result_schema
        with self.lock:
            self.calls.append(source)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if "badkey" in source:
                raise InvalidApiKeyError(f"Invalid API-key provided: {SECRET}", code="InvalidApiKey", status_code=401)
            if "inspect" in source:
                raise PermanentError("Input data may contain inappropriate content.", code="DataInspectionFailed",
                                     status_code=400)
            if "throttled" in source:
                raise RetryableError("Requests rate limit exceeded", code="Throttling.RateQuota", status_code=429)
            if isinstance(image, PreparedImage):
                text, tokens = f"{image.width}x{image.height}->{image.sent_width}x{image.sent_height}", image.tokens
            else:
                text, tokens = f"url {image}", 99
            words = [Word("x", [1, 1, 20, 1, 20, 10, 1, 10], [10, 5, 19, 9, 0])] if task == "advanced_recognition" else None
            return OcrResult(**identity.fields(), task=task, model=model, text=text, words=words,
                             kv=result_schema and {k: None for k in result_schema},
                             usage=Usage(tokens + 30, 5, tokens, tokens + 35),
                             cost=request.spec.price(DEFAULT_REGION).cost(tokens + 30, 5))
        finally:
            with self.lock:
                self.in_flight -= 1


class FakeHook:
    def __init__(self, client):
        self.client = client
        self.config = ClientConfig(api_key=SECRET, base_url="http://127.0.0.1:9")

    def get_client(self):
        return self.client

    def model_spec(self, model):
        return get_model(model)


def _context(tmp_path, map_index=-1, run_id="manual__2026-11-25T10:00:00+00:00"):
    ti = SimpleNamespace(dag_id="dag_x", task_id="ocr", run_id=run_id, map_index=map_index)
    return {"ti": ti, "run_id": run_id}


def _logs(caplog, capsys) -> str:
    """Task-log text on Airflow 3 (structlog → stdout) and Airflow 2 (logging → caplog)."""
    captured = capsys.readouterr()
    return caplog.text + captured.out + captured.err


def _op(client, **kw):
    op = QwenOcrOperator(task_id="ocr", **kw)
    op.__dict__["hook"] = FakeHook(client)
    return op


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    (d / "a.png").write_bytes(_png((64, 48)))
    (d / "b.png").write_bytes(_png((100, 40), (0, 0, 0)))
    (d / "c.png").write_bytes(_png((80, 80), (9, 9, 9)))
    return d


def test_rows_xcom_and_usage(folder, tmp_path, monkeypatch):
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "home"))
    client = FakeClient()
    out = _op(client, images=str(folder)).execute(_context(tmp_path))
    assert out["n_images"] == 3 and out["n_ok"] == 3 and out["n_failed"] == 0 and out["n_cached"] == 0
    assert out["results_uri"].startswith(str(tmp_path / "home" / "qwenocr" / "dag_x"))
    assert out["results_uri"].endswith("/ocr.jsonl")
    rows = {r["source"].rsplit("/", 1)[-1]: r for r in read_results(out["results_uri"])}
    assert rows["b.png"]["text"] == "100x40->96x32"  # the operator resized to the 32-px grid before the call
    assert rows["a.png"]["status"] == "ok" and len(rows["a.png"]["sha256"]) == 64 and rows["a.png"]["key"]
    expected_image = sum(r["usage"]["image_tokens"] for r in rows.values())
    assert out["usage"]["image_tokens"] == expected_image > 0
    assert out["cost"]["usd"] > 0 and out["cost"]["cny"] > 0
    assert json.loads(json.dumps(out)) == out  # XCom-serialisable


def test_bad_inputs_become_rows_and_ratio_decides(folder, tmp_path):
    (folder / "tiny.png").write_bytes(_png((5, 5)))
    (folder / "broken.png").write_bytes(b"\x89PNG not really")
    (folder / "inspect_me.png").write_bytes(_png((50, 50), (1, 1, 1)))
    (folder / "throttled.png").write_bytes(_png((50, 50), (2, 2, 2)))
    client = FakeClient()
    out_uri = tmp_path / "o" / "r.jsonl"
    with pytest.raises(AirflowException, match="4 of 7 images failed"):
        _op(client, images=str(folder), output_uri=str(out_uri)).execute(_context(tmp_path))
    rows = {r["source"].rsplit("/", 1)[-1]: r for r in read_results(str(out_uri))}
    assert len(rows) == 7, "error rows are written even when the task fails"
    assert rows["tiny.png"]["error"]["code"] == "InvalidImage"
    assert rows["broken.png"]["error"]["code"] == "InvalidImage"
    assert rows["inspect_me.png"]["error"]["code"] == "DataInspectionFailed"
    assert rows["throttled.png"]["error"]["code"] == "Throttling.RateQuota"
    assert "tiny.png" not in client.calls and all("tiny" not in c for c in client.calls)
    out = _op(FakeClient(), images=str(folder), output_uri=str(out_uri), max_failed_ratio=0.6,
              use_cache=False).execute(_context(tmp_path))
    assert out["n_failed"] == 4 and out["n_ok"] == 3
    assert {f["source"].rsplit("/", 1)[-1] for f in out["failed"]} == {"tiny.png", "broken.png", "inspect_me.png",
                                                                        "throttled.png"}


def test_failures_are_logged_by_name(folder, tmp_path, caplog, capsys):
    (folder / "inspect_me.png").write_bytes(_png((50, 50), (1, 1, 1)))
    caplog.set_level(logging.INFO)
    _op(FakeClient(), images=str(folder), output_uri=str(tmp_path / "r.jsonl"), max_failed_ratio=1.0).execute(
        _context(tmp_path))
    text = _logs(caplog, capsys)
    assert "inspect_me.png: DataInspectionFailed: Input data may contain" in text
    assert "OCR progress: 4/4" in text and "images/s" in text and "ETA" in text
    assert "Usage this run" in text and "cost USD" in text


def test_rerun_uses_cache_and_makes_no_calls(folder, tmp_path):
    out_uri = str(tmp_path / "o" / "r.jsonl")
    first = FakeClient()
    _op(first, images=str(folder), output_uri=out_uri).execute(_context(tmp_path))
    assert len(first.calls) == 3
    second = FakeClient()
    (folder / "copy_of_a.png").write_bytes((folder / "a.png").read_bytes())  # same bytes, other name
    out = _op(second, images=str(folder), output_uri=out_uri).execute(_context(tmp_path))
    assert second.calls == [] and out["n_cached"] == 4 and out["usage"]["total_tokens"] == 0
    rows = list(read_results(out_uri))
    assert len(rows) == 4 and {r["source"].rsplit("/", 1)[-1] for r in rows} >= {"copy_of_a.png"}
    third = FakeClient()  # another task changes the key: no stale reuse
    _op(third, images=str(folder), output_uri=out_uri, task="table_parsing").execute(_context(tmp_path))
    called = {c.rsplit("/", 1)[-1] for c in third.calls}
    # a.png and copy_of_a.png share bytes: whichever finishes first may serve the other from the cache
    assert {"b.png", "c.png"} <= called and called & {"a.png", "copy_of_a.png"} and len(third.calls) >= 3


def test_invalid_key_stops_the_task_and_hides_the_key(folder, tmp_path, caplog, capsys):
    for i in range(20):
        (folder / f"z{i:02d}.png").write_bytes(_png((40 + i, 40)))
    (folder / "badkey.png").write_bytes(_png((30, 30)))
    client = FakeClient()
    out_uri = tmp_path / "r.jsonl"
    caplog.set_level(logging.DEBUG)
    with pytest.raises(AirflowException, match="refused the account") as err:
        _op(client, images=str(folder), output_uri=str(out_uri), max_concurrency=1,
            max_failed_ratio=1.0).execute(_context(tmp_path))
    assert SECRET not in str(err.value)
    assert len(client.calls) <= 5, "the task must stop instead of trying every image"
    assert not out_uri.exists(), "no half results file"
    text = _logs(caplog, capsys)
    assert "OCR of 24 image(s)" in text and SECRET not in text


def test_bounded_concurrency(tmp_path):
    d = tmp_path / "many"
    d.mkdir()
    for i in range(30):
        (d / f"{i:03d}.png").write_bytes(_png((30 + i, 30)))
    client = FakeClient()
    out = _op(client, images=str(d), output_uri=str(tmp_path / "r.jsonl"), max_concurrency=3).execute(
        _context(tmp_path))
    assert out["n_ok"] == 30 and client.max_in_flight <= 3


def test_token_budget_refuses_before_any_call(folder, tmp_path):
    client = FakeClient()
    with pytest.raises(AirflowException, match="token_budget exceeded"):
        _op(client, images=str(folder), output_uri=str(tmp_path / "r.jsonl"), token_budget=5).execute(
            _context(tmp_path))
    assert client.calls == []
    out = _op(client, images=str(folder), output_uri=str(tmp_path / "r.jsonl"), token_budget=10_000).execute(
        _context(tmp_path))
    assert out["n_ok"] == 3
    # everything is cached now: a tiny budget is enough for a re-run
    out = _op(FakeClient(), images=str(folder), output_uri=str(tmp_path / "r.jsonl"), token_budget=1).execute(
        _context(tmp_path))
    assert out["n_cached"] == 3


def test_mapped_instances_write_separate_files(folder, tmp_path, monkeypatch):
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "home"))
    uris = {_op(FakeClient(), images=str(folder / name)).execute(_context(tmp_path, map_index=i))["results_uri"]
            for i, name in enumerate(["a.png", "b.png"])}
    assert len(uris) == 2 and all(u.endswith(("ocr_0.jsonl", "ocr_1.jsonl")) for u in uris)


def test_urls_pass_through_untouched(tmp_path):
    client = FakeClient()
    out = _op(client, images=["https://example.com/scan.jpg"], output_uri=str(tmp_path / "r.jsonl"),
              use_cache=False).execute(_context(tmp_path))
    (row,) = read_results(out["results_uri"])
    assert row["text"] == "url https://example.com/scan.jpg" and row["status"] == "ok"


def test_draw_boxes_for_advanced_recognition(folder, tmp_path):
    pytest.importorskip("airflow_provider_qwenocr.ocr.draw")
    boxes = tmp_path / "boxes"
    _op(FakeClient(), images=str(folder), task="advanced_recognition", output_uri=str(tmp_path / "r.jsonl"),
        draw_boxes_uri=str(boxes)).execute(_context(tmp_path))
    pngs = sorted(p.name for p in boxes.iterdir())
    assert [p.split(".", 1)[0] for p in pngs] == ["a", "b", "c"] and all(p.endswith(".boxes.png") for p in pngs)
    rows = {r["source"].rsplit("/", 1)[-1]: r for r in read_results(str(tmp_path / "r.jsonl"))}
    img = Image.open(rows["a.png"]["boxes_uri"]).convert("RGB")  # the row says where its picture is
    assert img.size == (64, 48) and img.getpixel((1, 5)) != (255, 255, 255)  # a box edge was drawn


def test_box_pictures_of_same_named_images_do_not_overwrite_each_other(tmp_path):
    """Issue 20 #8: a/scan.png, b/scan.png, scan.jpg, a PDF-like page vs doc.p1.png drew onto 3 names."""
    pytest.importorskip("airflow_provider_qwenocr.ocr.draw")
    d = tmp_path / "in"
    for rel, color in [("a/scan.png", (250, 250, 250)), ("b/scan.png", (240, 240, 240)), ("scan.jpg", (230,) * 3),
                       ("doc.png", (220,) * 3), ("doc.p1.png", (210,) * 3), ("c/doc.png", (200,) * 3)]:
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / rel).write_bytes(_png((64, 48), color))
    boxes = tmp_path / "boxes"
    _op(FakeClient(), images=str(d), task="advanced_recognition", output_uri=str(tmp_path / "r.jsonl"),
        draw_boxes_uri=str(boxes), use_cache=False).execute(_context(tmp_path))
    rows = list(read_results(str(tmp_path / "r.jsonl")))
    assert len(rows) == 6 and len(list(boxes.iterdir())) == 6
    pictures = {r["boxes_uri"] for r in rows}
    assert len(pictures) == 6 and all(Image.open(p).size == (64, 48) for p in pictures)
    for r in rows:  # each picture is of its own image (the fill colour of the source)
        with Image.open(r["source"]) as src, Image.open(r["boxes_uri"]) as pic:
            assert pic.convert("RGB").getpixel((50, 40)) == src.convert("RGB").getpixel((50, 40))


def test_own_outputs_inside_the_images_folder_are_not_read_back(tmp_path):
    """Issue 20 #9: pictures, results and cache inside the images folder were OCRed by the next run
    (calls per run 3, 3, 3 and pictures 3 → 9); they are not inputs."""
    pytest.importorskip("airflow_provider_qwenocr.ocr.draw")
    d = tmp_path / "in"
    d.mkdir()
    for n, name in enumerate(("a.png", "b.png", "c.png")):
        (d / name).write_bytes(_png((64, 48), (250 - n, 250, 250)))
    client = FakeClient()
    for _ in range(3):
        out = _op(client, images=str(d), task="advanced_recognition", output_uri=str(d / "out" / "r.jsonl"),
                  draw_boxes_uri=str(d / "boxes"), cache_uri=str(d / "cache")).execute(_context(tmp_path))
        assert out["n_images"] == 3
    assert len(client.calls) == 3  # the first run paid; the next two came from the cache, nothing new was read
    assert len(list((d / "boxes").iterdir())) == 3


def test_argument_errors_are_clear(tmp_path, folder):
    with pytest.raises(AirflowException, match="unknown OCR task"):
        _op(FakeClient(), images=str(folder), task="nope").execute(_context(tmp_path))
    with pytest.raises(AirflowException, match="custom' needs a prompt"):
        _op(FakeClient(), images=str(folder), task="custom").execute(_context(tmp_path))
    with pytest.raises(AirflowException, match="no images found"):
        _op(FakeClient(), images=str(tmp_path / "void" / "*.png")).execute(_context(tmp_path))


def test_no_io_in_init_and_templated_fields():
    op = QwenOcrOperator(task_id="t", images="s3://nowhere/{{ ds }}/", conn_id="does_not_exist")
    assert {"images", "output_uri", "result_schema", "conn_id", "task", "model"} <= set(op.template_fields)
    assert "hook" not in op.__dict__


def test_openlineage_facets_name_sources_and_results(folder, tmp_path):
    op = _op(FakeClient(), images=str(folder), output_uri=str(tmp_path / "r.jsonl"))
    op.execute(_context(tmp_path))
    lineage = op.get_openlineage_facets_on_complete(None)
    try:
        import airflow.providers.openlineage  # noqa: F401
    except ImportError:
        assert lineage is None  # optional provider absent: no facets, no error
        return
    assert [d.name for d in lineage.outputs] == [str(tmp_path / "r.jsonl")]
    assert [d.name for d in lineage.inputs] == [str(folder)]


def test_output_folder_gets_one_file_per_mapped_instance(folder, tmp_path):
    clients = [FakeClient(), FakeClient()]
    outs = [_op(c, images=str(folder / "a.png"), output_uri=str(tmp_path / "res") + "/").execute(
        _context(tmp_path, map_index=i))["results_uri"] for i, c in enumerate(clients)]
    assert outs == [str(tmp_path / "res" / "ocr_0.jsonl"), str(tmp_path / "res" / "ocr_1.jsonl")]
    assert not (tmp_path / "res" / "_cache").exists()  # the cache does not follow the output ...
    assert (tmp_path / "qwenocr-cache" / "dag_x").is_dir()  # ... it is the deployment's ([qwenocr] cache_uri)
    assert len(clients[0].calls) == 1 and clients[1].calls == [], "instance 1 reused instance 0's cached row"


def test_default_cache_is_per_dag_and_ignores_a_templated_output(folder, tmp_path, monkeypatch):
    monkeypatch.delenv("AIRFLOW__QWENOCR__CACHE_URI")
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "home"))
    runs = ["manual__2026-11-25T10:00:00+00:00", "scheduled__2026-11-26T00:00:00+00:00"]
    clients = [FakeClient(), FakeClient()]
    outs = [_op(c, images=str(folder), output_uri=str(tmp_path / "out" / run.replace(":", "-") / "r.jsonl"))
            .execute(_context(tmp_path, run_id=run)) for c, run in zip(clients, runs, strict=True)]
    assert len(clients[0].calls) == 3 and clients[1].calls == [] and outs[1]["n_cached"] == 3
    assert (tmp_path / "home" / "qwenocr" / "dag_x" / "_cache").is_dir()
    assert not any(p.name == "_cache" for p in (tmp_path / "out").rglob("*"))


def test_deployment_cache_setting_and_operator_argument(folder, tmp_path, monkeypatch):
    from airflow_provider_qwenocr.hooks.locations import cache_location, default_cache_uri

    monkeypatch.setenv("AIRFLOW__QWENOCR__CACHE_URI", "s3://shared/ocr-cache/{dag_id}")
    assert default_cache_uri("dag x") == "s3://shared/ocr-cache/dag_x"
    monkeypatch.setenv("AIRFLOW__QWENOCR__CACHE_URI", "s3://shared/ocr-cache")
    assert default_cache_uri("dag_x") == "s3://shared/ocr-cache"  # one cache for every DAG: keys are content-based
    assert cache_location(str(tmp_path / "mine"), use_cache=True, dag_id="d") == str(tmp_path / "mine")
    assert cache_location(None, use_cache=True, dag_id="d") == "s3://shared/ocr-cache"
    assert cache_location(str(tmp_path / "mine"), use_cache=False, dag_id="d") is None


def test_constructor_rejects_nonsense():
    with pytest.raises(QwenOcrConfigError, match="max_failed_ratio"):
        QwenOcrOperator(task_id="t", images="x", max_failed_ratio=1.5)
    with pytest.raises(QwenOcrConfigError, match="max_concurrency"):
        QwenOcrOperator(task_id="t", images="x", max_concurrency=0)
