"""QwenOcrHook: DashScope credentials as an Airflow connection, and realtime OCR calls.

Thin on purpose: the connection becomes a :class:`ClientConfig`; HTTP, retries, rate limits and parsing
live in ``dashscope/`` and ``ocr/`` (no Airflow there), so they are tested without Airflow and reused by
the emulator tests and benchmarks. Batch methods come from :class:`BatchHookMixin`.

The connection form is declared twice on purpose: as ``conn-fields`` in ``get_provider_info`` (read by
Airflow 3.2+ without importing this module) and as :meth:`get_connection_form_widgets` (read by 2.10–3.1
through flask-appbuilder/wtforms, which Airflow 3 no longer ships — then the method returns ``{}``).
A unit test keeps the two in agreement.

The connection is read once per hook (:attr:`QwenOcrHook.connection`) and validated in one place,
:func:`~airflow_provider_qwenocr.dashscope.config.config_from_connection`, which also registers the key
for redaction (errors, rows and every log line of our loggers and the SDKs' under us). The hook builds
clients from that config; the run loops (``runs/``) are imported only by the methods that run them.
"""

from __future__ import annotations

import io
from functools import cached_property
from typing import Any

from airflow_provider_qwenocr._compat import BaseHook
from airflow_provider_qwenocr.dashscope.config import ClientConfig, ConnectionSettingsError, config_from_connection
from airflow_provider_qwenocr.get_provider_info import CONN_FIELDS, CONN_TYPE, DEFAULT_CONN_ID, UI_FIELD_BEHAVIOUR
from airflow_provider_qwenocr.hooks.batch import BatchHookMixin


def _mask_in_airflow(secret: str) -> None:
    """Register the key (as stripped) with Airflow's own masker too: on Airflow 3 an operator's ``self.log``
    is a structlog logger whose lines never pass a stdlib filter, only Airflow's masker."""
    try:
        from airflow.sdk.log import mask_secret
    except ImportError:  # Airflow 2.x
        from airflow.utils.log.secrets_masker import mask_secret
    mask_secret(secret)


class QwenOcrHook(BatchHookMixin, BaseHook):
    """Talks to Alibaba Model Studio (DashScope) with the key and endpoint of an Airflow connection.

    :param conn_id: connection of type ``dashscope`` (password = API key, host = optional base URL root).
    :param max_concurrency: threads expected to call :meth:`recognize` at once (sizes the HTTP pool).
    """

    conn_name_attr = "conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = CONN_TYPE
    hook_name = "DashScope (Qwen-VL-OCR)"

    def __init__(self, conn_id: str = DEFAULT_CONN_ID, *, max_concurrency: int = 64) -> None:
        super().__init__()
        self.conn_id = conn_id
        self.max_concurrency = max_concurrency

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
    def connection(self) -> Any:
        """The Airflow connection, looked up once per hook (a lookup may be a secrets-backend call)."""
        return self.get_connection(self.conn_id)

    @cached_property
    def config(self) -> ClientConfig:
        """The validated :class:`ClientConfig`; raises :class:`ConnectionSettingsError` naming the setting."""
        conn = self.connection
        config = config_from_connection(self.conn_id, password=conn.password, host=conn.host, port=conn.port,
                                        schema=conn.schema, extra=conn.extra_dejson)
        _mask_in_airflow(config.api_key)
        return config

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

        config = self.config
        rpm, tpm = effective_quota(self.model_spec(), config.rpm, config.tpm)  # unknown → logged default
        if not config.limiter_conn_id:
            return RateLimiter(rpm, tpm, shared_path=config.limiter_path)
        return RateLimiter(rpm, tpm, shared_url=self.limiter_store_url(config.limiter_conn_id),
                           account=account_key(config.api_key, config.root),
                           expected_workers=config.limiter_expected_workers,
                           store_wait_seconds=config.limiter_wait_seconds)

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
        from airflow_provider_qwenocr.dashscope.breaker import CircuitBreaker
        from airflow_provider_qwenocr.dashscope.realtime import RealtimeClient

        config = self.config
        breaker = CircuitBreaker(config.circuit_breaker_failures, config.circuit_breaker_seconds)
        return RealtimeClient(config, limiter=self.limiter, pool_size=max(10, self.max_concurrency), breaker=breaker)

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
        """The task's own validation of the connection (the same refusal, before any call), then one cheap
        real call — billed: a tiny generated image at the smallest grid. Never raises."""
        from airflow_provider_qwenocr.dashscope.errors import redact

        try:
            config = self.config
        except ConnectionSettingsError as exc:  # exactly what a task using this connection would fail with
            return False, str(exc)
        except Exception as exc:  # e.g. the connection does not exist
            return False, redact(f"{type(exc).__name__}: {exc}")
        try:
            from PIL import Image, ImageDraw

            from airflow_provider_qwenocr.dashscope.config import unknown_extras
            from airflow_provider_qwenocr.dashscope.realtime import RealtimeClient

            img = Image.new("RGB", (96, 32), "white")
            ImageDraw.Draw(img).text((4, 10), "OK", fill="black")
            buf = io.BytesIO()
            img.save(buf, "PNG")
            request = self.ocr_request(max_pixels=self.model_spec().default_min_pixels * 2)
            probe = config.with_(max_retries=1, max_retry_seconds=30.0, timeout=min(config.timeout, 30.0))
            with RealtimeClient(probe, pool_size=1) as client:
                result = client.recognize(request.prepare(buf.getvalue()), request=request)
            ignored = unknown_extras(self.connection.extra_dejson)
            return True, (f"Connection OK: {config.default_model} at {config.root} answered "
                          f"({result.usage.total_tokens} tokens, request_id {result.request_id})"
                          + (f"; ignored unknown extra(s): {', '.join(ignored)}" if ignored else ""))
        except Exception as exc:  # report, never raise: the UI shows the message
            return False, redact(f"{type(exc).__name__}: {exc}", config.api_key)
