"""Provider metadata read by Airflow through the ``apache_airflow_provider`` entry point.

The connection form is declared here as ``conn-fields`` + ``ui-field-behaviour`` (read by Airflow 3.2+
without importing the hook) and again as classmethods on :class:`QwenOcrHook` (read by 2.10–3.1). A unit
test keeps the two in agreement.
"""

from __future__ import annotations

from airflow_provider_qwenocr import __version__

CONN_TYPE = "dashscope"
DEFAULT_CONN_ID = "dashscope_default"

UI_FIELD_BEHAVIOUR = {
    "hidden_fields": ["schema", "port", "login"],
    "relabeling": {"password": "API Key", "host": "Base URL (optional)"},
    "placeholders": {
        "host": "empty = the region's endpoint; e.g. http://127.0.0.1:8765 for the offline emulator",
        "password": "sk-...",
        "extra": '{"region": "cn-beijing", "workspace_id": "", "default_model": "qwen-vl-ocr"}',
    },
}

CONN_FIELDS = {
    "region": {
        "label": "Region",
        "description": "Used when Base URL is empty: cn-beijing, ap-southeast-1 or us-east-1. "
        "API keys are tied to one region; OCR batch exists in cn-beijing only.",
        "schema": {"type": ["string", "null"], "enum": ["cn-beijing", "ap-southeast-1", "us-east-1", None]},
    },
    "workspace_id": {
        "label": "Workspace ID",
        "description": "Sent as X-DashScope-WorkSpace (optional).",
        "schema": {"type": ["string", "null"]},
    },
    "default_model": {
        "label": "Default model",
        "description": "Model used when an operator does not name one (default qwen-vl-ocr).",
        "schema": {"type": ["string", "null"]},
    },
    "timeout": {
        "label": "Timeout (s)",
        "description": "Per-request timeout in seconds (default 120).",
        "schema": {"type": ["number", "null"]},
    },
    "rpm": {
        "label": "Requests per minute",
        "description": "Client-side request limit; empty = the model's documented quota.",
        "schema": {"type": ["integer", "null"]},
    },
    "tpm": {
        "label": "Tokens per minute",
        "description": "Client-side token limit; empty = the model's documented quota.",
        "schema": {"type": ["integer", "null"]},
    },
    "limiter_path": {
        "label": "Shared limiter file",
        "description": "Path of an SQLite file that every worker process on one host shares as one RPM/TPM "
        "budget (optional; see the README's rate-limit section).",
        "schema": {"type": ["string", "null"]},
    },
    "limiter_conn_id": {
        "label": "Shared limiter connection",
        "description": "A Redis or Postgres connection id: every worker on every host shares one RPM/TPM "
        "budget there (optional; see the README's 'Running on many workers').",
        "schema": {"type": ["string", "null"]},
    },
    "limiter_expected_workers": {
        "label": "Expected workers",
        "description": "If the shared limiter store is lost, each process paces itself at quota / this (default 4).",
        "schema": {"type": ["integer", "null"]},
    },
    "max_retries": {
        "label": "Max retries",
        "description": "Attempts for throttled / 5xx / timed-out calls before an image fails (default 8).",
        "schema": {"type": ["integer", "null"]},
    },
    "max_retry_seconds": {
        "label": "Max retry time (s)",
        "description": "Total time one image may spend retrying (default 600).",
        "schema": {"type": ["number", "null"]},
    },
}


def _yaml_behaviour() -> dict:
    b = UI_FIELD_BEHAVIOUR
    return {"hidden-fields": b["hidden_fields"], "relabeling": b["relabeling"], "placeholders": b["placeholders"]}


def get_provider_info() -> dict:
    return {
        "package-name": "airflow-provider-qwenocr",
        "name": "Qwen-VL-OCR (Alibaba Model Studio / DashScope)",
        "description": "Realtime and batch OCR with Qwen-VL-OCR, results landed in object storage and warehouses.",
        "versions": [__version__],
        "integrations": [
            {"integration-name": "Qwen-VL-OCR", "external-doc-url": "https://www.alibabacloud.com/help/en/model-studio/qwen-vl-ocr",
             "tags": ["ai"]},
        ],
        "hooks": [{"integration-name": "Qwen-VL-OCR", "python-modules": ["airflow_provider_qwenocr.hooks.qwenocr"]}],
        "operators": [
            {
                "integration-name": "Qwen-VL-OCR",
                "python-modules": ["airflow_provider_qwenocr.operators.ocr", "airflow_provider_qwenocr.operators.batch"],
            }
        ],
        "sensors": [{"integration-name": "Qwen-VL-OCR", "python-modules": ["airflow_provider_qwenocr.sensors.batch"]}],
        "triggers": [{"integration-name": "Qwen-VL-OCR", "python-modules": ["airflow_provider_qwenocr.triggers.batch"]}],
        "connection-types": [
            {
                "connection-type": CONN_TYPE,
                "hook-class-name": "airflow_provider_qwenocr.hooks.qwenocr.QwenOcrHook",
                "hook-name": "DashScope (Qwen-VL-OCR)",
                "ui-field-behaviour": _yaml_behaviour(),
                "conn-fields": CONN_FIELDS,
            }
        ],
    }
