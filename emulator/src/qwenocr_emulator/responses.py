"""Response builders shared by the routes: JSON with the service's headers, SSE events, dropped sockets.

Why here: the SDKs read specific things — ``content-type`` containing ``application/json`` (else the
dashscope SDK reports code "Unknown"), ``x-request-id`` equal to the body's ``request_id``, SSE events as
``id:``/``event:``/``:HTTP_STATUS/``/``data:`` lines — and every route must produce them the same way.
The timing headers (req-cost-time, ...) are added for every response by the app's ASGI middleware.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable
from typing import Any

from starlette.responses import JSONResponse, Response, StreamingResponse

from qwenocr_emulator.faults import DropConnection

NATIVE_HEADERS = {"x-dashscope-call-gateway": "true", "x-dashscope-timeout": "298"}


def json_response(body: dict[str, Any], status: int = 200, *, request_id: str | None = None,
                  headers: dict[str, str] | None = None, media_type: str = "application/json") -> Response:
    hdrs = dict(headers or {})
    if request_id:
        hdrs["x-request-id"] = request_id
    return JSONResponse(body, status_code=status, headers=hdrs, media_type=media_type)


def sse_event(event_id: int, data: dict[str, Any], *, event: str = "result", status: int = 200) -> str:
    return (f"id:{event_id}\nevent:{event}\n:HTTP_STATUS/{status}\n"
            f"data:{json.dumps(data, ensure_ascii=False, separators=(',', ':'))}\n\n")


def sse_response(events: Iterable[str] | AsyncIterator[str], *, request_id: str) -> Response:
    headers = {**NATIVE_HEADERS, "x-request-id": request_id, "x-dashscope-finished": "false",
               "cache-control": "no-cache", "x-accel-buffering": "no"}
    return StreamingResponse(events, media_type="text/event-stream;charset=UTF-8", headers=headers)


async def _drop() -> AsyncIterator[bytes]:
    raise DropConnection()
    yield b""  # pragma: no cover - makes this an async generator


def dropped_response() -> Response:
    """Starts a response and then fails it, so the server closes the socket without a complete answer."""
    return StreamingResponse(_drop(), media_type="application/json")
