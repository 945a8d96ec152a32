"""The shared operator arguments (operators/base.py) stay first-class Airflow parameters in both operators."""

from __future__ import annotations

import datetime

import pytest

from airflow_provider_qwenocr import QwenOcrBatchOperator, QwenOcrOperator
from airflow_provider_qwenocr._compat import AirflowException
from airflow_provider_qwenocr.operators.base import QwenOcrBaseOperator

try:
    from airflow.sdk import DAG
except ImportError:  # Airflow 2.x
    from airflow import DAG


def _dag(**default_args):
    return DAG("args_dag", schedule=None, start_date=datetime.datetime(2026, 1, 1), default_args=default_args)


def test_default_args_reach_the_shared_and_the_own_arguments():
    with _dag(model="qwen-vl-ocr-2025-04-13", cache_uri="/tmp/ocr-cache", max_concurrency=3, delete_files=True,
              max_failed_ratio=0.25):
        realtime = QwenOcrOperator(task_id="rt", images="x")
        batch = QwenOcrBatchOperator(task_id="b", images="x")
    assert (realtime.model, realtime.cache_uri, realtime.max_concurrency, realtime.max_failed_ratio) == \
        ("qwen-vl-ocr-2025-04-13", "/tmp/ocr-cache", 3, 0.25)
    assert (batch.model, batch.cache_uri, batch.delete_files, batch.max_failed_ratio) == \
        ("qwen-vl-ocr-2025-04-13", "/tmp/ocr-cache", True, 0.25)
    assert isinstance(realtime, QwenOcrBaseOperator) and isinstance(batch, QwenOcrBaseOperator)


@pytest.mark.filterwarnings("ignore:Task 'bad' was never mapped")  # refused before it could be
def test_shared_arguments_can_be_mapped_and_unknown_ones_are_refused():
    with _dag():
        QwenOcrOperator.partial(task_id="m", images="x").expand(prompt=["p1", "p2"])
        QwenOcrBatchOperator.partial(task_id="mb", task="custom", prompt="p").expand(images=[["a"], ["b"]])
        with pytest.raises(TypeError, match="bogus"):
            QwenOcrOperator.partial(task_id="bad", images="x").expand(bogus=[1])
        with pytest.raises((TypeError, AirflowException), match="bogus"):
            QwenOcrOperator(task_id="z", images="x", bogus=1)


def test_a_bad_request_argument_is_a_config_error_at_the_edge():
    from airflow_provider_qwenocr.exceptions import QwenOcrConfigError

    class Hook:
        config = type("C", (), {"default_model": "qwen-vl-ocr"})()

    for op, match in ((QwenOcrOperator(task_id="a", images="x", task="custom"), "needs a prompt"),
                      (QwenOcrBatchOperator(task_id="b", images="x", max_pixels="many"), "whole number"),
                      (QwenOcrOperator(task_id="c", images="x", model="qwen vl"), "not a model name")):
        op.__dict__["hook"] = Hook()
        with pytest.raises(QwenOcrConfigError, match=match):
            op.ocr_request()


# -- the 1.0 operator API: argument counts, one home per knob, shared templating ------------------------------

# QwenOcrOperator: 20 for the 1.0 cut, + ``unit`` (issue 18: documents as a unit, the one argument it adds).
TARGETS = {"QwenOcrOperator": 20, "QwenOcrBatchOperator": 25, "QwenOcrBatchSensor": 13}
BEFORE_1_0 = {"QwenOcrOperator": 23, "QwenOcrBatchOperator": 31, "QwenOcrBatchSensor": 15}  # issue 17's count


def arguments(cls) -> list[str]:
    """Every ``__init__`` parameter of ``cls`` and its qwenocr base classes (not BaseOperator's own kwargs)."""
    import inspect

    names: list[str] = []
    for klass in cls.__mro__:
        if not klass.__module__.startswith("airflow_provider_qwenocr") or "__init__" not in vars(klass):
            continue
        for p in inspect.signature(klass.__init__).parameters.values():
            if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and p.name not in names:
                names.append(p.name)
    return names


def test_argument_counts_are_within_the_1_0_targets(capsys):
    from airflow_provider_qwenocr import QwenOcrBatchSensor

    counts = {cls.__name__: arguments(cls) for cls in (QwenOcrOperator, QwenOcrBatchOperator, QwenOcrBatchSensor)}
    with capsys.disabled():
        for name, args in counts.items():
            print(f"\n{name}: {len(args)} arguments (was {BEFORE_1_0[name]}, target <= {TARGETS[name]}): "
                  f"{', '.join(args)}")
    assert {name: len(args) <= TARGETS[name] for name, args in counts.items()} == dict.fromkeys(TARGETS, True)


def test_service_tuning_knobs_are_not_operator_arguments():
    """One home per knob: the breaker, poll tolerance, progress cadence, preparation threads and file limits
    are connection extras or module constants, not arguments of any task."""
    from airflow_provider_qwenocr import QwenOcrBatchSensor

    tuning = {"circuit_breaker_failures", "circuit_breaker_seconds", "progress_interval", "max_poll_failures",
              "prepare_workers", "batch_limits", "fail_on_partial_error"}
    for cls in (QwenOcrOperator, QwenOcrBatchOperator, QwenOcrBatchSensor):
        assert not tuning & set(arguments(cls)), cls.__name__


def test_every_capability_is_still_an_argument():
    kept = {"token_budget", "image_transport", "emit_asset", "max_failed_ratio", "cache_uri", "use_cache"}
    assert kept | {"draw_boxes_uri", "enable_rotate", "max_concurrency"} <= set(arguments(QwenOcrOperator))
    assert kept | {"deferrable", "wait_for_completion", "completion_window"} <= set(arguments(QwenOcrBatchOperator))


def test_fetch_is_a_transport():
    """``fetch`` (download http(s) URLs here) is ``image_transport="fetch"``: one argument says how images travel."""
    from airflow_provider_qwenocr.exceptions import QwenOcrConfigError

    for cls in (QwenOcrOperator, QwenOcrBatchOperator):
        assert "fetch" not in arguments(cls)
        assert cls(task_id="t", images="/x", image_transport="fetch").fetch is True
        assert cls(task_id="t", images="/x", image_transport="inline").fetch is False
    with pytest.raises((ValueError, QwenOcrConfigError)):
        QwenOcrOperator(task_id="t", images="/x", image_transport="download")


def test_the_base_operator_templates_the_shared_arguments_in_both_operators():
    shared = set(QwenOcrBaseOperator.template_fields)
    assert {"aws_conn_id", "token_budget", "output_uri", "cache_uri", "conn_id"} <= shared
    for cls in (QwenOcrOperator, QwenOcrBatchOperator):
        assert shared <= set(cls.template_fields), cls.__name__
        assert set(cls.template_fields) <= set(arguments(cls)), cls.__name__  # only real arguments
        assert len(cls.template_fields) == len(set(cls.template_fields)), cls.__name__
