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

import json
import logging
import re
import threading
from collections.abc import Iterable
from datetime import timedelta
from enum import Enum
from typing import Any, BinaryIO

from airflow_provider_qwenocr.dashscope.config import ClientConfig
from airflow_provider_qwenocr.dashscope.deadline import bounded_http_client
from airflow_provider_qwenocr.ocr.models import ALIASES, BATCH_REGIONS, MODELS, RESPONSES_API

log = logging.getLogger(__name__)

BATCH_ENDPOINT = "/v1/chat/completions"
#: The request endpoints the Batch reference lists for OCR lines, plus its no-inference test endpoint
#: (reference §5/§10). ``/v1/responses`` is not among them.
BATCH_ENDPOINTS = frozenset({BATCH_ENDPOINT, "/v1/chat/ds-test"})
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


def compact_batch(batch: dict[str, Any]) -> dict[str, Any]:
    """The fields of a batch object that decisions and landing need: small enough for trigger events and XCom."""
    keys = ("id", "status", "request_counts", "output_file_id", "error_file_id", "errors", "input_file_id")
    return {k: batch.get(k) for k in keys}


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


class BatchModelError(ValueError):
    """The Batch API does not list this model or endpoint for OCR: refused before anything is uploaded."""


def check_batch_request(model: str | None, endpoint: str | None = BATCH_ENDPOINT) -> None:
    """Refuse a model/endpoint combination the Batch docs do not list, saying what to use instead.

    Refused: any endpoint but chat completions (and the test endpoint) — the Batch reference lists no
    ``/v1/responses`` lines — and the models the docs call through the Responses API only (``qwen3.5-ocr``:
    not in the Batch model list). Catalogue snapshots whose Batch support is unconfirmed pass with a
    warning (the docs list "stable and some latest versions" of OCR without naming them), and a name the
    catalogue does not know is left to the service to judge (it answers ``model_not_found``).
    """
    if endpoint is not None and endpoint not in BATCH_ENDPOINTS:
        raise BatchModelError(
            f"the DashScope Batch API does not list the endpoint {endpoint!r} for OCR (it takes "
            f"{BATCH_ENDPOINT!r} lines); qwen3.5-ocr's Responses API is realtime only: use the realtime "
            "QwenOcrOperator for it, or a batch of model='qwen-vl-ocr' over /v1/chat/completions"
        )
    spec = MODELS.get(ALIASES.get(model, model)) if model else None
    if spec is None:
        return
    if spec.api == RESPONSES_API:
        raise BatchModelError(
            f"model {model!r} is not offered by the DashScope Batch API (its documented API is the realtime "
            "Responses API, and the Batch model list names only the qwen-vl-ocr family for OCR): use the "
            "realtime QwenOcrOperator with this model, or submit the batch with model='qwen-vl-ocr'"
        )
    if spec.batch is None:
        log.warning("Batch support for %r is not confirmed by the docs (they list qwen-vl-ocr); the service "
                    "refuses the batch (model_not_found) if it does not offer it", model)


def _first_line(content: bytes | BinaryIO) -> dict | None:
    """The first JSONL line of an input file, read without consuming it (None when it cannot be read)."""
    if isinstance(content, (bytes, bytearray, memoryview)):
        raw = bytes(content[:8 * 1024 * 1024]).split(b"\n", 1)[0]
    else:
        try:
            if not content.seekable():
                return None
            pos = content.tell()
            raw = content.readline(8 * 1024 * 1024)
            content.seek(pos)
        except (AttributeError, OSError, ValueError):
            return None
    try:
        line = json.loads(raw)
    except ValueError:
        return None
    return line if isinstance(line, dict) else None


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
                http_client=bounded_http_client(config.timeout),  # bytes and wall clock of every answer
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
        """Upload bytes or an open binary file (streamed: a 500 MB part need not be read into memory).

        A Batch input file's first line is checked first (:func:`check_batch_request`: lines share one
        model): a model or endpoint the Batch API does not list is refused before any byte is uploaded.
        """
        if purpose == FILE_PURPOSE and (line := _first_line(content)) is not None:
            body = line.get("body") if isinstance(line.get("body"), dict) else {}
            check_batch_request(body.get("model"), line.get("url"))
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
        check_batch_request(None, endpoint)
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


# -- best-effort clean-up (timeout, error and kill paths; also the run's own failure path) ------------------

def cancel_batches(api: Any, batch_ids: Iterable[str]) -> list[str]:
    """Best-effort cancel of every non-terminal batch; returns the ids a cancel was sent for.

    Never raises: it runs on timeout, error and kill paths where the original problem must surface.
    """
    sent = []
    for bid in batch_ids:
        try:
            if BatchStatus.of(api.get_batch(bid)).is_terminal:
                continue
            api.cancel_batch(bid)
            sent.append(bid)
        except Exception as exc:  # keep cancelling the others
            log.warning("could not cancel batch %s: %s", bid, exc)
    if sent:
        log.warning("cancelled batch(es) %s (requests that already completed are still billed)", sent)
    return sent


def delete_batch_files(api: Any, batches: Iterable[dict[str, Any]]) -> list[str]:
    """Best-effort delete of every file a batch used or produced; returns the ids deleted."""
    deleted = []
    for b in batches:
        for fid in (b.get("input_file_id"), b.get("output_file_id"), b.get("error_file_id")):
            if not fid:
                continue
            try:
                api.delete_file(fid)
                deleted.append(fid)
            except Exception as exc:  # rows are landed; a leftover file is not fatal
                log.warning("could not delete file %s: %s", fid, exc)
    return deleted
