"""One plan per source: *how* it is sent and *which cache keys* find its row — decided once, for every path.

Why one function: the realtime run, its ``token_budget`` estimate and the batch builder each used to
decide on their own whether a source goes inline, as a presigned URL or as a URL the service fetches,
and which idempotency keys to write and look up. They drifted (a URL cached by batch was missed by the
estimate; a presigning error was an error row in one path and a crash in another; the same URL was
written under two different keys), and every drift makes a user pay twice. :func:`plan_source` is the one
decision; the three paths call it and only *act* on its answer (:class:`SourcePlan`).

How a source is sent (:class:`Send`):

- ``INLINE`` — bytes read here (a local or object-store file, an http(s) URL with ``fetch=True``, the
  decoded bytes of a ``data:`` URL), resized to the model's grid, sent as a data URL; keyed on the bytes.
- ``PAGE`` — a PDF page or a TIFF/GIF frame: like ``INLINE``, from the rendered page's bytes (a page has
  no URL of its own, so it is never presigned).
- ``PRESIGNED`` — an object-store source in URL mode: the service fetches a presigned URL; keyed on the
  object's URI (the signature changes at every signing).
- ``FETCHED`` — an http(s) URL the service fetches itself; keyed on the URL.
- ``ERROR`` — cannot be sent (the source is unsupported or unreadable, or presigning failed): an error
  row, no call; its key is a stable stand-in so a batch manifest can carry it.

Keys (never change a formula: they are in every existing cache; ``tests/unit/test_ocr_request.py`` pins
them): bytes → ``request.key(sha256(bytes))``; by reference → ``request.key(sha256("url:" + uri))``
(:func:`reference_key`). The realtime path once wrote a fetched URL under ``request.key(sha256(url))``
(:func:`legacy_url_key`): it is still looked up, never written. ``Identity.sha256`` is the hash of the
bytes sent, None when they were never read (by reference, or unreadable): a row's ``sha256`` names an
image's content, never a URL's text.

Documents (issue 18; ``unit="document"``): :func:`plan_document` returns a :class:`DocumentPlan` — N page
plans (each with its own :class:`Identity`, page 1..N, key :func:`~.layouts.page_key` of the document's)
plus one document :class:`Identity` (``page`` None) keyed by :func:`document_key`: the document's bytes
and the request, naming the unit, so a change of unit or model is a new key. ``send`` is the one decision
of how the document goes: ``UPLOAD`` = the whole file (a PDF, to a model that reads PDFs: ``qwen3.5-ocr``)
through the service's temporary upload, its pages never rendered here; ``INLINE`` = the pages' images,
several per request (``runs/document_send.py`` packs them).

Pure core: no Airflow, no client; the presigner and the source are duck-typed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol

from .images import ImageValidationError, PreparedImage, decode_data_url, reference_sha, sha256_hex
from .layouts import page_key
from .pdf import is_pdf
from .request import OcrRequest
from .results import idempotency_key


class Send(str, Enum):
    """How a planned unit reaches the service (see the module docstring)."""

    INLINE = "inline"
    PAGE = "page"
    PRESIGNED = "presigned"
    FETCHED = "fetched"
    UPLOAD = "upload"  # a whole document through the service's temporary upload (DocumentPlan only)
    ERROR = "error"


@dataclass(frozen=True)
class Identity:
    """What a row says about where it came from. The plan makes it; the client stamps it on the row it
    returns (``RealtimeClient.recognize(identity=…)``) and the batch manifest records it, so no caller
    rewrites a finished row."""

    source: str
    key: str
    sha256: str | None = None
    page: int | None = None

    def fields(self) -> dict[str, Any]:
        """The row fields this identity fills: ``OcrResult(**identity.fields(), task=…, model=…)``."""
        return {"source": self.source, "sha256": self.sha256, "key": self.key, "page": self.page}

    def reuse(self, row: dict[str, Any]) -> dict[str, Any]:
        """A finished row (cached, or the answer to the same bytes under another name) as this source's row:
        its answer, usage and cost (what the one call was billed) with this source's name and page."""
        return {**row, "source": self.source, "page": self.page}


@dataclass(frozen=True)
class PlanError:
    """Why a source cannot be sent: an error code, what failed, and the exception (formatted by the caller,
    which knows the secret to redact)."""

    code: str
    what: str
    cause: BaseException | None = None

    def text(self, describe: Any = str) -> str:
        if self.cause is None:
            return self.what
        return f"{self.what}: {describe(self.cause)}" if self.what else describe(self.cause)


@dataclass(frozen=True)
class SourcePlan:
    """One source → one request. ``lookup`` = every key a finished row may be cached under, ``identity.key``
    (the one written) first; ``data`` = the bytes to prepare (``INLINE``/``PAGE``); ``url`` = what the
    service fetches (``PRESIGNED``/``FETCHED``); ``reference`` = the URI a by-reference key stands for."""

    send: Send
    identity: Identity
    lookup: tuple[str, ...] = ()
    data: bytes | None = field(default=None, repr=False)
    url: str | None = field(default=None, repr=False)
    reference: str | None = None
    error: PlanError | None = None

    @property
    def by_reference(self) -> bool:
        return self.send in (Send.PRESIGNED, Send.FETCHED)

    def keys(self) -> tuple[str, ...]:
        """The keys of the rows this plan produces (one here; a document's pages and itself)."""
        return (self.identity.key,)


@dataclass(frozen=True)
class DocumentPlan:
    """One document → its requests (see the module docstring); made by :func:`plan_document`."""

    send: Send
    identity: Identity
    pages: tuple[SourcePlan, ...]
    lookup: tuple[str, ...] = ()
    data: bytes | None = field(default=None, repr=False)
    url: str | None = field(default=None, repr=False)

    def keys(self) -> tuple[str, ...]:
        return (self.identity.key, *(k for p in self.pages for k in p.keys()))


Plan = SourcePlan | DocumentPlan


class Presigner(Protocol):  # runs.presign.Presigner
    def supports(self, uri: str) -> bool: ...
    def url(self, uri: str) -> str | None: ...


# -- the key formulas ---------------------------------------------------------------------------------

def reference_key(request: OcrRequest, uri: str) -> str:
    """The key of an image sent by reference (a URL the service fetches, a presigned object's URI)."""
    return request.key(reference_sha(uri))


def legacy_url_key(request: OcrRequest, url: str) -> str:
    """The key the realtime path once wrote for a URL the service fetched: looked up, never written."""
    return request.key(sha256_hex(url.encode("utf-8")))


def unreadable_key(request: OcrRequest, name: str) -> str:
    """A stable stand-in key for a source whose bytes are unknown (its error row, its manifest entry)."""
    return request.key(sha256_hex(f"unreadable:{name}".encode()))


# -- planning ------------------------------------------------------------------------------------------

def plan_bytes(name: str, data: bytes, request: OcrRequest, page: int | None = None) -> SourcePlan:
    """The plan of bytes in hand: ``PAGE`` for a page/frame, else ``INLINE``; keyed on the bytes."""
    sha = sha256_hex(data)
    key = request.key(sha)
    return SourcePlan(Send.PAGE if page is not None else Send.INLINE, Identity(name, key, sha, page), (key,),
                      data=data)


def plan_error(name: str, request: OcrRequest, error: PlanError, page: int | None = None) -> SourcePlan:
    return SourcePlan(Send.ERROR, Identity(name, unreadable_key(request, name), None, page), error=error)


def plan_source(src: Any, request: OcrRequest, *, presigner: Presigner | None = None) -> SourcePlan:
    """How ``src`` is sent and which keys find it (the one rule). ``src`` is a ``runs.sources.Source``:
    ``uri``, ``name``, ``page``, ``error``, ``is_remote_url``, ``read()``. Reads the bytes of an inline
    source (its key is their hash) and signs a presigned one; never raises for one source's fault."""
    uri, page = str(src.uri), getattr(src, "page", None)
    name = getattr(src, "name", None) or uri
    if getattr(src, "error", None):
        return plan_error(name, request, PlanError("UnsupportedSource", str(src.error)), page)
    if uri.startswith("data:"):
        try:
            data = decode_data_url(uri)[1]
        except ImageValidationError as exc:
            return plan_error("data:…", request, PlanError(exc.code, "", exc), page)
        return plan_bytes(f"sha256:{sha256_hex(data)}", data, request, page)
    if getattr(src, "is_remote_url", False) and not request.fetch:
        key = reference_key(request, uri)
        return SourcePlan(Send.FETCHED, Identity(name, key, None, page),
                          (key, legacy_url_key(request, uri)), url=uri, reference=uri)
    if presigner is not None and page is None and presigner.supports(uri):
        try:
            url = presigner.url(uri)
        except Exception as exc:  # e.g. no AWS connection: it cannot go as a URL (nor silently inline)
            return plan_error(name, request, PlanError("SourceReadError", "cannot presign source", exc), page)
        if url is not None:  # None: this store cannot sign, the object goes inline
            key = reference_key(request, uri)
            return SourcePlan(Send.PRESIGNED, Identity(name, key), (key,), url=url,
                              reference=uri)
    try:
        data = src.read()
    except ImageValidationError as exc:  # e.g. a TIFF page over the pixel cap, refused before decoding
        return plan_error(name, request, PlanError(exc.code, "", exc), page)
    except Exception as exc:
        return plan_error(name, request, PlanError("SourceReadError", "cannot read source", exc), page)
    return plan_bytes(name, data, request, page)


def document_key(request: OcrRequest, sha256: str) -> str:
    """The key of a document row: the document's bytes + the request + the unit (never a page's key)."""
    return idempotency_key(request.key(sha256), request.task.value, request.model, {"unit": "document"})


def plan_document(name: str, request: OcrRequest, page_names: Sequence[str], *, whole: bytes | None = None,
                  read_pages: Callable[[], Sequence[bytes]] | None = None) -> DocumentPlan:
    """How the document ``name`` is sent and which keys find its rows (the one rule for documents).

    ``whole``: the file's bytes (None for a group of files); ``read_pages``: the pages' image bytes, called
    only when the pages are sent as images. A PDF goes whole (``UPLOAD``) to a model that reads PDFs; else
    its pages go as images (``INLINE``). A file is keyed on its bytes, a group on its pages' hashes in order.
    A page sent inside a whole file was never read here: its ``sha256`` is None (the document row has it).
    """
    if whole is not None and is_pdf(whole) and request.spec.takes_pdf:
        sha, datas = sha256_hex(whole), [None] * len(page_names)
        send = Send.UPLOAD
    else:
        if read_pages is None:
            raise ValueError(f"{name}: its pages must be read to be sent as images")
        datas = list(read_pages())
        if len(datas) != len(page_names):
            raise ValueError(f"{name}: {len(datas)} page images for {len(page_names)} pages")
        sha = sha256_hex(whole) if whole is not None else sha256_hex("\n".join(sha256_hex(d) for d in datas).encode())
        send = Send.INLINE
    key = document_key(request, sha)
    pages = []
    for n, (page_name, data) in enumerate(zip(page_names, datas, strict=True), 1):
        pkey = page_key(key, request.task.value, request.model, n)
        pages.append(SourcePlan(Send.PAGE, Identity(page_name, pkey, None if data is None else sha256_hex(data), n),
                                (pkey,), data=data))
    return DocumentPlan(send, Identity(name, key, sha), tuple(pages), (key,),
                        data=whole if send is Send.UPLOAD else None)


def payload_identity(image: PreparedImage | str, request: OcrRequest, source: str | None = None) -> Identity:
    """The identity of a payload handed to the client without a plan (``hook.recognize``): a prepared image
    or a ``data:`` URL is keyed on its bytes, any other URL by reference — the rules of :func:`plan_source`."""
    if isinstance(image, PreparedImage):
        sha = image.sha256
    elif image.startswith("data:"):
        sha = sha256_hex(decode_data_url(image)[1])
    else:
        return Identity(source or image, reference_key(request, image))
    return Identity(source or f"sha256:{sha}", request.key(sha), sha)


def find_cached(cache: Any, plan: Plan) -> tuple[str, dict[str, Any]] | None:
    """(key, row) of the first ``ok`` row cached under one of the plan's lookup keys, else None.
    ``cache`` has ``get(key) -> row | None`` (``runs.results_store.ResultCache``, which never raises)."""
    for key in plan.lookup if cache is not None else ():
        row = cache.get(key)
        if row and row.get("status") == "ok":
            return key, row
    return None


__all__ = ["DocumentPlan", "Identity", "Plan", "PlanError", "Send", "SourcePlan", "document_key", "find_cached",
           "legacy_url_key", "payload_identity", "plan_bytes", "plan_document", "plan_error", "plan_source",
           "reference_key", "unreadable_key"]
