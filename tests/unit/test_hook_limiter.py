"""The hook's part of the shared limiter: a Redis / Postgres connection becomes a store URL (the redis
provider's conventions), the form offers the field, and a wrong connection type is refused by name."""

from __future__ import annotations

import json

import pytest

from airflow_provider_qwenocr.get_provider_info import CONN_FIELDS
from airflow_provider_qwenocr.hooks.qwenocr import QwenOcrHook


def _conn(monkeypatch, conn_id, **fields):
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(fields))


def test_redis_connection_to_url(monkeypatch):
    _conn(monkeypatch, "lim_redis", conn_type="redis", host="10.0.0.5", port=6380, password="p@ss/word",
          extra={"db": 3})
    _conn(monkeypatch, "lim_rediss", conn_type="redis", host="cache.example", extra={"ssl": True})
    hook = QwenOcrHook("unused")
    assert hook.limiter_store_url("lim_redis") == "redis://:p%40ss%2Fword@10.0.0.5:6380/3"
    assert hook.limiter_store_url("lim_rediss") == "rediss://cache.example:6379/0"


def test_postgres_connection_to_url(monkeypatch):
    _conn(monkeypatch, "lim_pg", conn_type="postgres", host="db", port=5433, login="airflow", password="x y",
          schema="limits")
    assert QwenOcrHook("unused").limiter_store_url("lim_pg") == "postgresql://airflow:x%20y@db:5433/limits"


def test_other_connection_types_are_refused(monkeypatch):
    _conn(monkeypatch, "lim_http", conn_type="http", host="x")
    with pytest.raises(ValueError, match="redis or postgres"):
        QwenOcrHook("unused").limiter_store_url("lim_http")


def test_form_documents_the_limiter_extras():
    # Optional settings are typed in the form's Extra Fields JSON (an empty form field would be saved as
    # null): the Region description names them, so the form still tells users they exist.
    from airflow_provider_qwenocr.get_provider_info import EXTRA_KEYS

    for key in ("limiter_conn_id", "limiter_expected_workers", "limiter_wait_seconds"):
        assert key in EXTRA_KEYS and key in CONN_FIELDS["region"]["description"]
