"""A tiny scripted DashScope stand-in on 127.0.0.1 for client unit tests (the CLIENT engineer's helper).

Why not the emulator here: unit tests need exact control — "answer 429 twice, then 200", a given header,
a recorded body byte for byte — and must see every request the SDK sent (path, headers, JSON body).
The emulator is used by the integration tests instead.
"""

from __future__ import annotations

import json
import pathlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

RECORDINGS = pathlib.Path(__file__).resolve().parents[1] / "data" / "recordings"


def recorded(name: str) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of a recorded response, e.g. ``recorded("auth-error-nosse")``."""
    head = (RECORDINGS / f"{name}.response.header.txt").read_text().splitlines()
    status = int(head[0].split()[1])
    headers = {}
    for line in head[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            if k.lower() not in ("content-encoding", "transfer-encoding", "content-length", "set-cookie"):
                headers[k.strip()] = v.strip()
    headers.setdefault("content-type", "application/json")
    body = (RECORDINGS / f"{name}.response.body.txt").read_bytes()
    return status, headers, body


def ok_body(text: str = "hello", ocr_result: dict | None = None, usage: dict | None = None) -> bytes:
    item: dict[str, Any] = {"text": text}
    if ocr_result is not None:
        item["ocr_result"] = ocr_result
    return json.dumps({
        "output": {"choices": [{"finish_reason": "stop", "message": {"role": "assistant", "content": [item]}}]},
        "usage": usage or {"input_tokens": 100, "output_tokens": 10, "image_tokens": 90, "total_tokens": 110},
        "request_id": "req-ok",
    }).encode()


def error_body(code: str, message: str, request_id: str = "req-err") -> bytes:
    return json.dumps({"code": code, "message": message, "request_id": request_id}).encode()


class StubServer:
    """Answers POSTs from a script of (status, headers, body) — the last entry repeats — and logs requests."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.script: list[tuple[int, dict[str, str], bytes]] = [(200, {"content-type": "application/json"}, ok_body())]
        self._lock = threading.Lock()
        self.delay: float = 0.0
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = None
                with stub._lock:
                    stub.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                    status, headers, payload = stub.script[0] if len(stub.script) == 1 else stub.script.pop(0)
                if stub.delay:
                    import time

                    time.sleep(stub.delay)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def respond(self, *entries: tuple[int, dict[str, str] | None, bytes]) -> None:
        with self._lock:
            self.script = [(s, h or {"content-type": "application/json"}, b) for s, h, b in entries]

    def start(self) -> StubServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
