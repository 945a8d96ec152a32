"""Apache Airflow provider for Alibaba Model Studio Qwen-VL-OCR (DashScope).

``__all__`` is the public API, the one promised from 1.0 on (README "Public API"); every other module and
name is internal and may change in any release. The names are imported lazily, on first access, so that
``import airflow_provider_qwenocr`` stays cheap: Airflow imports every provider's package while it
discovers providers, and the operators pull in the image stack.
"""

from __future__ import annotations

__version__ = "1.0.0"

#: public name → the module that defines it (never a re-export: each name has one home).
_LAZY = {
    "QwenOcrHook": "airflow_provider_qwenocr.hooks.qwenocr",
    "QwenOcrOperator": "airflow_provider_qwenocr.operators.ocr",
    "QwenOcrBatchOperator": "airflow_provider_qwenocr.operators.batch",
    "QwenOcrBatchSensor": "airflow_provider_qwenocr.sensors.batch",
    "QwenOcrBatchTrigger": "airflow_provider_qwenocr.triggers.batch",
    "OcrSummary": "airflow_provider_qwenocr.runs.summary",
    "ocr_asset": "airflow_provider_qwenocr.lineage",
    "QwenOcrException": "airflow_provider_qwenocr.exceptions",
    "QwenOcrConfigError": "airflow_provider_qwenocr.exceptions",
    "QwenOcrSubmitRefusedError": "airflow_provider_qwenocr.exceptions",
    "QwenOcrNoSourcesError": "airflow_provider_qwenocr.exceptions",
    "QwenOcrAccountError": "airflow_provider_qwenocr.exceptions",
    "QwenOcrServiceUnavailableError": "airflow_provider_qwenocr.exceptions",
    "QwenOcrFailedImagesError": "airflow_provider_qwenocr.exceptions",
    "QwenOcrBatchError": "airflow_provider_qwenocr.exceptions",
    "QwenOcrDeprecationWarning": "airflow_provider_qwenocr.exceptions",
    "check_warehouse": "airflow_provider_qwenocr.warehouse.requirements",
    "warehouse_hook": "airflow_provider_qwenocr.warehouse.tasks",
    "load_result_files": "airflow_provider_qwenocr.warehouse.tasks",
    "loaded_sha256s": "airflow_provider_qwenocr.warehouse.tasks",
    "warehouse_report": "airflow_provider_qwenocr.warehouse.tasks",
    "load_document_files": "airflow_provider_qwenocr.warehouse.documents",
    "documents_report": "airflow_provider_qwenocr.warehouse.documents",
    "redshift_setup_sql": "airflow_provider_qwenocr.warehouse.redshift",
    "redshift_merge_sql": "airflow_provider_qwenocr.warehouse.redshift",
    "REDSHIFT_STAGING_TABLE": "airflow_provider_qwenocr.warehouse.redshift",
    "REDSHIFT_COPY_OPTIONS": "airflow_provider_qwenocr.warehouse.redshift",
}

__all__ = [
    "QwenOcrHook",
    "QwenOcrOperator",
    "QwenOcrBatchOperator",
    "QwenOcrBatchSensor",
    "QwenOcrBatchTrigger",
    "OcrSummary",
    "ocr_asset",
    "QwenOcrException",
    "QwenOcrConfigError",
    "QwenOcrSubmitRefusedError",
    "QwenOcrNoSourcesError",
    "QwenOcrAccountError",
    "QwenOcrServiceUnavailableError",
    "QwenOcrFailedImagesError",
    "QwenOcrBatchError",
    "QwenOcrDeprecationWarning",
    "check_warehouse",
    "warehouse_hook",
    "load_result_files",
    "loaded_sha256s",
    "warehouse_report",
    "load_document_files",
    "documents_report",
    "redshift_setup_sql",
    "redshift_merge_sql",
    "REDSHIFT_STAGING_TABLE",
    "REDSHIFT_COPY_OPTIONS",
]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
