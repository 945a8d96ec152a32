"""Deprecated location of the DashScope emulator; it is now its own distribution, ``qwenocr-emulator``.

Why this stub: for one release, ``python -m airflow_provider_qwenocr.emulator`` and
``from airflow_provider_qwenocr.emulator import EmulatorServer, EmulatorConfig`` keep working, with a
DeprecationWarning naming the new command (``qwenocr-emulator`` / ``python -m qwenocr_emulator``) and
import (``from qwenocr_emulator import EmulatorServer``). Install it with
``pip install 'airflow-provider-qwenocr[emulator]'`` (or ``pip install qwenocr-emulator``).
It will be removed in the next release.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_qwenocr.deprecation import warn_deprecated

MOVED = ("airflow_provider_qwenocr.emulator moved to the qwenocr-emulator distribution: run `qwenocr-emulator` "
         "(or `python -m qwenocr_emulator`) and import from `qwenocr_emulator`; this alias will be removed "
         "in the next release")

__all__ = ["EmulatorServer", "EmulatorConfig"]


def _new_package():
    try:
        import qwenocr_emulator
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError("the emulator is the qwenocr-emulator distribution now: "
                          "pip install 'airflow-provider-qwenocr[emulator]'") from exc
    return qwenocr_emulator


def __getattr__(name: str) -> Any:
    if name in __all__:
        warn_deprecated(MOVED, stacklevel=1)
        return getattr(_new_package(), name)
    raise AttributeError(name)
