"""One location rule for both operators and the sensor (hooks/locations.py): mistyped URIs and relative paths
are refused naming the argument (issue 20 #10), at parse time for literals and at run time once rendered;
a task-name typo fails at parse time (issue 20 #18)."""

from __future__ import annotations

import pytest

from airflow_provider_qwenocr import QwenOcrBatchOperator, QwenOcrBatchSensor, QwenOcrConfigError, QwenOcrOperator
from airflow_provider_qwenocr.hooks.locations import check_location, output_location

MISTYPED = ["s3:/my-bucket/ocr/r.jsonl", "s3:my-bucket/ocr/", "gs:/bucket/x", "file:/tmp/x"]
RELATIVE = ["out/r.jsonl", "./r.jsonl", "r.jsonl", "s3//bucket/x"]


@pytest.mark.parametrize("uri", MISTYPED + RELATIVE)
def test_the_rule_refuses_what_cannot_be_meant(uri):
    with pytest.raises(QwenOcrConfigError, match=r"^output_uri="):
        check_location("output_uri", uri)


@pytest.mark.parametrize("uri", ["s3://bucket/x.jsonl", "gs://b/p/", "memory://x", "/abs/r.jsonl",
                                 "{{ params.out }}/r.jsonl", None, ""])
def test_the_rule_accepts_uris_absolute_paths_and_templates(uri):
    assert check_location("output_uri", uri) == (uri or None)


@pytest.mark.parametrize(("cls", "argument"), [
    (QwenOcrOperator, "output_uri"), (QwenOcrOperator, "cache_uri"), (QwenOcrOperator, "draw_boxes_uri"),
    (QwenOcrBatchOperator, "output_uri"), (QwenOcrBatchOperator, "cache_uri"), (QwenOcrBatchOperator, "manifest_uri"),
    (QwenOcrBatchSensor, "output_uri"), (QwenOcrBatchSensor, "cache_uri"), (QwenOcrBatchSensor, "manifest_uri"),
])
def test_every_location_argument_is_checked_when_the_dag_is_parsed(cls, argument):
    first = {"batch_ids": ["b1"]} if cls is QwenOcrBatchSensor else {"images": "/data/scans/"}
    for uri in ("s3:/my-bucket/ocr/", "ocr-out/"):
        with pytest.raises(QwenOcrConfigError, match=f"^{argument}="):
            cls(task_id="t", **first, **{argument: uri})


class _NoHook:
    """A hook that must not be reached: the location check comes before any connection or call."""

    def __getattr__(self, name):
        raise AssertionError(f"the hook was used ({name}) before the locations were checked")


@pytest.mark.parametrize("argument", ["output_uri", "cache_uri", "draw_boxes_uri"])
def test_a_rendered_template_is_checked_before_anything_runs(argument):
    op = QwenOcrOperator(task_id="t", images="/data/scans/", **{argument: "{{ params.where }}"})
    setattr(op, argument, "s3:/bucket/rendered/")  # what the template rendered to
    op.__dict__["hook"] = _NoHook()
    with pytest.raises(QwenOcrConfigError, match=f"^{argument}="):
        op.execute({})


def test_the_batch_operator_checks_rendered_locations_before_the_hook():
    op = QwenOcrBatchOperator(task_id="t", images="/data/scans/", manifest_uri="{{ params.m }}")
    op.manifest_uri = "s3:bucket/m.jsonl"
    op.__dict__["hook"] = _NoHook()
    with pytest.raises(QwenOcrConfigError, match="^manifest_uri="):
        op.execute({})


def test_both_operators_share_the_default_output_rule(tmp_path, monkeypatch):
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    ids = {"dag_id": "d", "task_id": "t", "run_id": "manual__2026-01-01T00:00:00+00:00", "map_index": 2}
    default = output_location(None, **ids)
    assert default.startswith(str(tmp_path)) and default.endswith("/d/manual__2026-01-01T00_00_00_00_00/t_2.jsonl")
    assert output_location("s3://b/ocr/", **ids) == "s3://b/ocr/t_2.jsonl"  # a folder: one file per instance
    assert output_location("/abs/r.jsonl", **ids) == "/abs/r.jsonl"


@pytest.mark.parametrize("cls", [QwenOcrOperator, QwenOcrBatchOperator])
def test_a_task_name_typo_fails_when_the_dag_is_parsed(cls):
    with pytest.raises(QwenOcrConfigError, match="unknown OCR task 'text_recogniton'"):
        cls(task_id="t", images="/data/scans/", task="text_recogniton")
    assert cls(task_id="ok", images="/data/scans/", task="{{ params.task }}").task == "{{ params.task }}"
    assert cls(task_id="ok2", images="/data/scans/", task="table_parsing").task == "table_parsing"


def test_the_sensor_lands_into_the_operators_results_file_not_a_folder():
    with pytest.raises(QwenOcrConfigError, match="is a folder"):
        QwenOcrBatchSensor(task_id="s", batch_ids=["b1"], output_uri="s3://bucket/ocr/")
    assert QwenOcrBatchSensor(task_id="s2", batch_ids=["b1"], output_uri="s3://bucket/ocr/r.jsonl").output_uri
