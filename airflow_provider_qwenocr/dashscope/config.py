"""Client configuration: where to send requests, with which key, within which limits. No Airflow import.

Why one object: the native API (``/api/v1``), the OpenAI-compatible API (``/compatible-mode/v1``) and
the Batch API all derive from one base URL root, and every call passes it explicitly — the dashscope
SDK's ``base_http_api_url`` is process-global, so two connections in one worker would otherwise clobber
each other.

Why the connection is read here, once (:func:`config_from_connection`): a setting that cannot work must
fail before anything is read or billed, with a message naming the connection, the setting and what is
allowed. Read ad hoc, ``timeout=1e12`` gave an ``OverflowError`` row per image, ``timeout=NaN`` opened the
circuit breaker and blamed the service, and ``test_connection`` said OK for settings no task could use.

Why the log filter lives here too: building a connection's config is where its key becomes known, so it is
where every logger that could print the key gets :class:`SecretFilter` (which applies
:func:`~.errors.redact`, the one redaction rule that error fields also go through).
"""

from __future__ import annotations

import difflib
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

from airflow_provider_qwenocr.dashscope.breaker import DEFAULT_FAILURES, DEFAULT_SECONDS
from airflow_provider_qwenocr.dashscope.errors import redact, register_secret
from airflow_provider_qwenocr.ocr.models import DEFAULT_MODEL, DEFAULT_REGION, REGION_ENDPOINTS, ModelSpec, Price

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 120.0


@dataclass(frozen=True)
class ClientConfig:
    """Everything a client needs from one connection (built and validated by :func:`config_from_connection`)."""

    api_key: str = field(repr=False)
    base_url: str | None = None  # root, e.g. "http://127.0.0.1:8765"; None → the region's endpoint
    region: str = DEFAULT_REGION
    workspace_id: str | None = None
    default_model: str = DEFAULT_MODEL
    timeout: float = DEFAULT_TIMEOUT
    rpm: int | None = None  # client-side request limit; None → the model's documented RPM
    tpm: int | None = None  # client-side token limit; None → the model's documented TPM
    max_retries: int = 8
    max_retry_seconds: float = 600.0
    circuit_breaker_failures: int = DEFAULT_FAILURES
    circuit_breaker_seconds: float = DEFAULT_SECONDS
    limiter_path: str | None = None  # SQLite file: one RPM/TPM budget per host
    limiter_conn_id: str | None = None  # a Redis/Postgres connection: one budget for every host
    limiter_expected_workers: int | None = None
    limiter_wait_seconds: float | None = None
    price: Price | None = None  # the connection's own price list (every model); None → the catalogue's

    def __post_init__(self) -> None:
        if not self.api_key:
            raise ValueError("no DashScope API key: set the connection's password (API Key)")
        if self.base_url is None and self.region not in REGION_ENDPOINTS:
            regions = ", ".join(REGION_ENDPOINTS)
            raise ValueError(f"unknown region {self.region!r}; expected one of {regions}, or set a base URL")

    @property
    def root(self) -> str:
        return (self.base_url or REGION_ENDPOINTS[self.region]).rstrip("/")

    @property
    def custom_endpoint(self) -> bool:
        return self.base_url is not None

    @property
    def native_base(self) -> str:
        return f"{self.root}/api/v1"

    @property
    def compatible_base(self) -> str:
        return f"{self.root}/compatible-mode/v1"

    def price_of(self, spec: ModelSpec) -> Price:
        """The price rows of ``spec`` are billed at: the connection's, when it sets one, else the catalogue's
        list price in this region (which may be unknown)."""
        return self.price if self.price is not None else spec.price(self.region)

    def with_(self, **changes) -> ClientConfig:
        return replace(self, **changes)


# -- base URL ------------------------------------------------------------------------------------------------

_LOOPBACK = ("localhost", "127.", "[::1]", "::1")


def normalise_root(host: str | None) -> str | None:
    """Accept a bare root, or a root with the native/compatible suffix pasted from the docs."""
    if not host:
        return None
    host = host.strip().rstrip("/")
    if "://" not in host:
        host = "https://" + host
    for suffix in ("/api/v1", "/compatible-mode/v1"):
        if host.endswith(suffix):
            host = host[: -len(suffix)]
    return host


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
        parts = urlsplit(host)
        if parts.port is None:
            host = parts._replace(netloc=f"{parts.netloc}:{int(port)}").geturl()
    return normalise_root(host)


# -- the connection's extras: one table, one validation ------------------------------------------------------

class ConnectionSettingsError(ValueError):
    """A connection setting cannot work. The message names the connection, the setting and what is allowed."""


def _number(low: float, high: float, unit: str, *, whole: bool = False) -> tuple[Callable[[Any], Any], str]:
    """A parser for a finite number in [low, high] (a whole number when ``whole``), and what it allows."""
    kind = "a whole number" if whole else "a finite number"
    allowed = f"{kind} of {unit} between {low:,g} and {high:,g}"

    def parse(value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ValueError
        number = float(value.strip() if isinstance(value, str) else value)  # "nan"/"inf" parse: refused below
        if not math.isfinite(number) or not low <= number <= high or (whole and number != int(number)):
            raise ValueError
        return int(number) if whole else number

    return parse, allowed


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError
    return value.strip()


def _choice(*choices: str, upper: bool = False) -> tuple[Callable[[Any], Any], str]:
    def parse(value: Any) -> str:
        text = _text(value)
        text = text.upper() if upper else text
        if text not in choices:
            raise ValueError
        return text

    return parse, "one of " + ", ".join(choices)


_TEXT = (_text, "a non-empty string")

#: Every extra a ``dashscope`` connection reads: (what it is — shown in the connection form, parser, what
#: is allowed). ``None`` or ``""`` means "not set" for each.
EXTRAS: dict[str, tuple[str, Callable[[Any], Any], str]] = {
    "region": ("endpoint region when Base URL is empty (default cn-beijing)", *_choice(*REGION_ENDPOINTS)),
    "workspace_id": ("sent as X-DashScope-WorkSpace", *_TEXT),
    "default_model": ("model when an operator names none (default qwen-vl-ocr)", *_TEXT),
    "api_key": ("the API key, when the password field is empty", *_TEXT),
    "timeout": ("per-request timeout in seconds (default 120)", *_number(1, 3600, "seconds")),
    "rpm": ("client-side requests per minute (default: the model's quota)",
            *_number(1, 10_000_000, "requests per minute", whole=True)),
    "tpm": ("client-side tokens per minute (default: the model's quota)",
            *_number(1, 100_000_000_000, "tokens per minute", whole=True)),
    "limiter_path": ("SQLite file shared by the worker processes of a host as one RPM/TPM budget", *_TEXT),
    "limiter_conn_id": ("a Redis or Postgres connection id: one RPM/TPM budget for every worker on every host",
                        *_TEXT),
    "limiter_expected_workers": ("if the shared limiter store is lost, each process paces at quota / this "
                                 "(default 4)", *_number(1, 10_000, "processes", whole=True)),
    "limiter_wait_seconds": ("how long calls wait for a lost limiter store before that fallback (default 15)",
                             *_number(0, 3600, "seconds")),
    "circuit_breaker_failures": ("consecutive failed calls (no answer, 5xx) that stop the task (default 8; "
                                 "0 = off)", *_number(0, 100_000, "calls", whole=True)),
    "circuit_breaker_seconds": ("seconds with no healthy answer while calls keep failing that stop the task "
                                "(default 120)", *_number(1, 86_400, "seconds")),
    "max_retries": ("attempts for throttled / 5xx / timed-out calls (default 8)",
                    *_number(0, 100, "attempts", whole=True)),
    "max_retry_seconds": ("total time one image may spend retrying (default 600)", *_number(0, 86_400, "seconds")),
    "price_input_per_mtok": ("your price per million input tokens, for every model of this connection "
                             "(default: the catalogue's list price; batch rows cost half)",
                             *_number(0, 100_000, "currency units per million tokens")),
    "price_output_per_mtok": ("your price per million output tokens (with price_input_per_mtok)",
                              *_number(0, 100_000, "currency units per million tokens")),
    "price_currency": ("the currency of the two prices: USD or CNY", *_choice("USD", "CNY", upper=True)),
}
_PRICE_KEYS = ("price_input_per_mtok", "price_output_per_mtok", "price_currency")


def unknown_extras(extra: Mapping[str, Any] | None) -> list[str]:
    """The extras no setting reads (ignored, with a warning)."""
    return sorted(str(k) for k in (extra or {}) if k not in EXTRAS)


def _typo_of(key: str) -> str | None:
    close = difflib.get_close_matches(key.lower(), EXTRAS, n=1, cutoff=0.8)
    return close[0] if close else None


def config_from_connection(conn_id: str, *, password: str | None = None, host: str | None = None,
                           port: int | str | None = None, schema: str | None = None,
                           extra: Mapping[str, Any] | None = None) -> ClientConfig:
    """The validated :class:`ClientConfig` of a connection's fields and extras.

    Raises :class:`ConnectionSettingsError` for the first setting that cannot work — a value outside what is
    allowed (NaN, infinities, 1e12 seconds, negative or non-numeric numbers, an unknown region or currency),
    an unknown extra that is clearly a typo of a known one (``timout``), half a price, or no key. Other
    unknown extras are ignored with one warning naming them.
    """
    extra = dict(extra or {})

    def refuse(what: str) -> ConnectionSettingsError:
        return ConnectionSettingsError(f"connection {conn_id!r}: {what}")

    for key in unknown_extras(extra):
        guess = _typo_of(key)
        if guess is not None:
            raise refuse(f"unknown extra {key!r} — did you mean {guess!r}? Known extras: {', '.join(EXTRAS)}")
    ignored = unknown_extras(extra)
    if ignored:
        log.warning("connection %r: ignoring unknown extra(s) %s (known: %s)", conn_id, ", ".join(ignored),
                    ", ".join(EXTRAS))
    values: dict[str, Any] = {}
    for key, (_, parse, allowed) in EXTRAS.items():
        raw = extra.get(key)
        if raw is None or raw == "":
            continue
        try:
            values[key] = parse(raw)
        except (TypeError, ValueError, OverflowError):
            shown = redact(repr(raw))[:80]
            raise refuse(f"extra {key!r} = {shown} is not allowed: it must be {allowed}") from None
    prices = [k for k in _PRICE_KEYS if k in values]
    if prices and len(prices) != len(_PRICE_KEYS):
        missing = ", ".join(k for k in _PRICE_KEYS if k not in values)
        raise refuse(f"a price needs all of {', '.join(_PRICE_KEYS)}; missing: {missing}")
    extra_key = values.pop("api_key", "")
    api_key = (password or "").strip() or extra_key  # a pasted key often ends in "\n"
    if not api_key:
        raise refuse("no DashScope API key: set the connection's password (API Key)")
    if prices:
        per_ktok_in, per_ktok_out = values.pop("price_input_per_mtok") / 1000, values.pop("price_output_per_mtok") / 1000
        currency = values.pop("price_currency")
        values["price"] = (Price(usd_in=per_ktok_in, usd_out=per_ktok_out) if currency == "USD" else
                           Price(usd_in=None, usd_out=None, cny_in=per_ktok_in, cny_out=per_ktok_out))
    try:
        base_url = connection_root(host, port, schema)
    except ValueError as exc:
        raise refuse(f"the Base URL {host!r} (port {port!r}) is not a URL: {exc}") from None
    protect_secret(api_key)
    return ClientConfig(api_key=api_key, base_url=base_url, **values)


# -- secrets in logs -----------------------------------------------------------------------------------------

#: Loggers that may see a request's headers: the filter goes on each (a filter on a logger applies to
#: records created on that logger, so child loggers are listed too).
SECRET_LOGGERS = ("dashscope", "dashscope.api_entities", "dashscope.api_entities.http_request", "openai",
                  "openai._base_client", "httpx", "httpcore", "urllib3", "urllib3.connectionpool", "requests",
                  "airflow_provider_qwenocr")
_SDK_LOGGERS = ("dashscope", "openai", "httpx", "httpcore", "urllib3")


class SecretFilter(logging.Filter):
    """Applies :func:`~.errors.redact` to a log record (message, args, traceback) before a handler writes it."""

    def __init__(self) -> None:
        super().__init__("qwenocr-secrets")

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:
            return True
        clean = redact(text)
        if record.exc_info and record.exc_info[1] is not None:
            import traceback

            clean += "\n" + redact("".join(traceback.format_exception(*record.exc_info))).rstrip()
            record.exc_info = None
            record.exc_text = None
        record.msg, record.args = clean, ()
        return True


SECRET_FILTER = SecretFilter()


def protect_secret(secret: str | None) -> None:
    """Scrub ``secret`` from every error and every line of the loggers that could print it (idempotent)."""
    register_secret(secret)
    for name in SECRET_LOGGERS:
        logger = logging.getLogger(name)
        if SECRET_FILTER not in logger.filters:
            logger.addFilter(SECRET_FILTER)
    # records of child loggers (``airflow_provider_qwenocr.runs.realtime`` …) skip their ancestors' filters but
    # not the handlers': the task log's handlers get the filter too
    for name in ("", "airflow.task", "airflow"):
        for handler in logging.getLogger(name).handlers:
            if SECRET_FILTER not in handler.filters:
                handler.addFilter(SECRET_FILTER)
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
