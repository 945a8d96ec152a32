"""QwenOcrHook: DashScope credentials as an Airflow connection, and realtime OCR calls.

Thin on purpose: the connection becomes a :class:`ClientConfig`; HTTP, retries, rate limits and parsing
live in ``dashscope/`` and ``ocr/`` (no Airflow there), so they are tested without Airflow and reused by
the emulator tests and benchmarks. Batch methods come from :class:`BatchHookMixin`.

The connection form is declared twice on purpose: as ``conn-fields`` in ``get_provider_info`` (read by
Airflow 3.2+ without importing this module) and as :meth:`get_connection_form_widgets` (read by 2.10–3.1
through flask-appbuilder/wtforms, which Airflow 3 no longer ships — then the method returns ``{}``).
A unit test keeps the two in agreement.
"""

from __future__ import annotations

import io
import logging
import os
from functools import cached_property
from typing import Any

from airflow_provider_qwenocr._compat import BaseHook
from airflow_provider_qwenocr.dashscope.config import ClientConfig, normalise_root
from airflow_provider_qwenocr.get_provider_info import CONN_FIELDS, CONN_TYPE, DEFAULT_CONN_ID, UI_FIELD_BEHAVIOUR
from airflow_provider_qwenocr.hooks.batch import BatchHookMixin

log = logging.getLogger(__name__)

#: Image references passed to the service untouched (the service, not the worker, fetches them).
REMOTE_PREFIXES = ("http://", "https://", "oss://", "data:")


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

    def __init__(self, conn_id: str = DEFAULT_CONN_ID, *, max_concurrency: int = 64, **kwargs: Any) -> None:
        super().__init__(**kwargs)
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
        return ClientConfig(
            api_key=conn.password or extra.get("api_key") or "",
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
        """
        from airflow_provider_qwenocr.dashscope.limits import RateLimiter

        spec = self.model_spec()
        extra = self.get_connection(self.conn_id).extra_dejson or {}
        return RateLimiter(self.config.rpm or spec.rpm, self.config.tpm or spec.tpm,
                           shared_path=extra.get("limiter_path") or None)

    @cached_property
    def _client(self):
        from airflow_provider_qwenocr.dashscope.realtime import RealtimeClient

        return RealtimeClient(self.config, limiter=self.limiter, pool_size=max(10, self.max_concurrency))

    def get_client(self):
        """The realtime client of this hook (created once; thread-safe; shares the hook's limiter)."""
        return self._client

    def get_conn(self):
        return self.get_client()

    # -- OCR ----------------------------------------------------------------------------------------

    def prepare(self, image: bytes | str, *, model: str | None = None, min_pixels: int | None = None,
                max_pixels: int | None = None):
        """(payload, source): a PreparedImage for bytes or a local path, the string itself for a URL."""
        from airflow_provider_qwenocr.ocr.images import prepare_image

        spec = self.model_spec(model)
        if isinstance(image, (bytes, bytearray, memoryview)):
            return prepare_image(bytes(image), spec, min_pixels=min_pixels, max_pixels=max_pixels), None
        if isinstance(image, os.PathLike):
            image = os.fspath(image)
        if isinstance(image, str) and image.startswith(REMOTE_PREFIXES):
            return image, (image if not image.startswith("data:") else None)
        path = str(image)
        if path.startswith("file://"):
            path = path[len("file://"):]
        with open(path, "rb") as fh:
            data = fh.read()
        return prepare_image(data, spec, min_pixels=min_pixels, max_pixels=max_pixels), path

    def recognize(
        self,
        image: bytes | str,
        task: str = "text_recognition",
        *,
        prompt: str | None = None,
        result_schema: dict | str | None = None,
        model: str | None = None,
        min_pixels: int | None = None,
        max_pixels: int | None = None,
        enable_rotate: bool = False,
        source: str | None = None,
    ):
        """OCR one image (bytes, a local path, or an http(s)/oss/data URL passed through untouched).

        Returns an ``ok`` :class:`OcrResult`; raises ``ImageValidationError`` for an image the service would
        refuse, ``PermanentError`` (``InvalidApiKeyError`` = stop the task) or, once retries are spent,
        ``RetryableError``.
        """
        model = model or self.config.default_model
        payload, src = self.prepare(image, model=model, min_pixels=min_pixels, max_pixels=max_pixels)
        return self.get_client().recognize(
            payload, task=task, prompt=prompt, result_schema=result_schema, model=model,
            enable_rotate=enable_rotate, min_pixels=min_pixels, max_pixels=max_pixels, source=source or src,
        )

    def test_connection(self) -> tuple[bool, str]:
        """One cheap real call (a tiny generated image at the smallest grid); never raises."""
        try:
            from PIL import Image, ImageDraw

            from airflow_provider_qwenocr.dashscope.realtime import RealtimeClient

            img = Image.new("RGB", (96, 32), "white")
            ImageDraw.Draw(img).text((4, 10), "OK", fill="black")
            buf = io.BytesIO()
            img.save(buf, "PNG")
            spec = self.model_spec()
            config = self.config.with_(max_retries=1, max_retry_seconds=30.0, timeout=min(self.config.timeout, 30.0))
            with RealtimeClient(config, pool_size=1) as client:
                from airflow_provider_qwenocr.ocr.images import prepare_image

                prep = prepare_image(buf.getvalue(), spec, max_pixels=spec.default_min_pixels * 2)
                result = client.recognize(prep, task="text_recognition", max_pixels=spec.default_min_pixels * 2)
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
