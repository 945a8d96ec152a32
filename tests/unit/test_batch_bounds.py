"""The OpenAI-compatible (batch) client under hostile answers (issue 20 #1, #2): every answer is bounded
in bytes (8 MiB; 500 MB for a file's content) and in wall-clock time, whatever its framing.

The servers are on 127.0.0.1 (tests/fixtures/hostile.py); each case is bounded to seconds.
"""

from __future__ import annotations

import time

import pytest

from airflow_provider_qwenocr.dashscope.batch import BatchClient
from airflow_provider_qwenocr.dashscope.config import ClientConfig
from tests.fixtures.hostile import HostileServer

KEY = "sk-unit-test-secret-0123456789"


def server(mode: str) -> HostileServer:
    """``drip``: ``{`` then 1 byte / 2 s; ``endless``: bytes as fast as they are read. Up to 300 MB or 5 min,
    no Content-Length either way."""
    return HostileServer(mode, interval=2.0, max_seconds=300.0, max_bytes=300 * 1024 * 1024, prefix=b"{")


def _client(base_url: str, timeout: float) -> BatchClient:
    return BatchClient(ClientConfig(api_key=KEY, base_url=base_url, timeout=timeout, max_retries=0),
                       check_region=False)


def test_a_dripping_answer_ends_near_the_timeout():
    srv = server("drip")
    started = time.monotonic()
    try:
        with pytest.raises(Exception) as ei:
            _client(srv.base_url, timeout=3.0).get_batch("batch_x")
    finally:
        elapsed = time.monotonic() - started
        srv.stop()
    assert "timed out" in str(ei.value).lower() or "timeout" in type(ei.value).__name__.lower(), repr(ei.value)
    assert elapsed < 12.0, elapsed  # deadline 3 s + one 2-s drip interval + slack (the drip lasts minutes)


def test_an_endless_answer_stops_at_the_byte_cap():
    srv = server("endless")
    started = time.monotonic()
    try:
        with pytest.raises(Exception) as ei:
            _client(srv.base_url, timeout=20.0).get_batch("batch_x")
    finally:
        elapsed = time.monotonic() - started
        srv.stop()
    cause = ei.value.__cause__ or ei.value
    assert "exceeded 8,388,608 bytes" in str(cause), repr(cause)
    assert srv.sent <= 16 * 1024 * 1024, srv.sent  # not the 300 MB offered
    assert elapsed < 20.0, elapsed
