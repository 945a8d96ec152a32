"""One validation of a connection's settings (issue 20 item 12), its prices (issue 18 item 4), and a hook
that reads its connection once (issue 17 item 3)."""

from __future__ import annotations

import io
import json
import logging

import pytest
from PIL import Image

from airflow_provider_qwenocr.dashscope.config import (
    EXTRAS,
    ClientConfig,
    ConnectionSettingsError,
    config_from_connection,
)
from airflow_provider_qwenocr.hooks.qwenocr import QwenOcrHook
from airflow_provider_qwenocr.ocr.models import get_model
from airflow_provider_qwenocr.ocr.results import add_cost, new_cost_total
from tests.unit.dashscope_stub import StubServer

KEY = "sk-settings-secret-0123456789"


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (120, 60), "white").save(buf, "PNG")
    return buf.getvalue()


def settings(**extra):
    return config_from_connection("qwen_x", password=KEY, host="http://127.0.0.1:9", extra=extra)


@pytest.fixture
def stub():
    srv = StubServer().start()
    yield srv
    srv.stop()


def set_conn(monkeypatch, conn_id, *, host=None, password=KEY, **extra):
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(
        {"conn_type": "dashscope", "password": password, "host": host, "extra": extra}))
    return conn_id


BAD = [
    ("timeout", float("nan")), ("timeout", "NaN"), ("timeout", float("inf")), ("timeout", "-inf"), ("timeout", 1e12),
    ("timeout", -5), ("timeout", 0), ("timeout", "soon"), ("timeout", True), ("timeout", [30]),
    ("rpm", 0), ("rpm", 1.5), ("rpm", "lots"), ("rpm", -60), ("tpm", float("nan")), ("tpm", 1e30),
    ("max_retries", -1), ("max_retries", 1e6), ("max_retries", "x"), ("max_retry_seconds", float("inf")),
    ("max_retry_seconds", -1), ("circuit_breaker_failures", -1), ("circuit_breaker_failures", 2.5),
    ("circuit_breaker_seconds", 0), ("circuit_breaker_seconds", "nan"), ("limiter_expected_workers", 0),
    ("limiter_wait_seconds", -1), ("limiter_wait_seconds", 1e12), ("limiter_path", 5), ("limiter_conn_id", "  "),
    ("region", "mars-1"), ("price_currency", "EUR"), ("price_input_per_mtok", -1),
    ("price_output_per_mtok", float("nan")), ("default_model", 42),
]


@pytest.mark.parametrize(("key", "value"), BAD, ids=[f"{k}={v!r}" for k, v in BAD])
def test_each_unusable_extra_is_refused_naming_extra_connection_and_what_is_allowed(key, value):
    with pytest.raises(ConnectionSettingsError) as ei:
        settings(**{key: value})
    message = str(ei.value)
    assert "'qwen_x'" in message and f"extra {key!r}" in message and "must be" in message
    assert isinstance(ei.value, ValueError)


def test_the_message_says_what_is_allowed():
    with pytest.raises(ConnectionSettingsError, match=r"timeout.*nan.*finite number of seconds between 1 and 3,600"):
        settings(timeout="nan")
    with pytest.raises(ConnectionSettingsError, match=r"price_currency.*one of USD, CNY"):
        settings(price_input_per_mtok=1, price_output_per_mtok=1, price_currency="EUR")


def test_usable_values_in_any_spelling_the_form_stores():
    cfg = settings(timeout="30", rpm="600", tpm=1e6, max_retries=3.0, max_retry_seconds=0, circuit_breaker_failures=0,
                   circuit_breaker_seconds="45.5", limiter_expected_workers="2", limiter_wait_seconds=0,
                   region="ap-southeast-1", workspace_id=" ws-1 ", default_model="qwen3.5-ocr", limiter_path="/tmp/b")
    assert (cfg.timeout, cfg.rpm, cfg.tpm, cfg.max_retries, cfg.max_retry_seconds) == (30.0, 600, 1_000_000, 3, 0.0)
    assert (cfg.circuit_breaker_failures, cfg.circuit_breaker_seconds) == (0, 45.5)
    assert (cfg.limiter_expected_workers, cfg.limiter_wait_seconds, cfg.limiter_path) == (2, 0.0, "/tmp/b")
    assert (cfg.region, cfg.workspace_id, cfg.default_model) == ("ap-southeast-1", "ws-1", "qwen3.5-ocr")
    assert isinstance(cfg.rpm, int) and isinstance(cfg.max_retries, int)


def test_a_typo_of_a_known_extra_is_an_error_and_other_unknown_extras_a_warning(caplog):
    with pytest.raises(ConnectionSettingsError, match=r"unknown extra 'timout' — did you mean 'timeout'"):
        settings(timout=30)
    with pytest.raises(ConnectionSettingsError, match="did you mean 'circuit_breaker_seconds'"):
        settings(circuit_breaker_second=30)
    caplog.set_level(logging.WARNING)
    cfg = settings(team="ocr", owner_email="a@b.c")
    assert cfg.timeout == 120.0
    (warning,) = [r.getMessage() for r in caplog.records if "unknown extra" in r.getMessage()]
    assert "'qwen_x'" in warning and "owner_email, team" in warning


def test_a_price_needs_both_rates_and_the_currency():
    with pytest.raises(ConnectionSettingsError, match="missing: price_output_per_mtok, price_currency"):
        settings(price_input_per_mtok=1.5)


def test_connection_prices_override_the_catalogue_for_any_model():
    cfg = settings(price_input_per_mtok=2, price_output_per_mtok="8", price_currency="usd")
    for name in ("qwen-vl-ocr", "qwen3.5-ocr", "a-model-from-next-year"):
        assert cfg.price_of(get_model(name)).cost(1_000_000, 500_000) == {"usd": 6.0, "cny": None}
    cny = settings(price_input_per_mtok=0.3, price_output_per_mtok=0.5, price_currency="CNY")
    assert cny.price_of(get_model("qwen3.5-ocr")).cost(1_000_000, 1_000_000, batch=True) == {"usd": None, "cny": 0.4}
    plain = settings()  # no connection prices: the catalogue's list price in the connection's region
    assert plain.price_of(get_model("qwen-vl-ocr")) == get_model("qwen-vl-ocr").price(plain.region)


def test_a_row_priced_in_one_currency_is_not_an_unknown_price():
    total = new_cost_total()
    add_cost(total, {"usd": None, "cny": 0.4})
    add_cost(total, {"usd": None, "cny": None})
    assert total == {"usd": None, "cny": None, "unknown_rows": 1}


def test_no_key_is_refused_naming_the_connection():
    with pytest.raises(ConnectionSettingsError, match="'qwen_x': no DashScope API key"):
        config_from_connection("qwen_x", password="  \n", extra={})
    assert config_from_connection("qwen_x", password=None, extra={"api_key": KEY}).api_key == KEY


def test_every_extra_is_in_the_connection_form_description():
    from airflow_provider_qwenocr.get_provider_info import CONN_FIELDS, EXTRA_KEYS

    assert set(EXTRA_KEYS) == set(EXTRAS)
    assert all(k in CONN_FIELDS["region"]["description"] for k in EXTRAS if k != "region")


# -- the hook: one connection lookup, one verdict ------------------------------------------------------------

def test_the_hook_reads_its_connection_once(monkeypatch, stub, tmp_path):
    conn_id = set_conn(monkeypatch, "qwen_once", host=stub.base_url, rpm=600, limiter_path=str(tmp_path / "l.db"))
    looked_up: list[str] = []
    original = QwenOcrHook.get_connection.__func__

    def counting(cls, cid):
        looked_up.append(cid)
        return original(cls, cid)

    monkeypatch.setattr(QwenOcrHook, "get_connection", classmethod(counting))
    hook = QwenOcrHook(conn_id)
    hook.get_client()  # config + limiter + breaker
    hook.batch_client, hook.model_spec(), hook.ocr_request(), hook.batch_runner(aws_conn_id=None)
    hook.recognize(_png())
    hook.test_connection()
    assert looked_up == [conn_id]


def test_breaker_settings_come_from_the_connection_only(monkeypatch):
    conn_id = set_conn(monkeypatch, "qwen_breaker", host="http://127.0.0.1:9", circuit_breaker_failures=3,
                       circuit_breaker_seconds=7)
    breaker = QwenOcrHook(conn_id).get_client().breaker
    assert (breaker.failures, breaker.seconds) == (3, 7.0)
    with pytest.raises(TypeError):
        QwenOcrHook(conn_id, circuit_breaker_failures=1)  # no second home for a connection setting


@pytest.mark.parametrize(("key", "value"), [("timeout", "nan"), ("timeout", 1e12), ("rpm", 0), ("max_retries", -1),
                                            ("circuit_breaker_seconds", "inf"), ("timout", 30)])
def test_test_connection_gives_the_tasks_verdict_before_any_call(monkeypatch, stub, key, value):
    conn_id = set_conn(monkeypatch, "qwen_verdict", host=stub.base_url, **{key: value})
    with pytest.raises(ConnectionSettingsError) as ei:
        QwenOcrHook(conn_id).config  # noqa: B018 - what a task gets
    ok, message = QwenOcrHook(conn_id).test_connection()
    assert (ok, message) == (False, str(ei.value))
    assert stub.requests == []  # refused before anything was sent (or billed)


def test_test_connection_names_ignored_extras(monkeypatch, stub):
    conn_id = set_conn(monkeypatch, "qwen_extra", host=stub.base_url, team="ocr")
    ok, message = QwenOcrHook(conn_id).test_connection()
    assert ok and message.endswith("ignored unknown extra(s): team")


def test_the_connections_price_reaches_the_realtime_row(monkeypatch, stub):
    conn_id = set_conn(monkeypatch, "qwen_priced", host=stub.base_url, default_model="qwen3.5-ocr",
                       price_input_per_mtok=2, price_output_per_mtok=8, price_currency="USD")
    row = QwenOcrHook(conn_id).recognize(_png())
    assert row.usage.input_tokens == 100 and row.usage.output_tokens == 10  # the stub's usage
    assert row.cost == {"usd": round((100 * 2 + 10 * 8) / 1e6, 8), "cny": None}


def test_the_connections_price_reaches_the_batch_row(tmp_path):
    from airflow_provider_qwenocr.ocr.request import build_ocr_request
    from airflow_provider_qwenocr.runs.batch import BatchRunner
    from airflow_provider_qwenocr.runs.results_store import read_results
    from tests.unit.test_runs_summary_batch import FakeBatchApi

    api = FakeBatchApi()
    api.config = ClientConfig(api_key="fake-batch-key", price=settings(
        price_input_per_mtok=10, price_output_per_mtok=20, price_currency="CNY").price)
    runner = BatchRunner(api)
    sub = runner.submit([("a.png", _png())], build_ocr_request(), manifest_uri=str(tmp_path / "m.jsonl"))
    for b in api.batches.values():
        b["status"] = "completed"
    runner.land(sub.batch_ids, output_uri=str(tmp_path / "r.jsonl"), manifest_uri=str(tmp_path / "m.jsonl"))
    (row,) = read_results(str(tmp_path / "r.jsonl"))
    # the fake bills 50 input + 5 output tokens; batch = half the connection's CNY rates
    assert row["cost"] == {"usd": None, "cny": round((50 * 10 + 5 * 20) / 1e6 / 2, 8)}
