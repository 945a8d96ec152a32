"""The emulator's ASGI app: routes, the error handler, and the middleware that stamps service headers.

Why a pure ASGI middleware (not ``@app.middleware("http")``): it adds the headers the service sends on
every response (``x-request-id``, ``req-cost-time``, ``req-arrive-time``, ``resp-start-time``,
``x-envoy-upstream-service-time``, ``server: istio-envoy``) and counts requests per kind and status without
buffering bodies, so SSE streams flow and the echo engine keeps its ≥100 requests/s.
"""

from __future__ import annotations

import asyncio
import builtins
import json
import logging
import time

from fastapi import FastAPI, Request
from starlette.responses import Response

from qwenocr_emulator import batch as batch_plugin
from qwenocr_emulator.compatible import register_compatible_routes
from qwenocr_emulator.config import ACCOUNT_STATES, EmulatorConfig
from qwenocr_emulator.engine import make_engine
from qwenocr_emulator.faults import DropConnection, FaultInjector
from qwenocr_emulator.imagesrc import is_loopback
from qwenocr_emulator.native import register_native_routes
from qwenocr_emulator.responses import json_response
from qwenocr_emulator.responses_api import register_responses_routes
from qwenocr_emulator.respparse import RESPONSES_PATH
from qwenocr_emulator.state import ApiError, EmulatorState, new_request_id
from qwenocr_emulator.uploads import OSS_PATH, register_upload_routes

logger = logging.getLogger(__name__)
UNCOUNTED = ("/health", "/emulator/stats", "/emulator/reset", "/_emulator/account")
_GROUP = getattr(builtins, "BaseExceptionGroup", None)
BATCH_PREFIXES = ("/compatible-mode/v1/files", "/compatible-mode/v1/batches")


def request_kind(path: str) -> str | None:
    """Counter bucket for a path; None for health/stats and for batch routes (the plug-in counts those)."""
    if path in UNCOUNTED or path.startswith(BATCH_PREFIXES):
        return None
    if path == "/api/v1/services/aigc/multimodal-generation/generation":
        return "native"
    if path.startswith("/api/v1/services/"):
        return "native_other"
    if path == "/compatible-mode/v1/chat/completions":
        return "compatible"
    if path == RESPONSES_PATH:
        return "responses"
    if path == "/api/v1/uploads":
        return "upload_policy"
    if path == OSS_PATH:
        return "oss_upload"
    if path.startswith("/api/v1/files"):
        return "files"
    return "other"


class ServiceHeaders:
    def __init__(self, app, state: EmulatorState):
        self.app = app
        self.state = state

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        arrive = time.time()
        rid = new_request_id()
        scope.setdefault("state", {})
        scope["state"]["request_id"] = rid
        kind = request_kind(scope["path"])
        status_box = {}

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                start = time.time()
                cost = str(max(0, round((start - arrive) * 1000)))
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                extra = {
                    b"x-request-id": rid.encode(),
                    b"req-cost-time": cost.encode(),
                    b"req-arrive-time": str(int(arrive * 1000)).encode(),
                    b"resp-start-time": str(int(start * 1000)).encode(),
                    b"x-envoy-upstream-service-time": cost.encode(),
                    b"server": b"istio-envoy",
                }
                headers += [(k, v) for k, v in extra.items() if k not in names]
                message = {**message, "headers": headers}
                status_box["status"] = message["status"]
                if kind is not None:  # counted before the client can see the answer, so stats never lag it
                    self.state.count(kind, 0 if scope["state"].get("dropped") else message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception as exc:
            if "status" in status_box:  # started (e.g. a deliberate DropConnection): let the server close it
                raise
            # A bug in a handler: answer like the service (JSON InternalError), so SDKs see a 5xx they retry
            # and a request id, not a bare text/plain 500.
            logger.exception("unhandled error in %s", scope["path"])
            body = json.dumps({"code": "InternalError", "message": f"emulator error: {type(exc).__name__}",
                               "request_id": rid}).encode()
            await send_wrapper({"type": "http.response.start", "status": 500,
                                "headers": [(b"content-type", b"application/json"),
                                            (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})


class _DropFilter(logging.Filter):
    """Keep deliberate dropped connections (--fail-rate-timeout) and requests cancelled by shutdown (a held
    timeout request outlives the graceful-shutdown window) out of the server's error log."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        for _ in range(10):
            if exc is None:
                return True
            if isinstance(exc, (DropConnection, asyncio.CancelledError)):  # deliberate drops; shutdown
                return False
            if _GROUP is not None and isinstance(exc, _GROUP) and exc.exceptions:
                exc = exc.exceptions[0]
            else:
                exc = exc.__cause__ or exc.__context__
        return True


def create_app(config: EmulatorConfig | None = None, *, state: EmulatorState | None = None) -> FastAPI:
    state = state or EmulatorState(config or EmulatorConfig())
    state.faults = state.faults or FaultInjector(state.config)
    state.engine = state.engine or make_engine(state.config.engine)
    for name in ("uvicorn.error", "uvicorn"):
        logging.getLogger(name).addFilter(_DropFilter())

    app = FastAPI(title="DashScope emulator (Qwen-VL-OCR)", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.emulator = state

    @app.exception_handler(ApiError)
    async def api_error(request: Request, err: ApiError) -> Response:
        rid = request.state.request_id
        return json_response(err.body_for(request.url.path, rid), err.status, request_id=rid,
                             headers={**err.headers, "x-dashscope-call-gateway": "true"})

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "engine": state.config.engine}

    @app.get("/emulator/stats")
    async def stats() -> dict:
        return state.stats()

    @app.post("/emulator/reset")
    async def reset() -> dict:
        state.reset_stats()
        return {"status": "ok"}

    def _admin_only(request: Request) -> None:
        """Admin endpoints answer loopback clients only: the emulator may listen on 0.0.0.0 for a demo."""
        client = request.client.host if request.client else None
        if not is_loopback(client):
            raise ApiError(403, "AccessDenied", "The emulator's admin endpoints answer loopback clients only.")

    @app.get("/_emulator/account")
    async def get_account(request: Request) -> dict:
        _admin_only(request)
        return {"state": state.account_state, "states": list(ACCOUNT_STATES)}

    @app.post("/_emulator/account")
    async def set_account(request: Request) -> dict:
        """Switch the account state at runtime: ``{"state": "ok" | "arrearage" | ...}``."""
        _admin_only(request)
        try:
            body = await request.json()
            state.account_state = body["state"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ApiError(400, "InvalidParameter",
                           f'send {{"state": one of {", ".join(ACCOUNT_STATES)}}} ({type(exc).__name__})') from None
        return {"state": state.account_state}

    register_native_routes(app, state)
    register_compatible_routes(app, state)
    register_responses_routes(app, state)
    register_upload_routes(app, state)
    batch_plugin.register_batch_routes(app, state)
    app.add_middleware(ServiceHeaders, state=state)
    return app
