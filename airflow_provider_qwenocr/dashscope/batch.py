"""The DashScope Batch API client: input files and batch jobs over the OpenAI-compatible endpoint.

Why the ``openai`` SDK: DashScope documents its Batch API as OpenAI-compatible and shows the ``openai``
client in every example; the SDK already does multipart upload, JSON decoding and retries of 429/5xx
and connection errors with back-off, so this module only adds what is DashScope-specific: the region
check (OCR batch exists in Beijing only), the list filters (``status``, ``ds_name``, ``create_after`` …)
that the OpenAI client does not know, and a status enum with the in-progress / success / failure split
that operator, sensor and trigger all decide on.

Everything returned is a plain ``dict`` (the JSON the service sent), so it crosses XCom, trigger events
and log lines without custom serialisation. No Airflow import here.

JSONL request building, splitting and result parsing live in :mod:`.batch_jsonl`.
"""

from __future__ import annotations

import re
import threading
from datetime import timedelta
from enum import Enum
from typing import Any, BinaryIO

from airflow_provider_qwenocr.dashscope.config import ClientConfig
from airflow_provider_qwenocr.ocr.models import BATCH_REGIONS

BATCH_ENDPOINT = "/v1/chat/completions"
COMPLETION_WINDOW = "24h"
#: The completion windows the service accepts, in whole hours (reference §9: "24h" up to "336h").
MIN_WINDOW_HOURS, MAX_WINDOW_HOURS = 24, 336
FILE_PURPOSE = "batch"
_WINDOW = re.compile(r"\s*(\d+)\s*[hH]\s*")


def normalize_completion_window(value: str | int | timedelta | None) -> str:
    """The service's ``completion_window`` string (``"24h"`` … ``"336h"``) for ``value``.

    Accepts that string, whole hours as an int (``72``) or a ``timedelta`` of whole hours; ``None`` is the
    default ``"24h"``. Anything else raises ``ValueError`` saying what is allowed — before anything is
    uploaded, since the service would refuse the batch only after the input file was stored.
    """
    if value is None:
        return COMPLETION_WINDOW
    hours: int | None = None
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
        hours = int(seconds // 3600) if seconds % 3600 == 0 else None
    elif isinstance(value, int) and not isinstance(value, bool):
        hours = value
    elif isinstance(value, str):
        m = _WINDOW.fullmatch(value)
        if m:
            hours = int(m.group(1))
        elif value.strip().isdigit():
            hours = int(value)
    if hours is None or not MIN_WINDOW_HOURS <= hours <= MAX_WINDOW_HOURS:
        raise ValueError(
            f"completion_window={value!r} is not allowed: the Batch API accepts whole hours from "
            f"{MIN_WINDOW_HOURS} to {MAX_WINDOW_HOURS} (e.g. \"24h\", \"72h\", 168 or timedelta(days=14))"
        )
    return f"{hours}h"


def window_hours(value: str | int | timedelta | None) -> int:
    """Whole hours of a completion window (validated as :func:`normalize_completion_window` does)."""
    return int(normalize_completion_window(value)[:-1])


class BatchStatus(str, Enum):
    """A batch's ``status``; terminal states are ``completed``, ``failed``, ``expired`` and ``cancelled``."""

    VALIDATING = "validating"
    IN_PROGRESS = "in_progress"
    FINALIZING = "finalizing"
    COMPLETED = "completed"
    FAILED = "failed"
    EXPIRED = "expired"
    CANCELLING = "cancelling"
    CANCELLED = "cancelled"

    @classmethod
    def in_progress_states(cls) -> frozenset[BatchStatus]:
        return frozenset({cls.VALIDATING, cls.IN_PROGRESS, cls.FINALIZING, cls.CANCELLING})

    @classmethod
    def success_states(cls) -> frozenset[BatchStatus]:
        return frozenset({cls.COMPLETED})

    @classmethod
    def failure_states(cls) -> frozenset[BatchStatus]:
        return frozenset({cls.FAILED, cls.EXPIRED, cls.CANCELLED})

    @property
    def is_terminal(self) -> bool:
        return self not in self.in_progress_states()

    @property
    def is_success(self) -> bool:
        return self in self.success_states()

    @property
    def is_failure(self) -> bool:
        return self in self.failure_states()

    @classmethod
    def of(cls, batch: dict[str, Any] | str) -> BatchStatus:
        value = batch if isinstance(batch, str) else batch.get("status")
        try:
            return cls(value)
        except ValueError:
            # An unknown status is treated as still running: a new intermediate state must not end a wait
            # early; the wait's own deadline bounds it.
            return cls.IN_PROGRESS


class BatchRegionError(ValueError):
    """The connection points at a region whose Batch API does not offer Qwen-OCR."""


def check_batch_region(config: ClientConfig) -> None:
    """Refuse before uploading anything when the region cannot run OCR batches (only Beijing can).

    A custom base URL (a proxy, the emulator, a future region) is trusted: we cannot know what it serves.
    """
    if config.custom_endpoint or config.region in BATCH_REGIONS:
        return
    allowed = ", ".join(sorted(BATCH_REGIONS))
    raise BatchRegionError(
        f"the DashScope Batch API in region {config.region!r} does not offer Qwen-OCR models "
        f"(OCR batch is available in: {allowed}); use a connection for that region, set a custom base URL, "
        "or use the realtime QwenOcrOperator"
    )


def is_transient_error(exc: BaseException) -> bool:
    """True for errors worth polling again: throttling, server errors, timeouts, dropped connections.

    Authentication errors, account states (billing 429s, 403 FreeTierOnly) and other 4xx (unknown batch id,
    bad request) are permanent: retrying cannot help. Decided by ``errors.error_class``, as for realtime.
    """
    from airflow_provider_qwenocr.dashscope.errors import RetryableError, from_openai_error

    if isinstance(exc, (TimeoutError, ConnectionError)):
        return True
    typed = from_openai_error(exc)  # the one classifier: billing 429s and 403 FreeTierOnly are not transient
    return isinstance(typed if typed is not None else exc, RetryableError)


_CLIENTS: dict[tuple, Any] = {}
_CLIENTS_LOCK = threading.Lock()


def _openai_client(config: ClientConfig):
    """One ``OpenAI`` client (and so one connection pool) per (key, base URL, timeout, retries)."""
    from openai import OpenAI

    key = (config.api_key, config.compatible_base, config.timeout, config.max_retries)
    with _CLIENTS_LOCK:
        client = _CLIENTS.get(key)
        if client is None:
            client = OpenAI(
                api_key=config.api_key,
                base_url=config.compatible_base,
                timeout=config.timeout,
                max_retries=min(config.max_retries, 5),
            )
            _CLIENTS[key] = client
        return client


class BatchClient:
    """Files and batches of one DashScope account/endpoint. Thread-safe (the SDK client is)."""

    def __init__(self, config: ClientConfig, *, check_region: bool = True) -> None:
        if check_region:
            check_batch_region(config)
        self.config = config
        self._client = _openai_client(config)

    # -- files -------------------------------------------------------------------------------------------
    def upload_file(self, content: bytes | BinaryIO, filename: str = "requests.jsonl",
                    purpose: str = FILE_PURPOSE) -> dict:
        """Upload bytes or an open binary file (streamed: a 500 MB part need not be read into memory)."""
        obj = self._client.files.create(file=(filename, content, "application/jsonl"), purpose=purpose)
        return obj.model_dump()

    def get_file(self, file_id: str) -> dict:
        return self._client.files.retrieve(file_id).model_dump()

    def file_content(self, file_id: str) -> bytes:
        return self._client.files.content(file_id).content

    def delete_file(self, file_id: str) -> dict:
        return self._client.files.delete(file_id).model_dump()

    def list_files(self, **params: Any) -> dict:
        raw = self._client.files.with_raw_response.list(extra_query=_clean(params) or None)
        return raw.http_response.json()

    # -- batches -----------------------------------------------------------------------------------------
    def create_batch(self, input_file_id: str, *, metadata: dict[str, str] | None = None,
                     endpoint: str = BATCH_ENDPOINT,
                     completion_window: str | int | timedelta = COMPLETION_WINDOW) -> dict:
        obj = self._client.batches.create(
            input_file_id=input_file_id,
            endpoint=endpoint,  # type: ignore[arg-type]  # DashScope also accepts its test endpoint
            # DashScope accepts 24h–336h; the openai client's type only names "24h".
            completion_window=normalize_completion_window(completion_window),  # type: ignore[arg-type]
            metadata=metadata or None,
        )
        return obj.model_dump()

    def get_batch(self, batch_id: str) -> dict:
        return self._client.batches.retrieve(batch_id).model_dump()

    def cancel_batch(self, batch_id: str) -> dict:
        return self._client.batches.cancel(batch_id).model_dump()

    def list_batches(self, *, limit: int | None = None, after: str | None = None,
                     status: str | list[str] | None = None, create_after: str | None = None,
                     create_before: str | None = None, ds_name: str | None = None,
                     input_file_ids: str | list[str] | None = None) -> dict:
        """One page: ``{"object": "list", "data": [...], "first_id", "last_id", "has_more"}``.

        ``create_after``/``create_before`` are ``yyyyMMddHHmmss`` (Beijing time, as the service reads them);
        ``status`` and ``input_file_ids`` (≤ 20) may be lists. ``data`` is ``[]`` (not null) when empty.
        """
        if isinstance(input_file_ids, list) and len(input_file_ids) > 20:
            raise ValueError("input_file_ids: the service accepts at most 20 ids per query")
        query = _clean({
            "status": ",".join(status) if isinstance(status, list) else status,
            "create_after": create_after,
            "create_before": create_before,
            "ds_name": ds_name,
            "input_file_ids": ",".join(input_file_ids) if isinstance(input_file_ids, list) else input_file_ids,
        })
        kwargs: dict[str, Any] = {"extra_query": query or None}
        if limit is not None:
            kwargs["limit"] = limit
        if after is not None:
            kwargs["after"] = after
        page = self._client.batches.with_raw_response.list(**kwargs).http_response.json()
        page["data"] = page.get("data") or []
        return page

    def find_batches(self, *, ds_name: str | None = None, statuses: list[str] | None = None,
                     create_after: str | None = None, page_size: int = 100, max_pages: int = 50) -> list[dict]:
        """Every batch matching the documented filters, all pages (``after`` = the last id while ``has_more``).

        ``ds_name`` is the service's substring match on ``metadata.ds_name``: callers that need an exact
        match check the metadata of what comes back. ``max_pages`` bounds a runaway listing (50 × 100).
        """
        found: list[dict] = []
        after: str | None = None
        for _ in range(max_pages):
            page = self.list_batches(limit=page_size, after=after, status=statuses, ds_name=ds_name,
                                     create_after=create_after)
            found.extend(page["data"])
            after = page.get("last_id") or (page["data"][-1]["id"] if page["data"] else None)
            if not page.get("has_more") or not after:
                break
        return found


def _clean(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if v is not None}
