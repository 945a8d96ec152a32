"""The few imports that moved between Airflow 2.10 and 3.x, in one place."""

from __future__ import annotations

try:  # Airflow 3.1+
    from airflow.sdk import BaseHook
except ImportError:  # Airflow 2.x, 3.0
    from airflow.hooks.base import BaseHook  # type: ignore[no-redef]

try:
    from airflow.sdk import BaseOperator, BaseSensorOperator
except ImportError:
    from airflow.models import BaseOperator  # type: ignore[no-redef]
    from airflow.sensors.base import BaseSensorOperator  # type: ignore[no-redef]

try:
    from airflow.sdk import ObjectStoragePath
except ImportError:
    try:
        from airflow.io.path import ObjectStoragePath  # type: ignore[no-redef]
    except ImportError:  # pragma: no cover
        ObjectStoragePath = None  # type: ignore[assignment,misc]

try:
    from airflow.sdk.exceptions import AirflowException, AirflowSensorTimeout
except ImportError:
    from airflow.exceptions import AirflowException, AirflowSensorTimeout  # type: ignore[no-redef]

try:
    from airflow.sdk.configuration import conf
except ImportError:
    from airflow.configuration import conf  # type: ignore[no-redef]

from airflow.triggers.base import BaseTrigger, TriggerEvent

try:
    from airflow.sdk import Context
except ImportError:
    from airflow.utils.context import Context  # type: ignore[no-redef,attr-defined]


def default_deferrable() -> bool:
    return conf.getboolean("operators", "default_deferrable", fallback=False)


__all__ = [
    "AirflowException",
    "AirflowSensorTimeout",
    "BaseHook",
    "BaseOperator",
    "BaseSensorOperator",
    "BaseTrigger",
    "Context",
    "ObjectStoragePath",
    "TriggerEvent",
    "conf",
    "default_deferrable",
]
