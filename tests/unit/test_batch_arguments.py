"""Arguments of the batch operator and sensor: ids, cancel switches, refused options, removed pre-1.0 forms."""

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


@pytest.mark.parametrize("rendered", ['["b1", "b2"]', "['b1', 'b2']", "b1, b2", "[__import__('os').getpid()]"])
def test_a_string_of_several_ids_is_refused_with_what_to_pass(rendered):
    """1.0: the rendered-list string form is gone; it is refused (never parsed, never evaluated), not sent
    to the service as one unknown id."""
    with pytest.raises(QwenOcrConfigError, match="XComArg"):
        parse_batch_ids(rendered)


def test_sensor_cancel_on_kill_is_separate_from_cancel_on_timeout():
    s = QwenOcrBatchSensor(task_id="s1", batch_ids=["b1"], cancel_on_timeout=True, cancel_on_kill=False)
    assert s.cancel_on_timeout is True and s.cancel_on_kill is False
    s = QwenOcrBatchSensor(task_id="s2", batch_ids=["b1"], cancel_on_kill=True)
    assert s.cancel_on_timeout is False and s.cancel_on_kill is True
    assert QwenOcrBatchSensor(task_id="s3", batch_ids=["b1"]).cancel_on_kill is False


def test_sensor_cancel_on_timeout_alone_no_longer_cancels_on_kill():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = QwenOcrBatchSensor(task_id="s", batch_ids=["b1"], cancel_on_timeout=True)
    assert s.cancel_on_kill is False


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
    assert not QwenOcrBatchOperator(task_id="b0", images="x", enable_rotate=False).enable_rotate


@pytest.mark.parametrize("removed", ["max_concurrency", "prepare_workers", "batch_limits", "max_poll_failures",
                                     "fail_on_partial_error"])
def test_batch_operator_pre_1_0_and_tuning_arguments_are_gone(removed):
    with pytest.raises(Exception, match=removed):  # Airflow's own "invalid arguments" error names it
        QwenOcrBatchOperator(task_id="b1", images="x", **{removed: 3})


@pytest.mark.parametrize("removed", ["fail_on_partial_error", "max_poll_failures"])
def test_sensor_pre_1_0_and_tuning_arguments_are_gone(removed):
    with pytest.raises(Exception, match=removed):
        QwenOcrBatchSensor(task_id="s1", batch_ids=["b1"], **{removed: 3})
