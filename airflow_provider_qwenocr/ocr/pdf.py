"""PDF pages → page images (PNG bytes), through pypdfium2 — the optional ``pdf`` extra.

Why pypdfium2: PDFium is the renderer Chrome uses; the wheel is self-contained (no poppler/ghostscript on
the host) and Apache/BSD licensed. It is imported lazily so the provider works without the extra, and the
error says exactly what to install. Pages are rendered at ``dpi`` (150 by default: text stays sharp while
a A4 page stays ≈ 1240×1754 px, well under the model's pixel ceiling after smart_resize).
"""

from __future__ import annotations

import io
from collections.abc import Iterator

PDF_MAGIC = b"%PDF-"


class PdfSupportMissing(ImportError):
    """pypdfium2 is not installed."""


def is_pdf(data: bytes) -> bool:
    return data[:1024].lstrip()[:5] == PDF_MAGIC


def _pdfium():
    try:
        import pypdfium2
    except ImportError as exc:
        raise PdfSupportMissing(
            "PDF input needs pypdfium2: pip install 'airflow-provider-qwenocr[pdf]'"
        ) from exc
    return pypdfium2


def page_count(data: bytes) -> int:
    pdfium = _pdfium()
    doc = pdfium.PdfDocument(data)
    try:
        return len(doc)
    finally:
        doc.close()


def render_pages(data: bytes, *, dpi: int = 150, pages: list[int] | None = None) -> Iterator[tuple[int, bytes]]:
    """Yield ``(page_number, png_bytes)``, page numbers starting at 1, one page in memory at a time."""
    if not is_pdf(data):
        raise ValueError("not a PDF (missing %PDF- header)")
    pdfium = _pdfium()
    doc = pdfium.PdfDocument(data)
    try:
        wanted = pages or list(range(1, len(doc) + 1))
        for number in wanted:
            if not 1 <= number <= len(doc):
                raise ValueError(f"page {number} out of range 1..{len(doc)}")
            page = doc[number - 1]
            try:
                image = page.render(scale=dpi / 72).to_pil()
            finally:
                page.close()
            buf = io.BytesIO()
            image.save(buf, "PNG", compress_level=1)
            yield number, buf.getvalue()
    finally:
        doc.close()
