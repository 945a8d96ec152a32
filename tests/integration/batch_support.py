"""Test support for the batch tests: a loopback server with the batch routes, and small helpers.

Uses the real ``EmulatorServer`` when the emulator package provides it; until then (or with
``QWENOCR_BATCH_STANDIN=1``) a minimal stand-in app mounts the same ``register_batch_routes`` with a
deterministic answer function (echoes the image size; pure-red images fail ``DataInspectionFailed``, the
emulator's documented mechanism), so the batch lifecycle is exercised either way.
"""

from __future__ import annotations

import io
import json
import os
import threading
import time
import types
from typing import Any

from PIL import Image, ImageDraw

from airflow_provider_qwenocr.ocr.images import decode_data_url

API_KEY = "sk-test-emulator"


def png(text: str, size=(200, 64), color=(255, 255, 255)) -> bytes:
    img = Image.new("RGB", size, color)
    ImageDraw.Draw(img).text((8, 24), text, fill=(0, 0, 0))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def red_png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (255, 0, 0)).save(buf, "PNG")
    return buf.getvalue()


def _echo_answer(state: Any, body: dict) -> tuple[int, dict]:
    content = body["messages"][0]["content"]
    url = next(p["image_url"]["url"] for p in content if p.get("type") == "image_url")
    _, data = decode_data_url(url)
    img = Image.open(io.BytesIO(data)).convert("RGB")
    small = img.resize((1, 1), Image.Resampling.BOX).getpixel((0, 0))
    if small[0] > 240 and small[1] < 15 and small[2] < 15:
        return 400, {"error": {"code": "DataInspectionFailed", "message": "Input data may contain inappropriate "
                               "content.", "type": "invalid_request_error", "param": None}}
    state.ocr_calls += 1
    text = f"echo {img.width}x{img.height}"
    return 200, {"id": "chatcmpl-x", "object": "chat.completion", "created": int(time.time()),
                 "model": body.get("model"), "choices": [{"index": 0, "finish_reason": "stop",
                 "message": {"role": "assistant", "content": text}}],
                 "usage": {"prompt_tokens": 100, "completion_tokens": 5, "total_tokens": 105}}


class StandInServer:
    def __init__(self, *, batch_seconds: float = 1.0, batch_outcome: str = "complete", api_key: str | None = None,
                 **_: Any) -> None:
        import uvicorn
        from fastapi import FastAPI
        from fastapi.responses import JSONResponse

        from airflow_provider_qwenocr.emulator.batch import register_batch_routes

        app = FastAPI()
        counts: dict[str, int] = {}

        def check_auth(request):
            auth = request.headers.get("authorization", "")
            key = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
            if not key or (api_key is not None and key != api_key):
                return JSONResponse({"error": {"message": "Incorrect API key provided.", "type":
                                     "invalid_request_error", "param": None, "code": "invalid_api_key"}}, 401)
            return None

        def count(kind: str, status: int) -> None:
            counts[f"{kind}:{status}"] = counts.get(f"{kind}:{status}", 0) + 1

        self.state = types.SimpleNamespace(config={"batch_seconds": batch_seconds, "batch_outcome": batch_outcome},
                                           check_auth=check_auth, count=count, ocr_calls=0)
        self.counts = counts
        self.store = register_batch_routes(app, self.state, answer=_echo_answer)

        @app.get("/health")
        async def health():
            return {"status": "ok"}

        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def start(self) -> StandInServer:
        self._thread.start()
        deadline = time.time() + 20
        while not (self._server.started and self._server.servers):
            if time.time() > deadline:
                raise RuntimeError("stand-in batch server did not start")
            time.sleep(0.02)
        port = self._server.servers[0].sockets[0].getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}"
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)

    def batch_creations(self) -> int:
        return len(self.store.batches)

    def file_uploads(self) -> int:
        return sum(1 for f in self.store.files.values() if f["purpose"] == "batch")


def start_server(**knobs: Any):
    """The real emulator when it is there (``engine="echo"`` unless given), else the stand-in."""
    if not os.environ.get("QWENOCR_BATCH_STANDIN"):
        try:
            from airflow_provider_qwenocr.emulator.server import EmulatorServer
        except ImportError:
            EmulatorServer = None  # noqa: N806
        if EmulatorServer is not None:
            knobs.setdefault("engine", "echo")
            srv = EmulatorServer(host="127.0.0.1", port=0, **knobs).start()
            srv.batch_creations = lambda: _count_batches(srv)  # type: ignore[attr-defined]
            srv.file_uploads = lambda: _count_uploads(srv)  # type: ignore[attr-defined]
            return srv
    knobs.pop("engine", None)
    return StandInServer(**knobs).start()


def _store(srv):
    state = getattr(srv, "state", None) or getattr(getattr(srv, "app", None), "state", None)
    store = getattr(state, "batch_store", None)
    if store is None:
        raise RuntimeError("cannot reach the emulator's batch store")
    return store


def _count_batches(srv) -> int:
    return len(_store(srv).batches)


def _count_uploads(srv) -> int:
    return sum(1 for f in _store(srv).files.values() if f["purpose"] == "batch")


def conn_env(base_url: str) -> str:
    return json.dumps({"conn_type": "dashscope", "password": API_KEY, "host": base_url})


class FakeTI:
    """Records xcom_push calls the way the operator makes them."""

    def __init__(self) -> None:
        self.xcom: dict[str, Any] = {}
        self.run_id = "manual__test"

    def xcom_push(self, key: str, value: Any, **_: Any) -> None:
        self.xcom[key] = value


def wait_status(hook, batch_id: str, statuses: set[str], timeout: float = 30.0) -> dict:
    deadline = time.time() + timeout
    while True:
        batch = hook.get_batch(batch_id)
        if batch["status"] in statuses:
            return batch
        if time.time() > deadline:
            raise AssertionError(f"batch {batch_id} stuck in {batch['status']}")
        time.sleep(0.1)
