"""The suite's warning policy (``[tool.pytest.ini_options] filterwarnings`` in pyproject.toml), as the tests see it.

Our own deprecations must fail the run, so nothing ships calling a deprecated path of ours or of Airflow's
from our code; Airflow's deprecations raised elsewhere must stay visible (reported, not hidden and not
fatal), so an Airflow 3 deprecation shows up in the summary instead of being ignored. pytest installs these
filters around every test, so these tests fail if the policy is loosened (``ignore::DeprecationWarning``) or
turned against Airflow's own warnings.
"""

from __future__ import annotations

import warnings

import pytest

from airflow_provider_qwenocr.exceptions import QwenOcrDeprecationWarning


def _warn_from(module: str, category: type[Warning] = DeprecationWarning) -> None:
    """Raise a warning attributed to ``module``, as ``warnings.warn(..., stacklevel=...)`` would from there."""
    warnings.warn_explicit("old call", category, filename=f"{module.replace('.', '/')}.py", lineno=1, module=module)


def test_our_deprecation_category_is_an_error_wherever_it_is_attributed():
    with pytest.raises(QwenOcrDeprecationWarning):
        warnings.warn("`old_arg` is deprecated; use `new_arg`", QwenOcrDeprecationWarning, stacklevel=2)
    with pytest.raises(QwenOcrDeprecationWarning):
        _warn_from("user_dag_module", QwenOcrDeprecationWarning)


def test_any_deprecation_attributed_to_our_modules_is_an_error():
    """E.g. our code calling a deprecated Airflow API: Airflow's warning names our module as the caller."""
    with pytest.raises(DeprecationWarning):
        _warn_from("airflow_provider_qwenocr.hooks.qwenocr")
    with pytest.raises(DeprecationWarning):
        _warn_from("airflow_provider_qwenocr.operators.ocr")


def test_airflows_deprecations_elsewhere_are_shown_not_raised():
    with warnings.catch_warnings(record=True) as seen:  # keeps the active filters, records what they let through
        _warn_from("airflow.models.dag")
        _warn_from("airflow.sdk.definitions.dag", PendingDeprecationWarning)
    assert [w.category for w in seen] == [DeprecationWarning, PendingDeprecationWarning]
