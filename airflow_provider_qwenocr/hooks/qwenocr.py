"""QwenOcrHook: DashScope credentials as an Airflow connection, and realtime OCR calls.

Thin on purpose: the connection becomes a :class:`ClientConfig`; HTTP, retries, rate limits and parsing
live in ``dashscope/`` and ``ocr/`` (no Airflow there), so they are tested without Airflow and reused by
the emulator tests and benchmarks. Batch methods come from :class:`BatchHookMixin`.

The connection form is declared twice on purpose: as ``conn-fields`` in ``get_provider_info`` (read by
Airflow 3.2+ without importing this module) and as :meth:`get_connection_form_widgets` (read by 2.10–3.1
through flask-appbuilder/wtforms, which Airflow 3 no longer ships — then the method returns ``{}``).
A unit test keeps the two in agreement.

Secrets: the key is stripped of surrounding whitespace (a key pasted with a trailing newline once made
``requests`` reject the header and the dashscope SDK log it, twice, in the task log). On top of that
the hook installs :class:`SecretFilter` on the loggers of the SDKs under it (``dashscope``, ``openai``,
``httpx``, ``urllib3``, ``requests``), on ours and on the task log's handlers, and keeps the SDKs' own
loggers at WARNING or above (``dashscope`` at CRITICAL: see :func:`protect_secret`): any record that
still carries the key or an ``Authorization`` value is redacted before a handler writes it.
"""

from __future__ import annotations

import io
import logging
import re
from functools import cached_property
from typing import Any

from airflow_provider_qwenocr._compat import BaseHook
from airflow_provider_qwenocr.dashscope.config import ClientConfig, normalise_root
from airflow_provider_qwenocr.get_provider_info import CONN_FIELDS, CONN_TYPE, DEFAULT_CONN_ID, UI_FIELD_BEHAVIOUR
from airflow_provider_qwenocr.hooks.batch import BatchHookMixin

log = logging.getLogger(__name__)

#: Loggers that may see a request's headers: the filter goes on each (a filter on a logger applies to
#: records created on that logger, so child loggers are listed too).
SECRET_LOGGERS = ("dashscope", "dashscope.api_entities", "dashscope.api_entities.http_request", "openai",
                  "openai._base_client", "httpx", "httpcore", "urllib3", "urllib3.connectionpool", "requests",
                  "airflow_provider_qwenocr")
_SDK_LOGGERS = ("dashscope", "openai", "httpx", "httpcore", "urllib3")


class SecretFilter(logging.Filter):
    """Redacts API keys and ``Authorization``/Bearer values from log records (message, args, traceback)."""

    def __init__(self) -> None:
        super().__init__("qwenocr-secrets")
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        from airflow_provider_qwenocr.dashscope.errors import redact

        try:
            text = record.getMessage()
        except Exception:
            return True
        clean = self._clean(text, redact)
        if record.exc_info and record.exc_info[1] is not None:
            import traceback

            clean += "\n" + self._clean("".join(traceback.format_exception(*record.exc_info)), redact).rstrip()
            record.exc_info = None
            record.exc_text = None
        record.msg, record.args = clean, ()
        return True

    def _clean(self, text: str, redact) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***").replace(repr(secret)[1:-1], "***")
        text = re.sub(r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?)[^'\",}\s]+(\s+[^'\",}\s]+)?", r"\1***", text)
        return redact(text)


_SECRET_FILTER = SecretFilter()


def protect_secret(secret: str | None) -> None:
    """Install the redacting filter on every logger that could print ``secret`` (idempotent)."""
    if secret:
        _SECRET_FILTER.secrets.add(secret)
    for name in SECRET_LOGGERS:
        logger = logging.getLogger(name)
        if _SECRET_FILTER not in logger.filters:
            logger.addFilter(_SECRET_FILTER)
    # records of child loggers (``airflow_provider_qwenocr.runs.realtime`` …) skip their ancestors' filters but
    # not the handlers': the task log's handlers get the filter too
    for name in ("", "airflow.task", "airflow"):
        for handler in logging.getLogger(name).handlers:
            if _SECRET_FILTER not in handler.filters:
                handler.addFilter(_SECRET_FILTER)
    for name in _SDK_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET or logger.level < logging.WARNING:
            logger.setLevel(logging.WARNING)  # their DEBUG lines print request headers and bodies
    # dashscope logs every failed request with a full traceback ("Request failed") before raising it to
    # us; we report each one ourselves (retry line, error row), so its copy is noise — and it is the log
    # line that once carried the Authorization header
    sdk = logging.getLogger("dashscope")
    if sdk.level < logging.CRITICAL:
        sdk.setLevel(logging.CRITICAL)



_LOOPBACK = ("localhost", "127.", "[::1]", "::1")


def connection_root(host: str | None, port: int | str | None = None, schema: str | None = None) -> str | None:
    """The base URL root from a connection's host, port and schema; None = the region's endpoint.

    The form's Base URL (``http://127.0.0.1:8765``) is taken as it is. A URI-style connection
    (``dashscope://:KEY@host:port``, e.g. ``AIRFLOW_CONN_...``) arrives split into host and port, without
    a scheme: the port is kept, and the scheme is the connection's schema when that is ``http`` or
    ``https`` (``dashscope://:KEY@host:port/http``, as Airflow's HTTP connections spell it), else ``http``
    for a loopback host (the emulator) and ``https`` for any other.
    """
    if not host or not str(host).strip():
        return None
    host = str(host).strip()
    if "://" not in host:
        hint = (schema or "").strip().lower()
        scheme = hint if hint in ("http", "https") else "http" if host.startswith(_LOOPBACK) else "https"
        host = f"{scheme}://{host}"
    if port not in (None, ""):
        from urllib.parse import urlsplit

        parts = urlsplit(host)
        if parts.port is None:
            host = parts._replace(netloc=f"{parts.netloc}:{int(port)}").geturl()
    return normalise_root(host)


class QwenOcrHook(BatchHookMixin, BaseHook):
    """Talks to Alibaba Model Studio (DashScope) with the key and endpoint of an Airflow connection.

    :param conn_id: connection of type ``dashscope`` (password = API key, host = optional base URL root).
    :param max_concurrency: threads expected to call :meth:`recognize` at once (sizes the HTTP pool).
    """

    conn_name_attr = "conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = CONN_TYPE
    hook_name = "DashScope (Qwen-VL-OCR)"

    def __init__(self, conn_id: str = DEFAULT_CONN_ID, *, max_concurrency: int = 64,
                 circuit_breaker_failures: int | None = None, circuit_breaker_seconds: float | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.conn_id = conn_id
        self.max_concurrency = max_concurrency
        self.circuit_breaker_failures = circuit_breaker_failures
        self.circuit_breaker_seconds = circuit_breaker_seconds

    # -- connection form ----------------------------------------------------------------------------

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return UI_FIELD_BEHAVIOUR

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """The extra fields for the Airflow 2.x / 3.0–3.1 connection form (same keys as ``conn-fields``)."""
        try:
            from flask_appbuilder.fieldwidgets import BS3TextFieldWidget
            from flask_babel import lazy_gettext
            from wtforms import IntegerField, StringField
            from wtforms.validators import AnyOf, NumberRange, Optional
        except ImportError:  # Airflow 3 without the FAB provider: conn-fields serve the form
            return {}
        widgets: dict[str, Any] = {}
        for name, spec in CONN_FIELDS.items():
            schema = spec["schema"]
            types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
            label, desc = lazy_gettext(spec["label"]), spec.get("description", "")
            if schema.get("enum"):  # Airflow 2's form takes no SelectField: text, prefilled, checked on save
                choices = list(schema["enum"])
                widgets[name] = StringField(label, description=f"{desc} One of: {', '.join(choices)}.",
                                            default=schema.get("default"), validators=[AnyOf(choices)],
                                            widget=BS3TextFieldWidget())
            elif "integer" in types:
                widgets[name] = IntegerField(label, description=desc, validators=[Optional(), NumberRange(min=1)],
                                             widget=BS3TextFieldWidget())
            else:  # strings, and numbers typed as text (wtforms' FloatField rejects "" in some versions)
                widgets[name] = StringField(label, description=desc, widget=BS3TextFieldWidget())
        return widgets

    # -- config and client --------------------------------------------------------------------------

    @cached_property
    def config(self) -> ClientConfig:
        conn = self.get_connection(self.conn_id)
        extra = conn.extra_dejson or {}

        def _num(key: str, cast):
            value = extra.get(key)
            return None if value in (None, "") else cast(value)

        kwargs: dict[str, Any] = {}
        for key, cast in (("max_retries", int), ("max_retry_seconds", float)):
            if _num(key, cast) is not None:
                kwargs[key] = _num(key, cast)
        api_key = (conn.password or extra.get("api_key") or "").strip()  # a pasted key often ends in "\n"
        protect_secret(api_key)
        return ClientConfig(
            api_key=api_key,
            base_url=connection_root(conn.host, conn.port, conn.schema),
            region=extra.get("region") or "cn-beijing",
            workspace_id=extra.get("workspace_id") or None,
            default_model=extra.get("default_model") or "qwen-vl-ocr",
            timeout=_num("timeout", float) or 120.0,
            rpm=_num("rpm", int),
            tpm=_num("tpm", int),
            **kwargs,
        )

    def model_spec(self, model: str | None = None):
        """The catalogue entry (patch size, limits, quotas, prices) for ``model`` or the connection's default."""
        from airflow_provider_qwenocr.ocr.models import get_model

        return get_model(model or self.config.default_model)

    @cached_property
    def limiter(self):
        """One RPM/TPM budget per hook: the connection's ``rpm``/``tpm``, else the default model's quota.

        With the extra ``limiter_path`` (a file path on the worker host), every process on that host using
        the connection draws from one shared budget (SQLite GCRA state; see ``dashscope/limits.py``).
        With ``limiter_conn_id`` (a Redis or Postgres connection), every process on every host does; the
        state is keyed by a hash of the API key and endpoint. ``limiter_expected_workers`` (default 4) and
        ``limiter_wait_seconds`` (default 15) set the fallback when that store is lost.
        """
        from airflow_provider_qwenocr.dashscope.limit_stores import account_key
        from airflow_provider_qwenocr.dashscope.limits import RateLimiter
        from airflow_provider_qwenocr.ocr.models import effective_quota

        rpm, tpm = effective_quota(self.model_spec(), self.config.rpm, self.config.tpm)  # unknown → logged default
        extra = self.get_connection(self.conn_id).extra_dejson or {}
        store_conn_id = extra.get("limiter_conn_id") or None
        if not store_conn_id:
            return RateLimiter(rpm, tpm,
                               shared_path=extra.get("limiter_path") or None)
        wait = extra.get("limiter_wait_seconds")
        return RateLimiter(rpm, tpm,
                           shared_url=self.limiter_store_url(store_conn_id),
                           account=account_key(self.config.api_key, self.config.root),
                           expected_workers=int(extra.get("limiter_expected_workers") or 0) or None,
                           store_wait_seconds=None if wait in (None, "") else float(wait))

    def limiter_store_url(self, conn_id: str) -> str:
        """The URL of a Redis (redis provider conventions: host, port, password, extra ``db``/``ssl``) or
        Postgres connection, for the core limiter (which stays free of Airflow)."""
        from urllib.parse import quote

        conn = self.get_connection(conn_id)
        extra = conn.extra_dejson or {}
        auth = ""
        if conn.login or conn.password:
            auth = f"{quote(conn.login or '', safe='')}{':' + quote(conn.password, safe='') if conn.password else ''}@"
        host = conn.host or "localhost"
        if conn.conn_type == "redis":
            scheme = "rediss" if str(extra.get("ssl", "")).lower() in ("true", "1") else "redis"
            return f"{scheme}://{auth}{host}:{conn.port or 6379}/{int(extra.get('db') or 0)}"
        if conn.conn_type in ("postgres", "postgresql"):
            return f"postgresql://{auth}{host}:{conn.port or 5432}/{quote(conn.schema or 'postgres', safe='')}"
        raise ValueError(f"limiter_conn_id {conn_id!r} is of type {conn.conn_type!r}: use a redis or postgres connection")

    @cached_property
    def _client(self):
        from airflow_provider_qwenocr.dashscope.realtime import RealtimeClient

        return RealtimeClient(self.config, limiter=self.limiter, pool_size=max(10, self.max_concurrency),
                              breaker=self.breaker())

    def breaker(self):
        """A circuit breaker with the operator's settings, else the connection extras
        ``circuit_breaker_failures`` / ``circuit_breaker_seconds``, else 8 calls / 120 s."""
        from airflow_provider_qwenocr.dashscope.breaker import DEFAULT_FAILURES, DEFAULT_SECONDS, CircuitBreaker

        extra = self.get_connection(self.conn_id).extra_dejson or {}

        def pick(own, key, default, cast):
            for value in (own, extra.get(key)):
                if value not in (None, ""):
                    return cast(value)
            return default

        return CircuitBreaker(pick(self.circuit_breaker_failures, "circuit_breaker_failures", DEFAULT_FAILURES, int),
                              pick(self.circuit_breaker_seconds, "circuit_breaker_seconds", DEFAULT_SECONDS, float))

    def get_client(self):
        """The realtime client of this hook (created once; thread-safe; shares the hook's limiter)."""
        return self._client

    def get_conn(self):
        return self.get_client()

    # -- OCR ----------------------------------------------------------------------------------------

    def ocr_request(self, **arguments: Any):
        """The :class:`~airflow_provider_qwenocr.ocr.request.OcrRequest` of ``arguments`` (task, prompt,
        result_schema, model, min_pixels, max_pixels, enable_rotate, fetch) with the connection's
        ``default_model``; a bad argument raises ``ValueError``."""
        from airflow_provider_qwenocr.ocr.request import build_ocr_request

        return build_ocr_request(default_model=self.config.default_model, **arguments)

    def prepare(self, image: bytes | str, **arguments: Any):
        """(payload, source): a PreparedImage for bytes or a local path, the string itself for a URL
        (``OcrRequest.payload``; ``arguments`` as :meth:`ocr_request`: model, min_pixels, max_pixels)."""
        return self.ocr_request(**arguments).payload(image)

    def recognize(self, image: bytes | str, task: str = "text_recognition", *, request: Any = None,
                  source: str | None = None, **arguments: Any):
        """OCR one image (bytes, a local path, or an http(s)/oss/data URL passed through untouched).

        Give the run's ``request`` (:meth:`ocr_request`), or its ``arguments`` (``prompt``, ``result_schema``,
        ``model``, ``min_pixels``, ``max_pixels``, ``enable_rotate``). Returns an ``ok`` :class:`OcrResult`;
        raises ``ValueError`` for a bad argument, ``ImageValidationError`` for an image the service would
        refuse, ``PermanentError`` (``InvalidApiKeyError`` = stop the task) or, once retries are spent,
        ``RetryableError``.
        """
        if request is None:
            request = self.ocr_request(task=task, **arguments)
        elif arguments:
            raise TypeError(f"recognize() takes a request or its arguments, not both: {sorted(arguments)}")
        payload, src = request.payload(image)
        return self.get_client().recognize(payload, request=request, source=source or src)

    def test_connection(self) -> tuple[bool, str]:
        """One cheap real call (a tiny generated image at the smallest grid); never raises."""
        try:
            from PIL import Image, ImageDraw

            from airflow_provider_qwenocr.dashscope.realtime import RealtimeClient

            img = Image.new("RGB", (96, 32), "white")
            ImageDraw.Draw(img).text((4, 10), "OK", fill="black")
            buf = io.BytesIO()
            img.save(buf, "PNG")
            request = self.ocr_request(max_pixels=self.model_spec().default_min_pixels * 2)
            config = self.config.with_(max_retries=1, max_retry_seconds=30.0, timeout=min(self.config.timeout, 30.0))
            with RealtimeClient(config, pool_size=1) as client:
                result = client.recognize(request.prepare(buf.getvalue()), request=request)
            return True, (f"Connection OK: {config.default_model} at {config.root} answered "
                          f"({result.usage.total_tokens} tokens, request_id {result.request_id})")
        except Exception as exc:  # report, never raise: the UI shows the message
            from airflow_provider_qwenocr.dashscope.errors import redact

            secret = None
            try:
                secret = self.config.api_key
            except Exception:
                pass
            return False, redact(f"{type(exc).__name__}: {exc}", secret)
