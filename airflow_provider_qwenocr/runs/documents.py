"""The realtime loop for documents: each document → cache? → its requests → page rows + ONE document row.

Why a loop of its own beside ``runs/realtime.py``: there a source is one image and one request; here a
source is a **document** — an image, a multi-frame TIFF, a PDF, or a group of images the user says belong
together (a list inside ``images``: ``images=[["inv_p1.png", "inv_p2.png"], "contract.pdf"]``) — and one
document may be one request or several (``runs/document_send.py`` says how, per model). The rows are the
same type as today's: one per page (``page`` 1-based) and one per document (``page`` None, ``pages`` N).

Units (the operator's ``unit``): ``"document"`` sends documents as above; ``"page"`` is today's one page
per request (``runs/realtime.py``). The default (None) is ``"document"`` for models that read whole PDFs
(``qwen3.5-ocr``) and ``"page"`` for the others — what each model's documentation recommends.

How a document is sent and which keys find its rows is its plan (``ocr.plan.plan_document``: the
document row under ``document_key`` — its bytes + the request + the unit — each page row under
``layouts.page_key(document key, page)``); this loop acts on it and caches in the per-key store of pages. A re-run that finds the document row and all N page rows makes
no request; a change of unit or model is another key and pays again. A document is cached only when every
request of it answered; a failed document gets error rows (each page and the document) and is redone.

Failure isolation and stopping are as in ``runs/realtime.py``: one document's fault is its error rows;
:class:`AccountError` / :class:`ServiceUnavailableError` stop the run.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_qwenocr.dashscope.errors import (
    AccountError,
    QwenOcrError,
    ServiceUnavailableError,
    describe,
    redact,
)
from airflow_provider_qwenocr.ocr.images import sha256_hex
from airflow_provider_qwenocr.ocr.layouts import page_key
from airflow_provider_qwenocr.ocr.models import ModelSpec
from airflow_provider_qwenocr.ocr.plan import Identity, Send, document_key, plan_document
from airflow_provider_qwenocr.ocr.request import OcrRequest
from airflow_provider_qwenocr.ocr.results import OcrResult
from airflow_provider_qwenocr.runs import document_send as send
from airflow_provider_qwenocr.runs.results_store import ResultCache, ResultsWriter
from airflow_provider_qwenocr.runs.sources import Source, expand_sources
from airflow_provider_qwenocr.runs.summary import OcrSummary

log = logging.getLogger(__name__)

UNITS = ("document", "page")
#: Documents named with their figures in the XCom summary (the rest are in the results file).
MAX_DOCUMENTS_IN_SUMMARY = 20


def resolve_unit(unit: str | None, spec: ModelSpec) -> str:
    """``"document"`` or ``"page"``; None picks what the model's documentation recommends (module docstring)."""
    if unit in (None, "", "auto"):
        return "document" if spec.takes_pdf else "page"
    if unit not in UNITS:
        raise ValueError(f"unit must be 'document' or 'page', not {unit!r}")
    return str(unit)


@dataclass
class Document:
    """One document: its name and its sources (pages in order; one source for a single image)."""

    name: str
    sources: list[Source]
    group: bool = False  # several files the user grouped (keyed on their pages' bytes, not one file's)

    def page_name(self, number: int) -> str:
        return self.sources[number - 1].name if self.group or len(self.sources) > 1 else f"{self.name}#page={number}"


def expand_documents(images: Any, **kwargs: Any) -> list[Document]:
    """``images`` (as for ``expand_sources``) as documents: a file's pages or frames are one document; a list
    inside the list is one document made of its entries' pages, in order."""
    entries = images if isinstance(images, (list, tuple)) else [images]
    docs: list[Document] = []
    flat: list[Any] = []

    def flush() -> None:
        if flat:
            docs.extend(_by_file(expand_sources(list(flat), **kwargs)))
            flat.clear()

    for entry in entries:
        if isinstance(entry, (list, tuple)):
            flush()
            members = expand_sources(list(entry), **kwargs)
            docs.append(Document(" + ".join(dict.fromkeys(s.uri for s in members)), members, group=True))
        else:
            flat.append(entry)
    flush()
    return docs


def _by_file(sources: Iterable[Source]) -> list[Document]:
    docs: list[Document] = []
    for src in sources:
        if docs and src.page is not None and docs[-1].sources[-1].uri == src.uri and not docs[-1].group:
            docs[-1].sources.append(src)
        else:
            docs.append(Document(src.uri, [src]))
    return docs


@dataclass
class DocumentRun:
    """What one run of documents needs besides the documents: the request, the clients, the cache."""

    request: OcrRequest
    client: Any  # the native RealtimeClient (its config, limiter and breaker are shared with ``responses``)
    cache: ResultCache | None = None
    secret: str | None = None
    responses: Any = field(default=None)  # a ResponsesClient for Responses-API models (made on demand)


def _cached(run: DocumentRun, ident: Identity, names: list[str]) -> tuple[OcrResult, list[OcrResult]] | None:
    """The document row and every page row (keys: ``ident.key`` and its page keys), all cached ``ok`` — else
    None (the document is sent again)."""
    if run.cache is None:
        return None
    row = run.cache.get(ident.key)
    if not row or row.get("pages") != len(names):
        return None
    pages = []
    for n, name in enumerate(names, 1):
        page = Identity(name, page_key(ident.key, run.request.task.value, run.request.model, n), None, n)
        cached = run.cache.get(page.key)
        if cached is None:
            return None
        pages.append(OcrResult.from_row(page.reuse(cached)))
    return OcrResult.from_row(ident.reuse(row)), pages


def _failed(doc: Document, ident: Identity, request: OcrRequest, code: str, message: str,
            **kw: Any) -> tuple[OcrResult, list[OcrResult]]:
    n_pages = len(doc.sources)
    rows = [OcrResult.failure(doc.page_name(n), request.task.value, request.model, code, message, page=n,
                              key=page_key(ident.key, request.task.value, request.model, n), **kw)
            for n in range(1, n_pages + 1)]
    return OcrResult.failure(ident.source, request.task.value, request.model, code, message, key=ident.key,
                             sha256=ident.sha256, pages=n_pages, **kw), rows


def process_document(doc: Document, run: DocumentRun) -> tuple[OcrResult, list[OcrResult], bool, int]:
    """(document row, page rows, served from the cache, requests made) for one document, as its plan
    (``ocr.plan.plan_document``) says. Raises only :class:`AccountError` / :class:`ServiceUnavailableError`."""
    request = run.request
    ident = Identity(doc.name, document_key(request, sha256_hex(f"unreadable:{doc.name}".encode())))
    errors = [s for s in doc.sources if s.error]
    if errors:
        return (*_failed(doc, ident, request, "UnsupportedSource", str(errors[0].error)), False, 0)
    names = [doc.page_name(n) for n in range(1, len(doc.sources) + 1)]
    try:
        whole = None if doc.group else doc.sources[0].read_file()  # the sources' bounded reader
        if whole is not None:  # a file's rows are found by its bytes alone: a cached document renders no page
            sha = sha256_hex(whole)
            hit = _cached(run, Identity(doc.name, document_key(request, sha), sha), names)
            if hit is not None:
                return hit[0], hit[1], True, 0
        plan = plan_document(doc.name, request, names, whole=whole, read_pages=lambda: [s.read() for s in doc.sources])
        ident = plan.identity
        hit = _cached(run, ident, names) if whole is None else None
        if hit is not None:
            return hit[0], hit[1], True, 0
        if plan.send is Send.UPLOAD:
            sent = send.send_upload(run.responses, plan, request)
        else:
            images = [request.prepare(p.data, sha256=p.identity.sha256) for p in plan.pages]
            sent = send.send_inline(run.client, run.responses if send.uses_responses_api(request) else None,
                                    images, plan, request)
    except (AccountError, ServiceUnavailableError):
        raise
    except QwenOcrError as exc:
        return (*_failed(doc, ident, request, exc.code, redact(exc.message, run.secret),
                         request_id=exc.request_id), False, 0)
    except Exception as exc:  # unreadable, undecodable, a page over the limits …: this document's rows only
        code = getattr(exc, "code", None) or type(exc).__name__
        return (*_failed(doc, ident, request, str(code), redact(describe(exc), run.secret)), False, 0)
    if sent.document.ok and run.cache is not None:
        for row in (*sent.pages, sent.document):  # the document last: it is the marker of a complete set
            run.cache.put(row)
    return sent.document, sent.pages, False, sent.requests


def document_figures(row: OcrResult, *, cached: bool, requests: int) -> dict[str, Any]:
    """The per-document line of the summary: pages, requests, tokens and cost (None = unknown, never 0)."""
    return {"source": row.source, "status": row.status, "pages": row.pages, "requests": requests,
            "cached": cached, "total_tokens": 0 if cached else row.usage.total_tokens,
            "cost": {"usd": 0.0, "cny": 0.0} if cached else dict(row.cost or {"usd": None, "cny": None})}


def figures_text(fig: dict[str, Any]) -> str:
    """One log line for a document's figures; an unknown price says ``unknown``."""
    def money(value: Any) -> str:
        return "unknown" if value is None else f"{value:.6f}"

    how = "from cache" if fig["cached"] else f"{fig['requests']} request(s)"
    return (f"{fig['source']}: {fig['pages']} page(s), {how}, {fig['total_tokens']} tokens, "
            f"USD {money(fig['cost'].get('usd'))} / CNY {money(fig['cost'].get('cny'))} [{fig['status']}]")


def responses_client(client: Any) -> Any:
    """A Responses-API client sharing ``client``'s connection, limiter and breaker (one quota, one outage)."""
    from airflow_provider_qwenocr.dashscope.responses import ResponsesClient

    return ResponsesClient(client.config, limiter=getattr(client, "limiter", None),
                           breaker=getattr(client, "breaker", None))


def _native(client: Any) -> bool:
    from airflow_provider_qwenocr.dashscope.realtime import RealtimeClient

    return isinstance(client, RealtimeClient)


def page_client(client: Any, request: OcrRequest) -> Any:
    """The client of ``unit="page"``: the native one, or for ``qwen3.5-ocr`` (realtime through the Responses
    API only, reference §10) a Responses client on the same connection — one page image per request either
    way. Only the native client is swapped: any other client object (a test double) is used as given."""
    return responses_client(client) if send.uses_responses_api(request) and _native(client) else client


def run_documents(docs: list[Document], run: DocumentRun, writer: ResultsWriter, *, max_concurrency: int = 4,
                  progress: Any = None) -> tuple[OcrSummary, list[dict[str, Any]]]:
    """Process ``docs`` (at most ``max_concurrency`` at once), write every page row and document row; return
    the summary (pages count as images; usage and cost are the documents') and each document's figures."""
    if send.uses_responses_api(run.request) and run.responses is None:
        run.responses = responses_client(run.client) if _native(run.client) else run.client
    summary, figures = OcrSummary(), []
    lock, stop = threading.Lock(), threading.Event()

    def one(doc: Document) -> None:
        if stop.is_set():
            return
        try:
            document, pages, cached, requests = process_document(doc, run)
        except (AccountError, ServiceUnavailableError):
            stop.set()
            raise
        with lock:
            for page in pages:
                writer.write(page)
                summary.add(page, cached=cached)
                if progress is not None:
                    progress.update(ok=page.ok, cached=cached)
            writer.write(document)
            if not cached:  # the document row holds what its requests were billed
                summary.usage = summary.usage + document.usage
                _add_cost(summary, document)
            figures.append(document_figures(document, cached=cached, requests=requests))
            log.info("document %s", figures_text(figures[-1]))

    with ThreadPoolExecutor(max_workers=max(1, int(max_concurrency)), thread_name_prefix="qwenocr-doc") as pool:
        for fut in [pool.submit(one, d) for d in docs]:
            fut.result()  # AccountError / ServiceUnavailableError propagate from here
    return summary, figures


def _add_cost(summary: OcrSummary, document: OcrResult) -> None:
    from airflow_provider_qwenocr.ocr.results import add_cost

    add_cost(summary.cost, document.cost)


__all__ = ["Document", "DocumentRun", "MAX_DOCUMENTS_IN_SUMMARY", "UNITS", "document_figures",
           "expand_documents", "figures_text", "page_client", "process_document", "resolve_unit",
           "responses_client", "run_documents"]
