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
