"""Arguments of the batch operator and sensor: ids, cancel switches, refused options, renamed options."""

from __future__ import annotations

import warnings

import pytest

from airflow_provider_qwenocr.exceptions import QwenOcrConfigError
from airflow_provider_qwenocr.operators.batch import QwenOcrBatchOperator
from airflow_provider_qwenocr.sensors.batch import QwenOcrBatchSensor, parse_batch_ids


def test_lists_and_single_ids_need_no_parsing():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert parse_batch_ids(["b1", "b2"]) == ["b1", "b2"]
        assert parse_batch_ids(("b1",)) == ["b1"]
        assert parse_batch_ids(" batch_9 ") == ["batch_9"]
        assert parse_batch_ids(None) == [] and parse_batch_ids([]) == []


@pytest.mark.parametrize("rendered", ['["b1", "b2"]', "['b1', 'b2']", "b1, b2"])
def test_rendered_list_strings_still_work_with_a_deprecation_warning(rendered):
    with pytest.warns(DeprecationWarning, match="XComArg"):
        assert parse_batch_ids(rendered) == ["b1", "b2"]


def test_a_rendered_string_is_never_evaluated_as_python():
    with pytest.warns(DeprecationWarning), pytest.raises(ValueError):
        parse_batch_ids("[__import__('os').getpid()]")


def test_sensor_cancel_on_kill_is_separate_from_cancel_on_timeout():
    s = QwenOcrBatchSensor(task_id="s1", batch_ids=["b1"], cancel_on_timeout=True, cancel_on_kill=False)
    assert s.cancel_on_timeout is True and s.cancel_on_kill is False
    s = QwenOcrBatchSensor(task_id="s2", batch_ids=["b1"], cancel_on_kill=True)
    assert s.cancel_on_timeout is False and s.cancel_on_kill is True
    assert QwenOcrBatchSensor(task_id="s3", batch_ids=["b1"]).cancel_on_kill is False


def test_sensor_old_cancel_on_timeout_alone_keeps_cancelling_on_kill_with_a_warning():
    with pytest.warns(DeprecationWarning, match="cancel_on_kill"):
        s = QwenOcrBatchSensor(task_id="s", batch_ids=["b1"], cancel_on_timeout=True)
    assert s.cancel_on_kill is True


def test_sensor_on_kill_follows_cancel_on_kill():
    class Hook:
        cancelled: list = []

        def cancel_batches(self, ids):
            self.cancelled.append(ids)

    for flag, expected in ((False, []), (True, [["b1"]])):
        s = QwenOcrBatchSensor(task_id="s", batch_ids=["b1"], cancel_on_timeout=not flag, cancel_on_kill=flag)
        s.__dict__["hook"] = hook = Hook()
        hook.cancelled = []
        s.on_kill()
        assert hook.cancelled == expected


def test_batch_refuses_enable_rotate_clearly():
    with pytest.raises(QwenOcrConfigError, match="enable_rotate"):
        QwenOcrBatchOperator(task_id="b", images="x", enable_rotate=True)


def test_batch_max_concurrency_is_a_deprecated_alias_of_prepare_workers():
    assert QwenOcrBatchOperator(task_id="b1", images="x", prepare_workers=3).prepare_workers == 3
    with pytest.warns(DeprecationWarning, match="prepare_workers"):
        op = QwenOcrBatchOperator(task_id="b2", images="x", max_concurrency=6)
    assert op.prepare_workers == 6
    with pytest.raises(QwenOcrConfigError, match="prepare_workers"):
        QwenOcrBatchOperator(task_id="b3", images="x", prepare_workers=0)
