"""Provider metadata read by Airflow through the ``apache_airflow_provider`` entry point.

The connection form is declared here as ``conn-fields`` + ``ui-field-behaviour`` (read by Airflow 3.2+
without importing the hook) and again as classmethods on :class:`QwenOcrHook` (read by 2.10–3.1). A unit
test keeps the two in agreement.
"""

from __future__ import annotations

from airflow_provider_qwenocr import __version__
from airflow_provider_qwenocr.dashscope.config import EXTRAS
from airflow_provider_qwenocr.ocr.models import DEFAULT_REGION, REGION_ENDPOINTS

CONN_TYPE = "dashscope"
DEFAULT_CONN_ID = "dashscope_default"

#: Region codes of the DashScope endpoints, from the catalogue's endpoint table.
REGIONS = tuple(REGION_ENDPOINTS)

#: Settings read from the connection's extra JSON (all optional), described where they are validated
#: (``dashscope.config.EXTRAS``). Only ``region`` is a form field: the Airflow 3 UI stores every form field it
#: shows, an empty one as ``null`` (its own behaviour, for every provider), so the form holds only a field
#: that always has a value, and the rest are typed into "Extra Fields JSON" when needed — an untouched form
#: saves ``{"region": "cn-beijing"}`` and nothing else.
EXTRA_KEYS = {key: description for key, (description, _, _) in EXTRAS.items()}

UI_FIELD_BEHAVIOUR = {
    "hidden_fields": ["schema", "port", "login"],
    "relabeling": {"password": "API Key", "host": "Base URL (optional)"},
    "placeholders": {
        "host": "empty = the region's endpoint; e.g. http://127.0.0.1:8765 for the offline emulator",
        "password": "sk-...",
        "extra": '{"workspace_id": "ws-...", "default_model": "qwen-vl-ocr", "timeout": 120}',
    },
}

CONN_FIELDS = {
    "region": {
        "label": "Region",
        "description": "Used when Base URL is empty. API keys are tied to one region; OCR batch exists in "
        "cn-beijing only. Optional settings go in Extra Fields JSON: "
        + ", ".join(k for k in EXTRA_KEYS if k != "region") + " (see the README).",
        "schema": {"type": "string", "enum": list(REGIONS), "default": DEFAULT_REGION},
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
