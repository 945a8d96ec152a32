"""Shared server state: config, counters, auth, the fake OSS store, and the error type handlers raise.

Why errors are exceptions: every route (and the batch plug-in) can ``raise ApiError(...)`` from any depth
and one exception handler renders it in the right dialect — DashScope native
``{"code","message","request_id"}`` or OpenAI-compatible ``{"error":{...}}`` — chosen by the path, so the
two shapes never drift apart between routes.
"""

from __future__ import annotations

import threading
import uuid
from collections import defaultdict
from typing import Any

from qwenocr_emulator.config import EmulatorConfig

COMPATIBLE_PREFIX = "/compatible-mode/"

# OpenAI-compatible error "type" per HTTP status (what openai-style servers send).
_COMPAT_TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 403: "access_denied",
                 404: "invalid_request_error", 429: "requests", 500: "internal_error"}


class ApiError(Exception):
    """An HTTP error in DashScope terms; rendered by the app's exception handler."""

    def __init__(self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None,
                 param: str | None = None, compat_code: str | None = None):
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.param = param
        self.compat_code = compat_code  # code in the OpenAI-shaped body, when it differs

    def native_body(self, request_id: str) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "request_id": request_id}

    def compatible_body(self, request_id: str) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": _COMPAT_TYPES.get(self.status, "invalid_request_error"),
                "param": self.param,
                "code": self.compat_code if self.compat_code is not None else self.code,
            },
            "request_id": request_id,
        }

    def body_for(self, path: str, request_id: str) -> dict[str, Any]:
        return self.compatible_body(request_id) if path.startswith(COMPATIBLE_PREFIX) else self.native_body(request_id)


def invalid_parameter(message: str) -> ApiError:
    return ApiError(400, "InvalidParameter", message)


class StatusCounts(dict):
    """``{http_status: n}`` that also answers string keys, as the JSON form (/emulator/stats) has them."""

    def __missing__(self, key):
        if isinstance(key, str) and key.isdigit() and int(key) in self:
            return self[int(key)]
        raise KeyError(key)

    def get(self, key, default=None):
        try:
            return self[key]
        except KeyError:
            return default


class EmulatorState:
    """Everything the routes share. Thread-safe: OCR runs in worker threads."""

    def __init__(self, config: EmulatorConfig):
        self.config = config
        self._lock = threading.Lock()
        self._requests: dict[str, int] = defaultdict(int)
        self._by_status: dict[int, int] = defaultdict(int)
        self._ocr_calls = 0
        self._pdf_pages = 0
        self._tokens = {"input": 0, "output": 0, "image": 0}
        self.oss: dict[str, bytes] = {}  # "dashscope-instant/.../name.png" -> bytes (the SDK's file:// path)
        self.files: dict[str, dict] = {}  # native /api/v1/files uploads
        self.faults = None  # set by the app factory (emulator/faults.py)
        self.engine = None  # set by the app factory (emulator/engine.py)

    # -- counters ---------------------------------------------------------------------------------
    def count(self, kind: str, status: int) -> None:
        """Count one answered request of ``kind`` (e.g. "native", "compatible", "batches") with ``status``."""
        with self._lock:
            self._requests[kind] += 1
            self._by_status[int(status)] += 1

    def count_ocr(self, n: int = 1) -> None:
        with self._lock:
            self._ocr_calls += n

    def count_pdf_pages(self, n: int) -> None:
        """PDF pages opened for OCR (Responses API ``input_file``); a refused PDF counts none."""
        with self._lock:
            self._pdf_pages += n

    def add_usage(self, input_tokens: int, output_tokens: int, image_tokens: int) -> None:
        with self._lock:
            self._tokens["input"] += input_tokens
            self._tokens["output"] += output_tokens
            self._tokens["image"] += image_tokens

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": dict(self._requests),
                "ocr_calls": self._ocr_calls,
                "pdf_pages": self._pdf_pages,
                "by_status": StatusCounts(self._by_status),
                "tokens": dict(self._tokens),
                "oss_objects": len(self.oss),
            }

    def reset_stats(self) -> None:
        with self._lock:
            self._requests.clear()
            self._by_status.clear()
            self._ocr_calls = 0
            self._pdf_pages = 0
            self._tokens = {"input": 0, "output": 0, "image": 0}
        if self.faults is not None:
            self.faults.reset()

    # -- account ----------------------------------------------------------------------------------
    @property
    def account_state(self) -> str:
        """"ok" or the billing / free-tier state every inference call is refused with (faults.ACCOUNT_ERRORS)."""
        return self.config.account_state

    @account_state.setter
    def account_state(self, value: str) -> None:
        from qwenocr_emulator.config import ACCOUNT_STATES

        if value not in ACCOUNT_STATES:
            raise ValueError(f"state must be one of {', '.join(ACCOUNT_STATES)}")
        self.config.account_state = value

    # -- auth -------------------------------------------------------------------------------------
    def check_auth(self, request) -> None:
        """Raise the 401 the service sends (DashScope or OpenAI shape by path), or return None.

        Accepts ``Authorization: Bearer <key>`` (both SDKs) and ``X-DashScope-ApiKey``. Without a
        configured key any non-empty key passes; a missing key is always refused.
        """
        auth = request.headers.get("authorization", "")
        key = auth[7:].strip() if auth.lower().startswith("bearer ") else auth.strip()
        key = key or request.headers.get("x-dashscope-apikey", "").strip()
        compat = request.url.path.startswith(COMPATIBLE_PREFIX)
        if not key or (self.config.api_key is not None and key != self.config.api_key):
            if compat:
                raise ApiError(401, "invalid_api_key", "Incorrect API key provided. ", compat_code="invalid_api_key")
            raise ApiError(401, "InvalidApiKey", "Invalid API-key provided.")
        return None


def new_request_id() -> str:
    return str(uuid.uuid4())
