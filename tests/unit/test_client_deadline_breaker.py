"""Wall-clock deadlines against a dripping peer, and the circuit breaker (issue 9, rows 5 and 6).

The dripping server (tests/fixtures/hostile.py) accepts on 127.0.0.1, reads the request, answers a 200
with a long Content-Length and then sends one byte every 2 s — the slow peer that ``requests``' per-read
timeout never catches.
"""

from __future__ import annotations

import io
import socket
import time

import pytest
from PIL import Image

from airflow_provider_qwenocr.dashscope.breaker import CircuitBreaker, is_outage
from airflow_provider_qwenocr.dashscope.config import ClientConfig
from airflow_provider_qwenocr.dashscope.errors import (
    PermanentError,
    RetryableError,
    ServiceUnavailableError,
)
from airflow_provider_qwenocr.dashscope.realtime import RealtimeClient
from airflow_provider_qwenocr.ocr.images import prepare_image
from airflow_provider_qwenocr.ocr.models import get_model
from tests.fixtures.hostile import HostileServer

KEY = "sk-unit-test-secret-0123456789"


def drip_server(interval: float = 2.0, max_seconds: float = 60.0, *, framed: bool = True) -> HostileServer:
    """Headers promising 10 kB (or, ``framed=False``, no Content-Length and ``Connection: close``), ``{``, then
    one byte every ``interval`` seconds."""
    return HostileServer("drip", interval=interval, max_seconds=max_seconds,
                         content_length=10000 if framed else None, prefix=b"{")


def _image():
    buf = io.BytesIO()
    Image.new("RGB", (120, 60), "white").save(buf, "PNG")
    return prepare_image(buf.getvalue(), get_model("qwen-vl-ocr"))


def _failed_call(srv: HostileServer, error: type[Exception], **config) -> tuple[Exception, float, RealtimeClient]:
    """One recognize call to ``srv`` that must raise ``error``: (that error, the seconds the call took, the
    client); the server is stopped and the client closed whatever happens."""
    client = RealtimeClient(ClientConfig(api_key=KEY, base_url=srv.base_url, **config),
                            breaker=CircuitBreaker(failures=0))
    started = time.monotonic()
    try:
        with pytest.raises(error) as ei:
            client.recognize(_image(), task="text_recognition")
    finally:
        elapsed = time.monotonic() - started
        srv.stop()
        client.close()
    return ei.value, elapsed, client


def test_dripping_server_fails_within_timeout_plus_retry_budget():
    srv = drip_server(interval=2.0)
    err, elapsed, _ = _failed_call(srv, RetryableError, timeout=5.0, max_retries=8, max_retry_seconds=10.0)
    print(f"dripping server: failed after {elapsed:.1f} s, {srv.requests} attempt(s)")
    assert err.code == "RequestTimeOut"
    assert "deadline" in err.message
    # each attempt is cut at 5 s; retries stop once 10 s are spent: ≤ 15 s plus scheduling slack
    assert 4.5 <= elapsed <= 20.0, elapsed
    assert srv.requests >= 2  # it did retry, within the budget


def test_deadline_cuts_a_drip_without_content_length():
    """Issue 20 #1: without Content-Length the socket belongs to the response, not the connection; the
    deadline still cuts it, and the cut (EOF-terminated, complete-looking) body is a timeout, not an answer."""
    srv = drip_server(interval=2.0, max_seconds=30.0, framed=False)
    err, elapsed, _ = _failed_call(srv, RetryableError, timeout=3.0, max_retries=0, max_retry_seconds=1.0)
    assert err.code == "RequestTimeOut"
    assert 2.5 <= elapsed <= 12.0, elapsed  # 3-s deadline; the drip would go on for 30 s


def test_breaker_opens_after_k_consecutive_outages_and_stops_calling():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens: connection refused on every call
    cfg = ClientConfig(api_key=KEY, base_url=f"http://127.0.0.1:{port}", timeout=5.0,
                       max_retries=100, max_retry_seconds=600.0)
    breaker = CircuitBreaker(failures=4, seconds=600)
    client = RealtimeClient(cfg, sleep=lambda s: None, breaker=breaker)
    with pytest.raises(ServiceUnavailableError) as ei:
        client.recognize(_image(), task="text_recognition")
    assert breaker.is_open and client.calls == 4
    assert "4 consecutive calls" in str(ei.value)
    with pytest.raises(ServiceUnavailableError):  # open: no further HTTP attempt
        client.recognize(_image(), task="text_recognition")
    assert client.calls == 4


def test_breaker_time_rule_and_healthy_signals():
    now = [0.0]
    b = CircuitBreaker(failures=100, seconds=30, clock=lambda: now[0])
    b.before_call()
    outage = RetryableError("refused", code="ConnectionError")
    for t in (5.0, 10.0, 20.0):
        now[0] = t
        b.record_failure(outage)
    assert not b.is_open
    now[0] = 25.0
    b.record_failure(PermanentError("bad image", code="InvalidParameter", status_code=400))  # service answered
    now[0] = 50.0
    b.record_failure(outage)
    assert not b.is_open  # 25 s since the healthy 400
    now[0] = 56.0
    b.record_failure(outage)
    assert b.is_open and "no successful call for 31 s" in b.reason


def test_what_counts_as_outage():
    assert is_outage(RetryableError("x", code="ConnectionError"))
    assert is_outage(RetryableError("x", code="InternalError", status_code=500))
    assert not is_outage(RetryableError("x", code="Throttling", status_code=429))
    assert not is_outage(PermanentError("x", code="InvalidParameter", status_code=400))
    assert not CircuitBreaker(failures=0).enabled


def endless_server(*, declared: int | None = None) -> HostileServer:
    """200 and ``[`` bytes as fast as the client reads them, up to 200 MB (issue 20 #2)."""
    return HostileServer("endless", content_length=declared, max_bytes=200 * 1024 * 1024, fill=b"[")


@pytest.mark.parametrize("declared", [None, 50 * 1024 * 1024])
def test_an_endless_answer_stops_at_the_byte_cap(declared):
    srv = endless_server(declared=declared)
    err, elapsed, client = _failed_call(srv, PermanentError, timeout=20.0, max_retries=3, max_retry_seconds=5.0)
    assert err.code == "ResponseTooLarge"
    assert client.calls == 1  # never retried: the same answer would be as large
    assert elapsed < 20.0, elapsed
    # read up to the cap (plus socket buffers), not the 200 MB the server had to give
    assert srv.sent <= 16 * 1024 * 1024, srv.sent  # the cap is 8 MiB
    if declared:
        assert srv.sent <= 8 * 1024 * 1024  # refused on the header, before the body
