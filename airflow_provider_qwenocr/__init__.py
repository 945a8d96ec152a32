"""Apache Airflow provider for Alibaba Model Studio Qwen-VL-OCR (DashScope).

Public classes are imported lazily so that ``import airflow_provider_qwenocr`` stays cheap
(Airflow imports every provider's package while it discovers providers).
"""

from __future__ import annotations

__version__ = "0.1.0"

_LAZY = {
    "QwenOcrHook": "airflow_provider_qwenocr.hooks.qwenocr",
    "QwenOcrOperator": "airflow_provider_qwenocr.operators.ocr",
    "QwenOcrBatchOperator": "airflow_provider_qwenocr.operators.batch",
    "QwenOcrBatchSensor": "airflow_provider_qwenocr.sensors.batch",
    "QwenOcrBatchTrigger": "airflow_provider_qwenocr.triggers.batch",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
