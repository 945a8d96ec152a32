"""The loopback hostile server itself (tests/fixtures/hostile.py): the head it promises, its byte bound,
and that stop() ends a connection whose peer reads nothing — the deadline and byte-cap tests rely on all three."""

from __future__ import annotations

import socket
import time

import pytest

from tests.fixtures.hostile import HostileServer


def _get(srv: HostileServer) -> socket.socket:
    conn = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
    conn.sendall(b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n")
    return conn


def _read_all(conn: socket.socket) -> bytes:
    data = b""
    while chunk := conn.recv(65536):
        data += chunk
    return data


def test_head_framing_prefix_and_byte_bound():
    with HostileServer("endless", max_bytes=3 * 65536, status="503 Busy", content_type="image/png",
                       content_length=10, prefix=b"\x89PNG", fill=b"\0") as srv:
        with _get(srv) as conn:
            data = _read_all(conn)
        assert srv.requests == 1
    head, body = data.split(b"\r\n\r\n", 1)
    assert head.split(b"\r\n") == [b"HTTP/1.1 503 Busy", b"Content-Type: image/png", b"Content-Length: 10"]
    assert body == b"\x89PNG" + b"\0" * (3 * 65536) and srv.sent == 3 * 65536


def test_drip_sends_one_byte_per_interval_and_closes_after_max_seconds():
    with HostileServer("drip", interval=0.2, max_seconds=1.0, prefix=b"{") as srv:
        started = time.monotonic()
        with _get(srv) as conn:
            data = _read_all(conn)
        elapsed = time.monotonic() - started
    head, body = data.split(b"\r\n\r\n", 1)
    assert b"Connection: close" in head and body.startswith(b"{ ")
    assert 3 <= srv.sent <= 7 and body == b"{" + b" " * srv.sent  # ~5 drips in 1 s
    assert 0.8 <= elapsed < 4.0, elapsed


def test_stop_ends_a_connection_whose_peer_reads_nothing():
    srv = HostileServer("endless", max_seconds=60.0)
    conn = _get(srv)
    time.sleep(0.3)  # the server fills the socket buffers and blocks in sendall
    started = time.monotonic()
    srv.stop()
    assert time.monotonic() - started < 2.0
    with conn:
        try:
            _read_all(conn)  # what was buffered, then the end: no recv waits out its 5-s timeout
        except ConnectionResetError:
            pass
    assert time.monotonic() - started < 4.0
    with pytest.raises(ConnectionRefusedError):  # no longer listening
        socket.create_connection(("127.0.0.1", srv.port), timeout=1)


def test_only_two_modes():
    with pytest.raises(ValueError):
        HostileServer("flood")
