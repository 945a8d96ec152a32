"""Wall-clock deadlines against a dripping peer, and the circuit breaker (issue 9, rows 5 and 6).

The dripping server is written here: it accepts on 127.0.0.1, reads the request, answers a 200 with a
long Content-Length and then sends one byte every 2 s — the slow peer that ``requests``' per-read
timeout never catches.
"""

from __future__ import annotations

import io
import socket
import threading
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

KEY = "sk-unit-test-secret-0123456789"


class DripServer:
    """Answers every request with headers promising 10 kB, then one byte every ``interval`` seconds."""

    def __init__(self, interval: float = 2.0, max_seconds: float = 60.0, *, framed: bool = True) -> None:
        # framed=False: no Content-Length, ``Connection: close`` (the body ends when the peer closes)
        self.interval, self.max_seconds = interval, max_seconds
        self.head = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     + (b"Content-Length: 10000\r\n" if framed else b"Connection: close\r\n") + b"\r\n{")
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.requests = 0
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        self.sock.settimeout(0.5)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._drip, args=(conn,), daemon=True).start()

    def _drip(self, conn: socket.socket) -> None:
        started = time.monotonic()
        try:
            conn.settimeout(5)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            self.requests += 1
            conn.sendall(self.head)
            while not self._stop.is_set() and time.monotonic() - started < self.max_seconds:
                time.sleep(self.interval)
                conn.sendall(b" ")
        except OSError:
            pass  # the client cut the connection: what the deadline is for
        finally:
            conn.close()

    def stop(self) -> None:
        self._stop.set()
        self.sock.close()


def _image():
    buf = io.BytesIO()
    Image.new("RGB", (120, 60), "white").save(buf, "PNG")
    return prepare_image(buf.getvalue(), get_model("qwen-vl-ocr"))


def test_dripping_server_fails_within_timeout_plus_retry_budget():
    srv = DripServer(interval=2.0)
    cfg = ClientConfig(api_key=KEY, base_url=f"http://127.0.0.1:{srv.port}", timeout=5.0,
                       max_retries=8, max_retry_seconds=10.0)
    client = RealtimeClient(cfg, breaker=CircuitBreaker(failures=0))
    started = time.monotonic()
    try:
        with pytest.raises(RetryableError) as ei:
            client.recognize(_image(), task="text_recognition")
    finally:
        elapsed = time.monotonic() - started
        srv.stop()
        client.close()
    print(f"dripping server: failed after {elapsed:.1f} s, {srv.requests} attempt(s)")
    assert ei.value.code == "RequestTimeOut"
    assert "deadline" in ei.value.message
    # each attempt is cut at 5 s; retries stop once 10 s are spent: ≤ 15 s plus scheduling slack
    assert 4.5 <= elapsed <= 20.0, elapsed
    assert srv.requests >= 2  # it did retry, within the budget


def test_deadline_cuts_a_drip_without_content_length():
    """Issue 20 #1: without Content-Length the socket belongs to the response, not the connection; the
    deadline still cuts it, and the cut (EOF-terminated, complete-looking) body is a timeout, not an answer."""
    srv = DripServer(interval=2.0, max_seconds=30.0, framed=False)
    cfg = ClientConfig(api_key=KEY, base_url=f"http://127.0.0.1:{srv.port}", timeout=3.0,
                       max_retries=0, max_retry_seconds=1.0)
    client = RealtimeClient(cfg, breaker=CircuitBreaker(failures=0))
    started = time.monotonic()
    try:
        with pytest.raises(RetryableError) as ei:
            client.recognize(_image(), task="text_recognition")
    finally:
        elapsed = time.monotonic() - started
        srv.stop()
        client.close()
    assert ei.value.code == "RequestTimeOut"
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


class EndlessServer:
    """Answers 200 and streams bytes as fast as the client reads them, without end (issue 20 #2)."""

    def __init__(self, *, declared: int | None = None, max_bytes: int = 200 * 1024 * 1024) -> None:
        self.declared, self.max_bytes, self.sent = declared, max_bytes, 0
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            length = f"Content-Length: {self.declared}\r\n" if self.declared else "Connection: close\r\n"
            conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{length}\r\n".encode())
            block = b"[" * 65536
            try:
                while self.sent < self.max_bytes:
                    conn.sendall(block)
                    self.sent += len(block)
            except OSError:
                pass  # the client stopped reading: what the cap is for

    def stop(self) -> None:
        self.sock.close()


@pytest.mark.parametrize("declared", [None, 50 * 1024 * 1024])
def test_an_endless_answer_stops_at_the_byte_cap(declared):
    srv = EndlessServer(declared=declared)
    cfg = ClientConfig(api_key=KEY, base_url=f"http://127.0.0.1:{srv.port}", timeout=20.0,
                       max_retries=3, max_retry_seconds=5.0)
    client = RealtimeClient(cfg, breaker=CircuitBreaker(failures=0))
    started = time.monotonic()
    try:
        with pytest.raises(PermanentError) as ei:
            client.recognize(_image(), task="text_recognition")
    finally:
        elapsed = time.monotonic() - started
        srv.stop()
        client.close()
    assert ei.value.code == "ResponseTooLarge"
    assert client.calls == 1  # never retried: the same answer would be as large
    assert elapsed < 20.0, elapsed
    # read up to the cap (plus socket buffers), not the 200 MB the server had to give
    assert srv.sent <= 16 * 1024 * 1024, srv.sent  # the cap is 8 MiB
    if declared:
        assert srv.sent <= 8 * 1024 * 1024  # refused on the header, before the body
