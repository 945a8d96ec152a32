"""The OpenAI-compatible (batch) client under hostile answers (issue 20 #1, #2): every answer is bounded
in bytes (8 MiB; 500 MB for a file's content) and in wall-clock time, whatever its framing.

The servers are on 127.0.0.1 and written here; each case is bounded to seconds.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest

from airflow_provider_qwenocr.dashscope.batch import BatchClient
from airflow_provider_qwenocr.dashscope.config import ClientConfig

KEY = "sk-unit-test-secret-0123456789"


class Server:
    """``drip``: 1 byte / 2 s; ``endless``: bytes as fast as they are read. No Content-Length either way."""

    def __init__(self, mode: str, max_bytes: int = 300 * 1024 * 1024) -> None:
        self.mode, self.max_bytes, self.sent = mode, max_bytes, 0
        self._stop = threading.Event()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.base = f"http://127.0.0.1:{self.sock.getsockname()[1]}/compatible-mode/v1"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            try:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n{")
                block = b" " * 65536 if self.mode == "endless" else b" "
                while self.sent < self.max_bytes and not self._stop.is_set():
                    conn.sendall(block)
                    self.sent += len(block)
                    if self.mode == "drip":
                        time.sleep(2.0)
            except OSError:
                pass

    def stop(self) -> None:
        self._stop.set()
        self.sock.close()


def _client(base: str, timeout: float) -> BatchClient:
    return BatchClient(ClientConfig(api_key=KEY, base_url=base.removesuffix("/compatible-mode/v1"), timeout=timeout,
                                    max_retries=0), check_region=False)


def test_a_dripping_answer_ends_near_the_timeout():
    srv = Server("drip")
    started = time.monotonic()
    try:
        with pytest.raises(Exception) as ei:
            _client(srv.base, timeout=3.0).get_batch("batch_x")
    finally:
        elapsed = time.monotonic() - started
        srv.stop()
    assert "timed out" in str(ei.value).lower() or "timeout" in type(ei.value).__name__.lower(), repr(ei.value)
    assert elapsed < 12.0, elapsed  # deadline 3 s + one 2-s drip interval + slack (the drip lasts minutes)


def test_an_endless_answer_stops_at_the_byte_cap():
    srv = Server("endless")
    started = time.monotonic()
    try:
        with pytest.raises(Exception) as ei:
            _client(srv.base, timeout=20.0).get_batch("batch_x")
    finally:
        elapsed = time.monotonic() - started
        srv.stop()
    cause = ei.value.__cause__ or ei.value
    assert "exceeded 8,388,608 bytes" in str(cause), repr(cause)
    assert srv.sent <= 16 * 1024 * 1024, srv.sent  # not the 300 MB offered
    assert elapsed < 20.0, elapsed
