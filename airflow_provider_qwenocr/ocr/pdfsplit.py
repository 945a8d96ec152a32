"""A PDF too big for one request → parts of ≤ 50 pages and ≤ 100 MB, without rendering a page.

Why split at all: ``qwen3.5-ocr`` reads a whole PDF per request, but at most 50 pages and 100 MB per file
(reference §10; the service refuses a 51st page). A 60-page contract is therefore two requests, pages
1–50 and 51–60. Why without rendering: a rendered page is a bitmap, 10–100× the size of the page in the
PDF, and the service renders it again anyway; PDFium copies page objects between documents
(``PdfDocument.new()`` + ``import_pages``), so a part is the original pages, fonts and images, byte-light.

Bounded memory: one part is built, saved and yielded at a time; the caller sends it and drops it before
the next one is made. A part that saves to more than ``max_bytes`` is halved by page range until it fits;
a single page over the limit cannot be split without rendering and is refused (:class:`PdfPartTooLarge`).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass, field

from .models import MAX_PDF_BYTES, MAX_PDF_PAGES
from .pdf import _pdfium, is_pdf


class PdfPartTooLarge(ValueError):
    """One page alone is over the byte limit of a request: it cannot be sent as a PDF part."""


@dataclass(frozen=True)
class PdfPart:
    """Pages ``first``…``last`` (1-based, inclusive) of the original as a PDF of their own."""

    first: int
    last: int
    data: bytes = field(repr=False)

    @property
    def pages(self) -> int:
        return self.last - self.first + 1


def _save(pdfium, source, first: int, last: int) -> bytes:
    part = pdfium.PdfDocument.new()
    try:
        part.import_pages(source, list(range(first - 1, last)))
        buf = io.BytesIO()
        part.save(buf)
        return buf.getvalue()
    finally:
        part.close()


def split_pdf(data: bytes, *, max_pages: int = MAX_PDF_PAGES, max_bytes: int = MAX_PDF_BYTES) -> Iterator[PdfPart]:
    """Yield the parts of ``data`` in page order, each ≤ ``max_pages`` pages and ≤ ``max_bytes`` bytes.

    A PDF already within both limits is yielded as it is (one part, the original bytes: nothing is
    re-written, so its hash — and the cache key of what is sent — stays the file's own).
    """
    if not is_pdf(data):
        raise ValueError("not a PDF (missing %PDF- header)")
    if max_pages < 1 or max_bytes < 1:
        raise ValueError("max_pages and max_bytes must be positive")
    pdfium = _pdfium()
    source = pdfium.PdfDocument(data)
    try:
        total = len(source)
        if total <= max_pages and len(data) <= max_bytes:
            yield PdfPart(1, total, data)
            return
        for start in range(1, total + 1, max_pages):
            yield from _fit(pdfium, source, start, min(start + max_pages - 1, total), max_bytes)
    finally:
        source.close()


def _fit(pdfium, source, first: int, last: int, max_bytes: int) -> Iterator[PdfPart]:
    """Pages first..last as one part, or halved until every half fits in ``max_bytes``."""
    blob = _save(pdfium, source, first, last)
    if len(blob) <= max_bytes:
        yield PdfPart(first, last, blob)
        return
    if first == last:
        raise PdfPartTooLarge(f"page {first} alone is {len(blob):,} bytes as a PDF; a request takes at most "
                              f"{max_bytes:,}")
    del blob
    middle = (first + last) // 2
    yield from _fit(pdfium, source, first, middle, max_bytes)
    yield from _fit(pdfium, source, middle + 1, last, max_bytes)


def page_ranges(total: int, max_pages: int = MAX_PDF_PAGES) -> list[tuple[int, int]]:
    """The (first, last) page ranges :func:`split_pdf` starts from for ``total`` pages (the request count
    when no part is over the byte limit): 60 pages → [(1, 50), (51, 60)]."""
    return [(s, min(s + max_pages - 1, total)) for s in range(1, total + 1, max_pages)]


__all__ = ["PdfPart", "PdfPartTooLarge", "page_ranges", "split_pdf"]
