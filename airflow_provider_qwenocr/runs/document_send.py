"""How ONE document reaches the service, by model — the part of the document plan that makes requests.

Why per model (reference §10):

- ``qwen3.5-ocr`` (the Responses API): a whole PDF per request, ``input_file`` with a ``file_url``; at most
  50 pages and 100 MB per file, so a larger PDF is split without rendering (``ocr/pdfsplit.py``) and each
  part is one request. A worker with only a folder of PDFs and a key has no URL to give: each part goes
  through the service's **temporary upload** (``dashscope/uploads.py``: an ``oss://`` URL valid 48 h, bound
  to the model). Image documents (an image, TIFF frames, a group of images) go as ``input_image`` parts
  of one request, at most 50 per request.
- The older models (the native API): the documented way to send a multi-page document is several images
  in one message, all counted against the model's input limit (30,000 tokens for ``qwen-vl-ocr``, ≈ 3
  full-resolution pages). Pages are rendered and prepared as today and packed into requests greedily in
  page order within that limit.

Each request answers for its pages; :func:`send_document` returns those answers and the page rows, and
``ocr/document.py`` makes the document row. Page rows of a Responses answer carry their own text and
markdown (``ocr_result.layouts``); a native request of several pages answers once for all of them, so its
page rows carry the page's name, number and image hash but no text (the document row has it; ask for
``unit="page"`` to have one answer per page). Usage and cost are the requests' and live on the document
row only — page rows carry none, so summing rows never counts a token twice.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, replace
from typing import Any

from airflow_provider_qwenocr.dashscope.calls import text_tokens
from airflow_provider_qwenocr.dashscope.responses import FileInput, ResponsesClient
from airflow_provider_qwenocr.ocr.document import document_row
from airflow_provider_qwenocr.ocr.images import PreparedImage
from airflow_provider_qwenocr.ocr.models import MAX_PDF_PAGES, RESPONSES_API
from airflow_provider_qwenocr.ocr.pdfsplit import split_pdf
from airflow_provider_qwenocr.ocr.plan import DocumentPlan, Identity
from airflow_provider_qwenocr.ocr.request import OcrRequest
from airflow_provider_qwenocr.ocr.results import OcrResult, Usage

#: Tokens kept free in a native multi-image request for the chat template and rounding.
TEMPLATE_MARGIN = 64


@dataclass
class SentDocument:
    """What the requests of one document returned: the document row and its page rows (page 1 … N)."""

    document: OcrResult
    pages: list[OcrResult]
    requests: int


def _page_row(row: OcrResult, page: Identity) -> OcrResult:
    """A page row of the document under its plan's identity; usage and cost stay on the document row."""
    return replace(row, **page.fields(), usage=Usage(), cost=None, pages=None)


def _no_answer_of_its_own(row: OcrResult) -> OcrResult:
    """A page of a request that answered once for several pages: its identity, no text of its own."""
    return replace(row, text=None, kv=None, words=None, html=None, latex=None, markdown=None)


def uses_responses_api(request: OcrRequest) -> bool:
    return request.spec.api == RESPONSES_API


def pack_pages(tokens: list[int], budget: int, max_per_request: int | None = None) -> list[list[int]]:
    """Page indexes grouped in order so each group's tokens fit ``budget`` (a page over it goes alone)."""
    groups: list[list[int]] = []
    used = 0
    for i, t in enumerate(tokens):
        full = max_per_request is not None and groups and len(groups[-1]) >= max_per_request
        if not groups or used + t > budget or full:
            groups.append([])
            used = 0
        groups[-1].append(i)
        used += t
    return groups


def native_budget(request: OcrRequest) -> int:
    """Image tokens one native request may carry: the model's input limit less the prompt and template."""
    limit = request.spec.max_input or request.spec.max_image_tokens
    return max(1, limit - text_tokens(request.text) - TEMPLATE_MARGIN)


def send_upload(client: ResponsesClient, plan: DocumentPlan, request: OcrRequest) -> SentDocument:
    """``Send.UPLOAD``: a PDF to a Responses-API model in ≤ 50-page parts, each through the temporary upload
    (a 48-h ``oss://`` URL) and read whole by the service; page rows from the answer's layouts."""
    answers: list[OcrResult] = []
    pages: list[OcrResult] = []
    data = plan.data or b""
    limit = request.spec.max_pdf_pages or MAX_PDF_PAGES
    for part in split_pdf(data, max_pages=limit, max_bytes=request.spec.max_pdf_bytes or len(data) + 1):
        with tempfile.TemporaryDirectory(prefix="qwenocr-part-") as tmp:
            path = os.path.join(tmp, f"pages-{part.first}-{part.last}.pdf")
            with open(path, "wb") as fh:
                fh.write(part.data)
            url = client.upload(path, model=request.model)
        result = client.recognize_document([FileInput(url, pages=part.pages)], request=request,
                                           source=plan.identity.source)
        answers.append(result.document)
        own = {row.page: row for row in result.pages}
        for n in range(part.first, part.last + 1):
            row = own.get(n - part.first + 1) or _no_answer_of_its_own(result.document)
            pages.append(_page_row(row, plan.pages[n - 1].identity))
    return SentDocument(document_row(plan.identity, answers, pages, page_count=len(pages)), pages, len(answers))


def send_inline(client: Any, responses: ResponsesClient | None, images: list[PreparedImage], plan: DocumentPlan,
                request: OcrRequest) -> SentDocument:
    """``Send.INLINE``: the page images, several per request (Responses API: ≤ 50; native: within the input
    limit); page rows from the answers (see the module docstring)."""
    if responses is not None:
        groups = pack_pages([1] * len(images), MAX_PDF_PAGES)
    else:
        groups = pack_pages([i.tokens + 2 for i in images], native_budget(request))
    answers: list[OcrResult] = []
    pages: list[OcrResult] = []
    for group in groups:
        chunk = [images[i] for i in group]
        if responses is not None:
            result = responses.recognize_document(chunk, request=request, source=plan.identity.source)
            answer, own = result.document, {row.page: row for row in result.pages}
        else:
            answer = client.recognize_images(chunk, request=request, identity=plan.identity)
            own = {1: answer} if len(group) == 1 else {}
        answers.append(answer)
        for offset, i in enumerate(group):
            row = own.get(offset + 1) or _no_answer_of_its_own(answer)
            pages.append(_page_row(row, plan.pages[i].identity))
    return SentDocument(document_row(plan.identity, answers, pages, page_count=len(pages)), pages, len(answers))


__all__ = ["SentDocument", "native_budget", "pack_pages", "send_inline", "send_upload", "uses_responses_api"]
