"""The temporary upload (``dashscope/uploads.py``) against a loopback stub: policy → OSS form POST → oss:// URL.

The stub plays both hosts: ``GET /api/v1/uploads?action=getPolicy`` answers a policy whose ``upload_host``
is itself, and ``POST /oss`` takes the form. Checked: the URL and form the SDK sends, and the error
mapping (a refused key stops at once, a throttled policy call is retried, an OSS refusal is permanent).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from airflow_provider_qwenocr.dashscope.config import ClientConfig
from airflow_provider_qwenocr.dashscope.errors import InvalidApiKeyError, PermanentError
from airflow_provider_qwenocr.dashscope.uploads import temporary_upload

KEY = "sk-unit-test-secret-0123456789"


class UploadStub:
    def __init__(self) -> None:
        self.policy_answers: list[tuple[int, dict]] = []
        self.oss_status = 200
        self.seen: list[tuple[str, str, bytes]] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("content-type", ctype)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                stub.seen.append(("GET", self.path, self.headers.get("Authorization", "").encode()))
                status, body = stub.policy_answers.pop(0) if stub.policy_answers else (200, stub.policy())
                self._send(status, json.dumps(body).encode())

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("content-length") or 0))
                stub.seen.append(("POST", self.path, raw))
                self._send(stub.oss_status, b"" if stub.oss_status == 200 else b"<Error>AccessDenied</Error>",
                           "application/xml")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def policy(self) -> dict:
        return {"request_id": "req-p", "data": {
            "policy": "cG9saWN5", "signature": "c2ln", "upload_dir": "dashscope-instant/abc/2026-12-03/u1",
            "upload_host": self.base_url + "/oss", "expire_in_seconds": 300, "max_file_size_mb": 100,
            "capacity_limit_mb": 999999999, "oss_access_key_id": "LTAI-test", "x_oss_object_acl": "private",
            "x_oss_forbid_overwrite": "true"}}

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def stub():
    srv = UploadStub()
    yield srv
    srv.stop()


@pytest.fixture
def pdf(tmp_path):
    path = tmp_path / "contract 1.pdf"
    path.write_bytes(b"%PDF-1.4 test")
    return path


def cfg(stub, **kw) -> ClientConfig:
    return ClientConfig(api_key=KEY, base_url=stub.base_url, timeout=5, max_retries=kw.pop("max_retries", 2),
                        max_retry_seconds=30)


def test_upload_gets_a_policy_posts_the_form_and_returns_the_oss_url(stub, pdf):
    url = temporary_upload(cfg(stub), pdf, model="qwen3.5-ocr", sleep=lambda s: None)
    assert url == "oss://dashscope-instant/abc/2026-12-03/u1/contract 1.pdf"
    (get, path, auth), (post, oss_path, form) = stub.seen
    assert (get, post, oss_path) == ("GET", "POST", "/oss")
    assert path.startswith("/api/v1/uploads?") and "action=getPolicy" in path and "model=qwen3.5-ocr" in path
    assert auth == f"Bearer {KEY}".encode()
    assert b"dashscope-instant/abc/2026-12-03/u1/contract 1.pdf" in form and b"%PDF-1.4 test" in form


def test_a_refused_key_stops_at_once_without_the_key_in_the_message(stub, pdf):
    stub.policy_answers = [(401, {"code": "InvalidApiKey", "message": f"Invalid API-key provided: {KEY}",
                                  "request_id": "r"})]
    with pytest.raises(InvalidApiKeyError) as ei:
        temporary_upload(cfg(stub), pdf, model="qwen3.5-ocr", sleep=lambda s: None)
    assert KEY not in str(ei.value) and len(stub.seen) == 1


def test_a_throttled_policy_call_is_retried(stub, pdf):
    stub.policy_answers = [(429, {"code": "Throttling.RateQuota", "message": "slow down", "request_id": "r"})]
    assert temporary_upload(cfg(stub), pdf, model="qwen3.5-ocr", sleep=lambda s: None).startswith("oss://")
    assert [m for m, _, _ in stub.seen] == ["GET", "GET", "POST"]


def test_an_oss_refusal_is_permanent(stub, pdf):
    stub.oss_status = 403
    with pytest.raises(PermanentError) as ei:
        temporary_upload(cfg(stub), pdf, model="qwen3.5-ocr", sleep=lambda s: None)
    assert ei.value.code == "UploadFailed" and [m for m, _, _ in stub.seen] == ["GET", "POST"]
