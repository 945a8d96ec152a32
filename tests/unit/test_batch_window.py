"""completion_window: "24h"–"336h" (int hours, timedelta), checked before any upload, passed to batches.create."""

from __future__ import annotations

from datetime import timedelta

import pytest

from airflow_provider_qwenocr.dashscope.batch import BatchClient, normalize_completion_window, window_hours
from airflow_provider_qwenocr.dashscope.config import ClientConfig
from airflow_provider_qwenocr.operators.batch import QwenOcrBatchOperator


@pytest.mark.parametrize("value,expected", [
    (None, "24h"), ("24h", "24h"), ("336h", "336h"), (" 72H ", "72h"), ("48", "48h"), (168, "168h"),
    (timedelta(days=14), "336h"), (timedelta(hours=24), "24h"),
])
def test_accepted_windows(value, expected):
    assert normalize_completion_window(value) == expected


@pytest.mark.parametrize("value", ["23h", "337h", "1d", "24 hours", "", 0, 400, True, 24.5,
                                   timedelta(hours=24, minutes=30), timedelta(hours=12)])
def test_refused_windows_say_what_is_allowed(value):
    with pytest.raises(ValueError, match=r"completion_window=.* whole hours from 24 to 336"):
        normalize_completion_window(value)


def test_window_hours():
    assert window_hours("72h") == 72 and window_hours(timedelta(days=2)) == 48


class _Batches:
    def __init__(self) -> None:
        self.calls: list[dict] = []

    def create(self, **kwargs):
        self.calls.append(kwargs)

        class _Obj:
            def model_dump(self_inner):
                return {"id": "batch_1", "completion_window": kwargs["completion_window"]}

        return _Obj()


def test_client_passes_the_window_to_batches_create():
    client = BatchClient(ClientConfig(api_key="sk-test", base_url="http://127.0.0.1:9"), check_region=False)
    fake = _Batches()
    client._client = type("C", (), {"batches": fake})()
    client.create_batch("file-1", completion_window=timedelta(days=7))
    client.create_batch("file-2")
    assert [c["completion_window"] for c in fake.calls] == ["168h", "24h"]
    with pytest.raises(ValueError):
        client.create_batch("file-3", completion_window="500h")
    assert len(fake.calls) == 2  # refused before the request


def _op(**kw):
    return QwenOcrBatchOperator(task_id="b", images="/nonexistent/*.png", output_uri="/tmp/x.jsonl", **kw)


def test_operator_validates_at_parse_time_and_sizes_the_default_timeout():
    with pytest.raises(ValueError, match="completion_window='400h'"):
        _op(completion_window="400h")
    assert _op().timeout == 25 * 3600  # default window 24 h + 1 h, as before
    assert _op(completion_window=72).timeout == 73 * 3600
    assert _op(completion_window="336h", timeout=600).timeout == 600  # an explicit timeout wins
    assert "completion_window" in QwenOcrBatchOperator.template_fields


def test_operator_checks_the_rendered_window_before_any_upload(monkeypatch):
    op = _op(completion_window="{{ params.window }}")  # a template is accepted until rendered
    calls = []
    monkeypatch.setattr(QwenOcrBatchOperator, "hook", property(lambda self: calls.append("hook")))
    op.completion_window = "12h"  # what rendering produced
    with pytest.raises(ValueError, match="completion_window='12h'"):
        op.execute({})
    assert calls == []  # nothing prepared, uploaded or created


def test_operator_passes_the_window_through(monkeypatch, tmp_path):
    seen = {}

    from airflow_provider_qwenocr.dashscope.config import ClientConfig
    from airflow_provider_qwenocr.runs.batch import Submission

    class _Runner:
        def submit(self, sources, request, **kw):
            seen.update(kw)
            return Submission([], [], kw["manifest_uri"], request.model, request.task.value, 0, 0, 0, 0, 0)

    class _Hook:
        config = ClientConfig(api_key="k")

        def batch_runner(self, **kw):
            return _Runner()

    monkeypatch.setattr(QwenOcrBatchOperator, "hook", property(lambda self: _Hook()))
    monkeypatch.setattr(QwenOcrBatchOperator, "_land", lambda self, batches, evaluate=True: {"landed": True})
    (tmp_path / "a.png").write_bytes(b"not read: submit is faked")
    op = QwenOcrBatchOperator(task_id="b", images=str(tmp_path / "*.png"), output_uri=str(tmp_path / "r.jsonl"),
                              completion_window="{{ params.window }}")
    op.completion_window = "336h"
    assert op.execute({}) == {"landed": True}
    assert seen["completion_window"] == "336h" and op.timeout == 337 * 3600
