"""A server that echoes the API key into an error's ``code``, ``message`` and ``request_id`` (issue 20 item 11).

The key must reach none of what the task leaves behind: the results file, the XCom summary (which goes to
the metadata DB), the task's exception, and the log (our loggers, the operator's own warning lines).
The server is a loopback stub shaped like the service's native error answer, bounded to a few images.
"""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from airflow_provider_qwenocr.exceptions import QwenOcrAccountError
from airflow_provider_qwenocr.operators.ocr import QwenOcrOperator

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

#: One key in the service's ``sk-`` shape, one that only the connection knows is a key.
KEYS = ["sk-echo-0123456789abcdef0123456789", "ds-private-key-7f3a9c2e5b1d"]


class EchoKeyServer:
    """Answers every POST with ``status`` and the caller's own key in code, message and request id."""

    def __init__(self, status: int) -> None:
        self.requests = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length") or 0))
                key = self.headers.get("Authorization", "").removeprefix("Bearer ").strip()
                server.requests += 1
                body = json.dumps({"code": key, "message": f"unknown key {key} (Authorization: Bearer {key})",
                                   "request_id": key}).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        self.base_url = f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@pytest.fixture
def echo_server(request):
    srv = EchoKeyServer(request.param)
    yield srv
    srv.stop()


def run_operator(monkeypatch, tmp_path, srv, key, **kwargs):
    monkeypatch.setenv("AIRFLOW_CONN_QWEN_ECHO", json.dumps(
        {"conn_type": "dashscope", "password": key, "host": srv.base_url, "extra": {"max_retries": 0}}))
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(3):
        Image.new("RGB", (64, 32), (i * 40, 90, 200)).save(folder / f"scan_{i}.png")
    op = QwenOcrOperator(task_id="ocr", images=str(folder), output_uri=str(tmp_path / "out" / "r.jsonl"),
                         conn_id="qwen_echo", use_cache=False, **kwargs)
    return op.execute({})


def leftovers(tmp_path) -> bytes:
    return b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and p.suffix != ".png")


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("echo_server", [400], indirect=True)
def test_a_key_echoed_into_error_fields_reaches_no_row_xcom_or_log(echo_server, key, monkeypatch, tmp_path,
                                                                   caplog, capfd):
    caplog.set_level(logging.DEBUG)
    summary = run_operator(monkeypatch, tmp_path, echo_server, key, max_failed_ratio=1.0)
    rows = [json.loads(x) for x in (tmp_path / "out" / "r.jsonl").read_text().splitlines()]
    assert echo_server.requests == 3 and len(rows) == 3 and summary["n_failed"] == 3
    assert all(r["status"] == "error" and r["error"]["code"] and r["request_id"] for r in rows)  # fields kept
    assert key.encode() not in leftovers(tmp_path)  # the results file (and anything else written)
    assert key not in json.dumps(summary)  # XCom → the metadata DB
    out, err = capfd.readouterr()
    assert key not in out + err  # the operator's own warning lines ("  scan_0.png: <code>: <message>")
    assert all(key not in r.getMessage() for r in caplog.records)
    assert any("failed" in r.getMessage() for r in caplog.records) or "failed" in out + err  # the lines were there


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("echo_server", [401], indirect=True)
def test_a_key_echoed_by_an_account_refusal_stays_out_of_the_task_error(echo_server, key, monkeypatch, tmp_path,
                                                                        capfd):
    with pytest.raises(QwenOcrAccountError) as ei:
        run_operator(monkeypatch, tmp_path, echo_server, key)
    assert "refused the account" in str(ei.value) and key not in str(ei.value)
    out, err = capfd.readouterr()
    assert key not in out + err
