"""The exceptions the provider's operators and sensor raise, in one place so users can catch them.

Every class is an ``AirflowException`` subclass, so Airflow's own handling (retries, failure callbacks) is
unchanged; a DAG author who wants to react to one cause (say, top up the account when billing stops a run)
catches the narrow class. The core (``ocr/``, ``dashscope/``, ``runs/``) raises its own typed errors
(``dashscope.errors``); the Airflow layer translates them into these, with a message that says what to do.
"""

from __future__ import annotations

from airflow_provider_qwenocr._compat import AirflowException


class QwenOcrException(AirflowException):
    """Base class of every exception raised by the qwenocr operators, sensor and trigger consumers."""


class QwenOcrConfigError(QwenOcrException):
    """The task's arguments cannot work (pixel bounds, task/schema, model, unwritable output or cache).

    Raised before any call is made, so nothing is billed."""


class QwenOcrSubmitRefusedError(QwenOcrConfigError):
    """The batch operator refused to submit (``token_budget`` exceeded, or given with ``image_transport="url"``).

    Nothing was uploaded."""


class QwenOcrNoSourcesError(QwenOcrConfigError):
    """``images`` matched no document."""


class QwenOcrAccountError(QwenOcrException):
    """DashScope refused the key or the account (invalid key, billing state, free tier used up).

    The task stopped at once; images not yet done were not sent, so a re-run after the fix picks them up."""


class QwenOcrServiceUnavailableError(QwenOcrException):
    """The service was unreachable or kept failing (the circuit breaker opened); images not yet done were not
    sent and no error rows were written for them, so a re-run picks them up."""


class QwenOcrFailedImagesError(QwenOcrException):
    """More images failed than ``max_failed_ratio`` allows; the results file (with its error rows) was written."""


class QwenOcrBatchError(QwenOcrException):
    """A batch could not be submitted, polled or collected, or its wait ended badly (timeout, polling error)."""


class QwenOcrDeprecationWarning(DeprecationWarning):
    """Warns of a public name that will change (from 1.0: one minor release of warning, removal at the next major).

    A category of our own because a ``DeprecationWarning`` is attributed to the caller's module, so a
    filter by module cannot tell ours from Airflow's; the test suite turns this category into an error. Raise it with
    ``warnings.warn(message, QwenOcrDeprecationWarning, stacklevel=2)``.
    """

