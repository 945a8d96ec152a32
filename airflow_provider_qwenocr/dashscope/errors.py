"""Typed DashScope errors and the one place that decides what is worth retrying.

Why a classifier and not ``if status == 429`` scattered around: the dashscope SDK does not raise on HTTP
errors (it returns a response with ``status_code != 200``), the OpenAI-compatible endpoints put the same
codes in another shape, and transport failures arrive as ``requests`` exceptions. Every path funnels
into :func:`classify`, so the retry policy (tenacity, in ``retry.py``) only has to look at the type:

- :class:`RetryableError` — throttling (429 ``Throttling*``), any 5xx, 408, timeouts, dropped connections.
  Trying again later can succeed.
- :class:`PermanentError` — the request itself is wrong for this image (``InvalidParameter*``,
  ``DataInspectionFailed``, ``BadRequest.*``, 413, other 4xx): retrying re-bills nothing useful, so the
  image becomes an error row at once.
- :class:`AccountError` — a permanent error that also dooms every other image in the task: the key or the
  account behind it cannot call the service (``InvalidApiKey`` / HTTP 401, ``Arrearage``, the billing
  states that arrive as HTTP 429 — ``PrepaidBillOverdue``, ``PostpaidBillOverdue``,
  ``CommodityNotPurchased`` — and 403 ``AllocationQuota.FreeTierOnly``). No retry fixes these, so callers
  stop the whole task at once, leave the remaining images unbilled and undone for the re-run, and say
  what to fix (:attr:`AccountError.hint`). :class:`InvalidApiKeyError` is the key-specific subclass.
  Only ``Throttling*`` codes (and 5xx, timeouts, connection errors) are retried; a 429 with any other
  code is not throttling.

The same table serves every shape the service writes errors in (:func:`classify_body`): native bodies,
compatible-mode ``{"error": {...}}`` bodies (incl. 404 ``model_not_found``, a per-request error), the
``openai`` SDK's exceptions (:func:`from_openai_error`), Batch error-file lines, and the data of an SSE
``event:error`` frame (HTTP 200 outside, ``:HTTP_STATUS/429`` + ``Throttling.RateQuota`` inside: retried).

No field of an error carries the API key: :func:`redact` scrubs every known key, any ``sk-…`` token and
``Authorization`` values from code, message and request id when the error is made.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Any

#: Codes that mean "this key or account cannot call the service at all": stop the task, with what to do.
ACCOUNT_CODES: dict[str, str] = {
    "InvalidApiKey": "check the API key in the connection's password (it must belong to the connection's region)",
    "Arrearage": "the account is overdue: top up in the Alibaba Cloud billing console, then re-run",
    "PrepaidBillOverdue": "the prepaid balance is exhausted: top up in the billing console, then re-run",
    "PostpaidBillOverdue": "the postpaid bill is overdue: settle it in the billing console, then re-run",
    "CommodityNotPurchased": "the model is not activated for this account: activate it in Model Studio, then re-run",
    "AllocationQuota.FreeTierOnly": "the free tier is used up and 'free tier only' is on: turn it off in Model "
                                    "Studio (or wait for the quota to renew), then re-run",
}
#: The HTTP status the service documents for a code (reference §3, §9): where a status was lost — the SDK
#: reports every SSE ``event:error`` frame as 400 — the code still says what the service answered.
DOCUMENTED_STATUS: dict[str, int] = {
    "InvalidApiKey": 401, "Arrearage": 400, "PrepaidBillOverdue": 429, "PostpaidBillOverdue": 429,
    "CommodityNotPurchased": 429, "AllocationQuota.FreeTierOnly": 403,
}
THROTTLING_PREFIX = "Throttling"
RETRYABLE_CODES = frozenset({"RequestTimeOut", "InternalError", "ServiceUnavailable", "RequestTimeout"})

_SK = re.compile(r"sk-[A-Za-z0-9_\-]{4,}")
_BEARER = re.compile(r"(?i)(bearer\s+)[^\s'\"]+")
_AUTHORIZATION = re.compile(r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?)[^'\",}\s]+(\s+[^'\",}\s]+)?")
#: Shorter strings are not treated as keys (a DashScope key is 35 characters): a test key such as "k" would
#: otherwise turn every "k" of every message and error code into "***".
MIN_SECRET_LENGTH = 8
_SECRETS: set[str] = set()


def register_secret(secret: str | None) -> None:
    """Remember a key so that :func:`redact` scrubs it from every text from now on (this process)."""
    if secret and len(secret) >= MIN_SECRET_LENGTH:
        _SECRETS.add(secret)


def redact(text: Any, secret: str | None = None) -> str:
    """``text`` as a string with every known key, anything that looks like a DashScope key, and
    ``Authorization``/Bearer values replaced by ***.

    The one redaction rule: error fields (:class:`QwenOcrError`), result rows and every log line our
    loggers write (``dashscope.config.SecretFilter``) go through it. Known keys are ``secret`` and every
    key registered with :func:`register_secret` (each connection's key, when its config is built), also in
    the escaped form a ``repr`` would print.
    """
    s = "" if text is None else str(text)
    for key in (secret, *_SECRETS):
        if key and len(key) >= MIN_SECRET_LENGTH:
            s = s.replace(key, "***").replace(repr(key)[1:-1], "***")
    s = _SK.sub("sk-***", s)
    s = _AUTHORIZATION.sub(r"\1***", s)
    return _BEARER.sub(r"\1***", s)


class QwenOcrError(Exception):
    """An error from (or on the way to) DashScope, with the service's code and request id when known."""

    retryable = False

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status_code: int | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        # every field a server wrote may echo the key (seen: a key in ``code`` and ``request_id``); they go
        # to rows, XCom and logs from here, so they are scrubbed once, where the error is made
        self.code = redact(code or type(self).__name__)
        self.message = redact(message)
        self.status_code = status_code
        self.request_id = None if request_id is None else redact(request_id)
        self.retry_after = retry_after
        super().__init__(self.__str__())

    def __str__(self) -> str:
        parts = [f"{self.code}: {self.message}"]
        if self.status_code is not None:
            parts.append(f"(HTTP {self.status_code}")
            parts[-1] += f", request_id {self.request_id})" if self.request_id else ")"
        return " ".join(parts)

    def __reduce__(self):  # keep keyword fields across pickling (Airflow ships exceptions between processes)
        return (_rebuild, (type(self), self.message, self.code, self.status_code, self.request_id, self.retry_after))

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


def _rebuild(cls, message, code, status_code, request_id, retry_after):
    return cls(message, code=code, status_code=status_code, request_id=request_id, retry_after=retry_after)


class RetryableError(QwenOcrError):
    """Transient: throttled, server error, timeout, connection dropped. Retried with backoff."""

    retryable = True


class PermanentError(QwenOcrError):
    """This request will not succeed as sent. The image fails at once with an error row."""


class AccountError(PermanentError):
    """The key or the account behind it cannot call the service: stop the whole task, not just this image."""

    @property
    def hint(self) -> str:
        """What the user has to do before a re-run can succeed."""
        return ACCOUNT_CODES.get(self.code, "check the DashScope account and key, then re-run")


class InvalidApiKeyError(AccountError):
    """The key itself is wrong (HTTP 401 ``InvalidApiKey``, or no key at all)."""


def documented_status(code: str | None) -> int | None:
    """The HTTP status the service documents for ``code`` (every ``Throttling*`` code is a 429), else None."""
    if not code:
        return None
    if code.startswith(THROTTLING_PREFIX):
        return 429
    return DOCUMENTED_STATUS.get(code)


def parse_retry_after(headers: Mapping[str, Any] | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP date); None when absent or unreadable."""
    if not headers:
        return None
    value = None
    for k, v in headers.items():
        if str(k).lower() == "retry-after":
            value = v
            break
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except (TypeError, ValueError):
        pass
    try:
        import datetime as _dt

        when = parsedate_to_datetime(str(value))
        return max(0.0, (when - _dt.datetime.now(when.tzinfo)).total_seconds())
    except (TypeError, ValueError, IndexError):
        return None


def error_class(status_code: int | None, code: str | None, *, answered: bool = False) -> type[QwenOcrError]:
    """Which exception type an HTTP status + DashScope code maps to (the retry policy in one table).

    ``answered``: the service did answer, only without an HTTP status of its own (a Batch error line):
    then a missing status is not transport trouble, and the code alone decides.
    """
    code = code or ""
    if code == "InvalidApiKey" or status_code == 401:
        return InvalidApiKeyError
    if code in ACCOUNT_CODES:
        return AccountError
    if code.startswith(THROTTLING_PREFIX) or code in RETRYABLE_CODES or code.startswith("InternalError"):
        return RetryableError
    if status_code is None:
        return PermanentError if answered else RetryableError  # no HTTP answer at all: transport trouble
    if status_code in (408, 429) or status_code >= 500:
        return RetryableError
    return PermanentError


def classify(
    status_code: int | None,
    code: str | None,
    message: Any,
    *,
    request_id: str | None = None,
    headers: Mapping[str, Any] | None = None,
    secret: str | None = None,
    answered: bool = False,
) -> QwenOcrError:
    """The typed exception for one failed response (not raised: the caller decides)."""
    cls = error_class(status_code, code, answered=answered)
    if not code or code == "Unknown":
        code = {401: "InvalidApiKey", 408: "RequestTimeOut", 413: "BadRequest.TooLarge", 429: "Throttling"}.get(
            status_code or 0,
            f"HTTP{status_code}" if status_code else ("BatchRequestError" if answered else "ConnectionError"),
        )
    text = redact(message, secret) or "(no message)"
    if len(text) > 500:
        text = text[:500] + "…"
    return cls(text, code=redact(code, secret), status_code=status_code,
               request_id=redact(request_id, secret) if request_id else None, retry_after=parse_retry_after(headers))


def error_fields(body: Any) -> tuple[str | None, str | None, str | None]:
    """(code, message, request_id) from any error body the service writes.

    Native: ``{"code", "message", "request_id"}`` (also the data of an SSE ``event:error`` frame).
    Compatible mode and Batch lines: ``{"error": {"code", "message", "type", "param"}}`` — ``code`` may be
    null there (then ``type``, e.g. ``invalid_request_error``, is the best name we have). A Batch error-file
    line nests it under ``response.body`` or puts it in the line's own ``error``. A JSON string is parsed.
    """
    if isinstance(body, (bytes, str)):
        import json

        try:
            body = json.loads(body)
        except ValueError:
            return None, (body.decode("utf-8", "replace") if isinstance(body, bytes) else body) or None, None
    if not isinstance(body, dict):
        return None, None if body is None else str(body), None
    request_id = body.get("request_id")
    response = body.get("response")
    if isinstance(response, dict):  # a Batch output/error-file line
        request_id = response.get("request_id") or request_id
        inner = body.get("error") or response.get("body")
        code, message, rid = error_fields(inner)
        return code, message, rid or request_id
    err = body.get("error")
    if isinstance(err, dict):
        code = err.get("code") or err.get("type")
        return (None if code is None else str(code)), err.get("message"), err.get("request_id") or request_id
    if isinstance(err, str):
        return None, err, request_id
    code = body.get("code")
    return (None if code is None else str(code)), body.get("message"), request_id


def classify_body(
    status_code: int | None,
    body: Any,
    *,
    headers: Mapping[str, Any] | None = None,
    secret: str | None = None,
    answered: bool = False,
) -> QwenOcrError:
    """:func:`classify` for a raw error body of any endpoint (native, compatible, Batch line, SSE frame)."""
    code, message, request_id = error_fields(body)
    return classify(status_code, code, message, request_id=request_id, headers=headers, secret=secret,
                    answered=answered)


def from_openai_error(exc: BaseException, *, secret: str | None = None) -> QwenOcrError | None:
    """The typed error for an ``openai`` SDK exception (compatible mode: Batch, files), or None if it is
    not one. Status errors keep the service's code (``Throttling.RateQuota``, ``PrepaidBillOverdue``,
    ``model_not_found`` …) so they are classified exactly as native errors are."""
    try:
        import openai
    except ImportError:  # pragma: no cover - openai comes with the provider
        return None
    if isinstance(exc, openai.APITimeoutError):
        return RetryableError(redact(f"{type(exc).__name__}: {exc}", secret), code="RequestTimeOut")
    if isinstance(exc, openai.APIConnectionError):
        return RetryableError(redact(f"{type(exc).__name__}: {exc}", secret), code="ConnectionError")
    if isinstance(exc, openai.APIStatusError):
        response = getattr(exc, "response", None)
        body: Any = getattr(exc, "body", None)
        if isinstance(body, dict) and "error" not in body and "code" not in body:
            body = {"error": body}  # openai hands over the inner "error" object
        try:
            raw = response.json() if response is not None else None
        except ValueError:
            raw = None
        code, message, request_id = error_fields(raw if raw is not None else body)
        request_id = request_id or getattr(exc, "request_id", None)
        return classify(exc.status_code, code, message or str(exc), request_id=request_id,
                        headers=getattr(response, "headers", None), secret=secret)
    return None


def from_exception(exc: BaseException, *, secret: str | None = None) -> QwenOcrError:
    """Map a transport exception (requests / urllib3 / socket / SDK client-side) to a typed error."""
    if isinstance(exc, QwenOcrError):
        return exc
    name = type(exc).__name__
    text = redact(exc, secret) or name  # the code names the kind; "ConnectionError: ConnectionError: …" helps nobody
    try:
        import requests

        if isinstance(exc, requests.exceptions.Timeout):
            return RetryableError(text, code="RequestTimeOut")
        if isinstance(exc, requests.exceptions.ConnectionError):
            return RetryableError(text, code="ConnectionError")
        if isinstance(exc, requests.exceptions.ChunkedEncodingError):
            return RetryableError(text, code="ConnectionError")
    except ImportError:  # pragma: no cover - requests comes with dashscope
        pass
    if isinstance(exc, (TimeoutError, ConnectionError)):
        return RetryableError(text, code="RequestTimeOut" if isinstance(exc, TimeoutError) else "ConnectionError")
    if name == "AuthenticationError":  # dashscope: no key configured
        return InvalidApiKeyError(text, code="InvalidApiKey")
    return PermanentError(text, code=name)


class ServiceUnavailableError(QwenOcrError):
    """The circuit breaker opened: the service is unreachable or keeps failing for every image.

    Not retryable and not an image's fault: callers stop the task without writing error rows for the
    images not yet done (they were never sent; a re-run picks them up)."""

    def __init__(self, message: str, **kwargs) -> None:
        kwargs.setdefault("code", "ServiceUnavailable")
        super().__init__(message, **kwargs)


# -- messages people read (exception text without reprs, file names that always encode) ---------------
# Error rows and log lines are what a user reads the morning after a failed night. Pillow says
# ``cannot identify image file <_io.BytesIO object at 0x7f…>``, transport errors nest their type name twice,
# and a file name that is not valid UTF-8 cannot even be written to a UTF-8 results file.

_REPR = re.compile(r"\s*<[\w.]+ object at 0x[0-9a-fA-F]+>")
_ADDRESS = re.compile(r"\s*at 0x[0-9a-fA-F]{6,}")


def readable(name: str | bytes) -> str:
    """A file name or URI as text that always encodes to UTF-8: undecodable bytes shown as ``\\xNN``."""
    raw = os.fsencode(name) if isinstance(name, str) else bytes(name)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("utf-8", "backslashreplace")


def describe(exc: BaseException) -> str:
    """``exc`` as one clean line: its message (or its type name when empty), object reprs and memory
    addresses removed, a leading repeated ``Type: Type:`` collapsed. Callers put the error code in front."""
    name = type(exc).__name__
    text = _ADDRESS.sub("", _REPR.sub("", str(exc))).strip()
    while text.startswith(f"{name}: {name}: "):
        text = text[len(name) + 2:]
    return readable(" ".join(text.split())) if text else name
