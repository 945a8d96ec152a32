"""QwenOcrHook: connection → config, client caching, recognize inputs, test_connection, the form, discovery."""

from __future__ import annotations

import io
import json
import logging
import sys

import pytest
from PIL import Image

from airflow_provider_qwenocr.dashscope.errors import InvalidApiKeyError
from airflow_provider_qwenocr.get_provider_info import CONN_FIELDS, get_provider_info
from airflow_provider_qwenocr.hooks.qwenocr import QwenOcrHook
from airflow_provider_qwenocr.ocr.images import ImageValidationError
from tests.unit.dashscope_stub import StubServer, recorded

KEY = "sk-hook-secret-abcdef123456"


@pytest.fixture
def stub():
    srv = StubServer().start()
    yield srv
    srv.stop()


@pytest.fixture
def conn(stub, monkeypatch):
    extra = {"region": "cn-beijing", "workspace_id": "ws-9", "default_model": "qwen-vl-ocr-latest", "timeout": 5,
             "rpm": 6000, "tpm": "", "max_retries": 1}
    monkeypatch.setenv("AIRFLOW_CONN_DASHSCOPE_TEST", json.dumps(
        {"conn_type": "dashscope", "password": KEY, "host": stub.base_url + "/api/v1", "extra": extra}))
    return "dashscope_test"


def png(w=120, h=60):
    buf = io.BytesIO()
    Image.new("RGB", (w, h), "white").save(buf, "PNG")
    return buf.getvalue()


def test_config_from_connection(conn, stub):
    cfg = QwenOcrHook(conn).config
    assert cfg.api_key == KEY
    assert cfg.root == stub.base_url  # "/api/v1" pasted from the docs is stripped
    assert cfg.native_base == stub.base_url + "/api/v1"
    assert (cfg.workspace_id, cfg.default_model, cfg.timeout, cfg.rpm, cfg.tpm, cfg.max_retries) == (
        "ws-9", "qwen-vl-ocr-latest", 5.0, 6000, None, 1)


def test_client_and_limiter_cached_per_hook(conn):
    hook = QwenOcrHook(conn)
    assert hook.get_client() is hook.get_client()
    assert hook.get_client().limiter is hook.limiter
    assert hook.limiter.rpm == 6000
    assert hook.limiter.tpm == hook.model_spec().tpm  # empty extra → the model's documented quota
    assert QwenOcrHook(conn).get_client() is not hook.get_client()


def test_shared_limiter_from_connection_extra(stub, monkeypatch, tmp_path):
    path = str(tmp_path / "budget.sqlite")
    monkeypatch.setenv("AIRFLOW_CONN_DASHSCOPE_SHARED", json.dumps(
        {"conn_type": "dashscope", "password": KEY, "host": stub.base_url,
         "extra": {"rpm": 120, "tpm": 10**9, "limiter_path": path}}))
    a, b = QwenOcrHook("dashscope_shared"), QwenOcrHook("dashscope_shared")
    assert a.limiter is not b.limiter
    assert a.limiter.try_acquire() and b.limiter.try_acquire()  # burst of 2 (120/min), shared by both hooks
    assert not a.limiter.try_acquire() and not b.limiter.try_acquire()


def test_model_spec(conn):
    hook = QwenOcrHook(conn)
    assert hook.model_spec().name == "qwen-vl-ocr-latest"
    assert hook.model_spec("qwen-vl-ocr-2025-08-28").patch == 28


def test_recognize_bytes_path_and_url(conn, stub, tmp_path):
    hook = QwenOcrHook(conn)
    r1 = hook.recognize(png(), "text_recognition")
    assert r1.ok and r1.model == "qwen-vl-ocr-latest" and r1.width == 120
    p = tmp_path / "doc.png"
    p.write_bytes(png())
    r2 = hook.recognize(str(p), "table_parsing")
    assert r2.source == str(p) and r2.sha256 == r1.sha256
    r3 = hook.recognize("https://example.invalid/x.jpg", "text_recognition")
    assert r3.source == "https://example.invalid/x.jpg"
    sent = [r["body"]["input"]["messages"][0]["content"][0]["image"] for r in stub.requests]
    assert sent[0].startswith("data:image/") and sent[1].startswith("data:image/")
    assert sent[2] == "https://example.invalid/x.jpg"
    assert stub.requests[0]["headers"]["X-DashScope-WorkSpace"] == "ws-9"


def test_recognize_bad_image_raises_validation_error(conn, stub):
    with pytest.raises(ImageValidationError):
        QwenOcrHook(conn).recognize(b"not an image")
    with pytest.raises(ImageValidationError):
        QwenOcrHook(conn).recognize(png(8, 8))
    assert stub.requests == []  # nothing sent, nothing billed


def test_test_connection_ok(conn, stub):
    ok, msg = QwenOcrHook(conn).test_connection()
    assert ok, msg
    assert "request_id" in msg
    item = stub.requests[-1]["body"]["input"]["messages"][0]["content"][0]
    assert item["max_pixels"] <= 32 * 32 * 6  # cheap: the smallest grid


def test_test_connection_bad_key_reports_and_never_raises(conn, stub, caplog):
    caplog.set_level(logging.DEBUG)
    stub.respond(recorded("auth-error-nosse"))
    ok, msg = QwenOcrHook(conn).test_connection()
    assert not ok and "InvalidApiKey" in msg
    assert KEY not in msg
    assert all(KEY not in r.getMessage() for r in caplog.records)
    assert len(stub.requests) == 1  # not retried


def test_test_connection_without_connection_never_raises():
    ok, msg = QwenOcrHook("no_such_connection_here").test_connection()
    assert not ok and msg


def test_invalid_key_error_from_recognize(conn, stub):
    stub.respond(recorded("auth-error-nosse"))
    with pytest.raises(InvalidApiKeyError):
        QwenOcrHook(conn).recognize(png())


def test_ui_behaviour_and_conn_fields_agree():
    info = get_provider_info()
    ct = info["connection-types"][0]
    assert ct["hook-class-name"] == f"{QwenOcrHook.__module__}.{QwenOcrHook.__qualname__}"
    assert ct["connection-type"] == QwenOcrHook.conn_type
    beh = QwenOcrHook.get_ui_field_behaviour()
    assert ct["ui-field-behaviour"]["hidden-fields"] == beh["hidden_fields"]
    assert ct["ui-field-behaviour"]["relabeling"] == beh["relabeling"]
    assert set(ct["conn-fields"]) == set(CONN_FIELDS)


def _form_library_standins(monkeypatch) -> None:
    """Minimal flask_appbuilder / flask_babel / wtforms stand-ins for an Airflow 3 venv, which has none.

    They only record what the hook builds, so the mapping conn-fields → widgets (used by Airflow 2.10–3.1,
    where the real libraries exist and this test uses them) is checked on every Airflow.
    """
    import types

    class _Field:
        def __init__(self, label, description="", validators=(), widget=None, default=None):
            self.label, self.description, self.validators, self.widget = label, description, list(validators), widget
            self.default = default
            self.kwargs = {"description": description, "validators": list(validators), "default": default}

    class _Validator:
        def __init__(self, *args, **kwargs):
            self.args, self.kwargs = args, kwargs
            self.values = args[0] if args else kwargs.get("values")

    mods = {
        "flask_appbuilder": {}, "flask_appbuilder.fieldwidgets": {"BS3TextFieldWidget": type("BS3TextFieldWidget", (), {})},
        "flask_babel": {"lazy_gettext": lambda text: text},
        "wtforms": {"IntegerField": type("IntegerField", (_Field,), {}), "StringField": type("StringField", (_Field,), {})},
        "wtforms.validators": {"NumberRange": type("NumberRange", (_Validator,), {}),
                               "Optional": type("Optional", (_Validator,), {}),
                               "AnyOf": type("AnyOf", (_Validator,), {})},
    }
    for name, attrs in mods.items():
        module = types.ModuleType(name)
        module.__dict__.update(attrs)
        monkeypatch.setitem(sys.modules, name, module)


def test_form_widgets_match_conn_fields(monkeypatch):
    try:
        import wtforms  # noqa: F401
    except ImportError:
        assert QwenOcrHook.get_connection_form_widgets() == {}  # Airflow 3 without FAB: conn-fields serve the form
        _form_library_standins(monkeypatch)
    widgets = QwenOcrHook.get_connection_form_widgets()
    assert set(widgets) == set(CONN_FIELDS)

    def kind(widget) -> str:  # real wtforms fields built outside a form are UnboundField(field_class=…)
        return getattr(widget, "field_class", type(widget)).__name__

    def types_of(spec) -> list:
        t = spec["schema"]["type"]
        return t if isinstance(t, list) else [t]

    integers = {name for name, spec in CONN_FIELDS.items() if "integer" in types_of(spec)}
    assert {name for name, w in widgets.items() if kind(w) == "IntegerField"} == integers
    assert {kind(w) for name, w in widgets.items() if name not in integers} == {"StringField"}
    # an enum (the region) is a prefilled text field checked against its choices: Airflow 2's form has no select
    for name, spec in CONN_FIELDS.items():
        if spec["schema"].get("enum"):
            widget = widgets[name]
            default = getattr(widget, "default", None) or getattr(widget, "kwargs", {}).get("default")
            assert default == spec["schema"]["default"]


def test_providers_manager_sees_hook_and_conn_type():
    from airflow.providers_manager import ProvidersManager

    pm = ProvidersManager()
    assert "airflow-provider-qwenocr" in pm.providers
    try:  # Airflow 3.3+: hooks are the task runtime's (ProvidersManager.hooks is deprecated there)
        from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime

        hooks = ProvidersManagerTaskRuntime().hooks
    except ImportError:
        hooks = pm.hooks
    assert "dashscope" in hooks
    info = hooks["dashscope"]
    assert info is not None and info.hook_class_name.endswith("QwenOcrHook")
    assert info.connection_id_attribute_name == "conn_id"


def test_provider_info_validates_against_airflow_schema():
    import importlib.resources

    jsonschema = pytest.importorskip("jsonschema")
    try:
        schema_text = importlib.resources.files("airflow").joinpath("provider_info.schema.json").read_text()
    except FileNotFoundError:
        pytest.skip("this Airflow ships no provider_info.schema.json")
    jsonschema.validate(get_provider_info(), json.loads(schema_text))


@pytest.mark.parametrize("model", ["qwen3.5-ocr", "qwen-ocr-not-in-the-catalogue"])
def test_models_without_a_documented_quota_are_paced_at_the_logged_conservative_default(monkeypatch, model):
    def hook_with(extra):
        name = f"dashscope_q{abs(hash((model, tuple(extra)))) % 10_000}"
        monkeypatch.setenv(f"AIRFLOW_CONN_{name.upper()}", json.dumps(
            {"conn_type": "dashscope", "password": KEY, "extra": {"default_model": model, **extra}}))
        return QwenOcrHook(name)

    bare = hook_with({}).limiter
    assert (bare.rpm, bare.tpm) == (600, 6_000_000)  # unknown quota: the conservative documented default (logged)
    own = hook_with({"rpm": 120, "tpm": 90_000}).limiter
    assert (own.rpm, own.tpm) == (120, 90_000)
