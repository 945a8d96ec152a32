"""The provider's own deprecation warning, so that tests (and users) can single it out.

Why a category of our own: a ``DeprecationWarning`` is attributed to the *caller's* module (that is what
``stacklevel`` is for), so a filter by module cannot tell our deprecations from Airflow's. The test suite
turns this category into an error (``pyproject.toml``), and the tests of each deprecated alias expect it
with ``pytest.warns``.
"""

from __future__ import annotations

import warnings


class QwenOcrDeprecationWarning(DeprecationWarning):
    """An argument or form of this provider that still works but goes away in a later release."""


def warn_deprecated(message: str, *, stacklevel: int = 2) -> None:
    """Warn with :class:`QwenOcrDeprecationWarning`, attributed to the caller's caller by default."""
    warnings.warn(message, QwenOcrDeprecationWarning, stacklevel=stacklevel + 1)
