"""A whole document's answer as results: one :class:`OcrResult` per page and one for the document.

Why: the Responses API (``qwen3.5-ocr``) reads a whole PDF — or several page images — in one request and
answers once: the text (or the answer to a combined prompt) for the document, the task's ``ocr_result`` for
the document (one ``kv_result`` over all pages for key information extraction), and
``ocr_result.layouts[]``: blocks with ``pageNum`` (1-based), ``type``, ``text`` and ``markdownContent``
(reference §10, a third-party capture: nothing more of its shape is published). Users think in documents
but query pages, so the answer becomes both, in today's result type: the document result has
``page=None`` and carries the request's usage and cost; each page result has ``page`` = its number, the
text of its blocks, and no usage or cost of its own (they were billed once, on the document — summing page
and document rows never counts a token twice).

Each row carries its markdown (``markdown``: the page's blocks, or the whole document's) and the document
row the number of pages it covers (``pages``). No Airflow import.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from .results import OcrResult, Usage, idempotency_key


@dataclass
class DocumentResult:
    """One document's results: ``document`` (``page=None``) and ``pages`` (``page`` = 1 … :attr:`page_count`)."""

    document: OcrResult
    pages: list[OcrResult] = field(default_factory=list)
    markdown: str | None = None  # the whole document's markdown, pages in order (None: no layouts came back)
    page_markdown: list[str] = field(default_factory=list)  # per page, same order as ``pages``
    layouts: list[dict[str, Any]] = field(default_factory=list)  # the service's blocks, as sent

    @property
    def page_count(self) -> int:
        return len(self.pages)

    @property
    def ok(self) -> bool:
        return self.document.ok


def _page_number(block: dict[str, Any]) -> int | None:
    try:
        n = int(block.get("pageNum"))
    except (TypeError, ValueError):
        return None
    return n if n >= 1 else None


def page_key(document_key: str | None, task: str, model: str, page: int) -> str | None:
    """The idempotency key of page ``page`` of a document keyed ``document_key``."""
    return None if document_key is None else idempotency_key(document_key, task, model, {"page": page})


def split_pages(document: OcrResult, layouts: Any, *, pages: int = 0) -> DocumentResult:
    """``document`` (the whole answer, ``page=None``) plus one result per page from ``layouts``.

    ``pages`` = the number of pages sent when known (images, PDFs whose page count was given): a page with
    no block (blank, or nothing read) still gets its result, with empty text. Without any layout block
    there is no page split to report: ``pages`` is empty and the document result stands alone. Blocks
    without a readable ``pageNum`` are skipped; text joins a page's blocks with newlines, markdown with
    blank lines.
    """
    blocks = [b for b in layouts if isinstance(b, dict)] if isinstance(layouts, list) else []
    by_page: dict[int, list[dict[str, Any]]] = {}
    for block in blocks:
        n = _page_number(block)
        if n is not None:
            by_page.setdefault(n, []).append(block)
    count = max([pages, *by_page]) if by_page else 0
    results, markdown = [], []
    for n in range(1, count + 1):
        own = by_page.get(n, [])
        text = "\n".join(str(b.get("text") or "") for b in own if b.get("text"))
        md = "\n\n".join(str(b.get("markdownContent") or "") for b in own if b.get("markdownContent"))
        results.append(replace(
            document, page=n, key=page_key(document.key, document.task, document.model, n), text=text,
            kv=None, words=None, html=None, latex=None, usage=Usage(), cost=None, width=None, height=None,
            markdown=md or None,
        ))
        markdown.append(md)
    whole = "\n\n".join(m for m in markdown if m) if by_page else None
    if results:
        document = replace(document, pages=len(results), markdown=whole or None)
    return DocumentResult(document=document, pages=results, markdown=whole, page_markdown=markdown,
                          layouts=blocks)
