"""The connection form declaration and the connection → ClientConfig parsing (no service needed)."""

from __future__ import annotations

import json

import pytest

from airflow_provider_qwenocr.dashscope.config import connection_root
from airflow_provider_qwenocr.get_provider_info import CONN_FIELDS, EXTRA_KEYS, get_provider_info
from airflow_provider_qwenocr.hooks.qwenocr import QwenOcrHook


def test_region_is_a_select_with_beijing_preselected_and_no_null():
    schema = get_provider_info()["connection-types"][0]["conn-fields"]["region"]["schema"]
    assert schema["type"] == "string" and None not in schema["enum"]
    assert schema["enum"] == ["cn-beijing", "ap-southeast-1", "us-east-1"] and schema["default"] == "cn-beijing"


def test_only_fields_that_always_have_a_value_are_in_the_form():
    # the Airflow 3 UI stores every shown field, an empty one as null: so no optional field is shown
    assert all("default" in spec["schema"] for spec in CONN_FIELDS.values())
    description = CONN_FIELDS["region"]["description"]
    assert all(key in description for key in EXTRA_KEYS if key != "region")


@pytest.mark.parametrize(("host", "port", "schema", "root"), [
    (None, None, None, None),
    ("", 8765, None, None),
    ("http://127.0.0.1:8765", None, None, "http://127.0.0.1:8765"),
    ("https://dashscope.example.com/api/v1", None, None, "https://dashscope.example.com"),
    ("127.0.0.1", 8765, "", "http://127.0.0.1:8765"),  # URI-style emulator connection: port kept
    ("localhost", "9000", None, "http://localhost:9000"),
    ("gateway.example.com", 8443, None, "https://gateway.example.com:8443"),
    ("gateway.internal", 8080, "http", "http://gateway.internal:8080"),  # the schema names the scheme
    ("http://10.0.0.5", 8765, None, "http://10.0.0.5:8765"),  # a form URL without port + the port field
    ("http://10.0.0.5:1234", 8765, None, "http://10.0.0.5:1234"),  # a port in the URL wins
])
def test_connection_root(host, port, schema, root):
    assert connection_root(host, port, schema) == root


def test_uri_style_connection_keeps_host_and_port(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_QWEN_URI", "dashscope://:sk-uri-key@127.0.0.1:8765")
    config = QwenOcrHook("qwen_uri").config
    assert config.api_key == "sk-uri-key" and config.root == "http://127.0.0.1:8765"
    assert config.native_base == "http://127.0.0.1:8765/api/v1"


def test_null_and_empty_extras_mean_not_set(monkeypatch):
    extra = {"region": "ap-southeast-1", "workspace_id": None, "default_model": "", "timeout": None, "rpm": "",
             "max_retries": None}
    monkeypatch.setenv("AIRFLOW_CONN_QWEN_NULLS", json.dumps({"conn_type": "dashscope", "password": "sk-x",
                                                               "extra": extra}))
    config = QwenOcrHook("qwen_nulls").config
    assert config.region == "ap-southeast-1" and config.base_url is None and config.workspace_id is None
    assert config.default_model == "qwen-vl-ocr" and config.timeout == 120.0 and config.rpm is None
    assert config.max_retries == 8


def test_fab_form_region_is_prefilled_and_checked(monkeypatch):
    try:  # Airflow 2.x has the form libraries; on Airflow 3 the same mapping is checked with stand-ins
        import flask_appbuilder  # noqa: F401
        import wtforms  # noqa: F401
    except ImportError:
        from tests.unit.test_hook_qwenocr import _form_library_standins

        _form_library_standins(monkeypatch)
    from wtforms.validators import AnyOf

    widget = QwenOcrHook.get_connection_form_widgets()["region"]  # Airflow 2's form supports no SelectField
    assert widget.kwargs["default"] == "cn-beijing"
    (check,) = [v for v in widget.kwargs["validators"] if isinstance(v, AnyOf)]
    assert list(check.values) == list(CONN_FIELDS["region"]["schema"]["enum"])
