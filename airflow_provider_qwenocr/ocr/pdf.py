"""PDF pages → page images (PNG bytes), through pypdfium2 — the optional ``pdf`` extra.

Why pypdfium2: PDFium is the renderer Chrome uses; the wheel is self-contained (no poppler/ghostscript on
the host) and Apache/BSD licensed. It is imported lazily so the provider works without the extra, and the
error says exactly what to install. Pages are rendered at ``dpi`` (150 by default: text stays sharp while
a A4 page stays ≈ 1240×1754 px, well under the model's pixel ceiling after smart_resize).

Memory per page is bounded by construction: the render scale is ``dpi / 72`` but never more than what
keeps the page at ``max_pixels`` (default :data:`RENDER_MAX_PIXELS`, the default ceiling of today's
models), computed from the page size *before* rendering — PDFium then allocates only that bitmap. A
2.6-KB PDF with a 200×200-inch page once rendered 6.3 GB of pixels; it now renders ≤ ``max_pixels``.
Pages larger than the PDF format allows (:data:`MAX_PAGE_POINTS` per side) or thinner than the
model's 200:1 aspect limit are refused before rendering.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator

from .grid import MAX_ASPECT, ImageValidationError

PDF_MAGIC = b"%PDF-"
#: Pixels of a rendered page at most (32-px patches × 8192 tokens: the models' default max_pixels).
RENDER_MAX_PIXELS = 32 * 32 * 8192
#: The PDF format's largest page side (ISO 32000: 14,400 user units), with a little slack.
MAX_PAGE_POINTS = 15_000.0


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


def render_scale(width_pt: float, height_pt: float, *, dpi: int = 150, max_pixels: int | None = None) -> float:
    """The PDFium scale for a page: ``dpi / 72``, lowered so the bitmap has at most ``max_pixels`` pixels.

    Raises :class:`ImageValidationError` for a page no document has (beyond the format's limit, or
    thinner than the model accepts) — before anything is rendered."""
    if not (0 < width_pt <= MAX_PAGE_POINTS and 0 < height_pt <= MAX_PAGE_POINTS):
        raise ImageValidationError(f"page is {width_pt:.0f}x{height_pt:.0f} pt; the PDF format allows at most "
                                   f"{MAX_PAGE_POINTS:.0f} pt per side")
    if max(width_pt, height_pt) / min(width_pt, height_pt) > MAX_ASPECT:
        raise ImageValidationError(f"page is {width_pt:.0f}x{height_pt:.0f} pt; aspect ratio must be at most "
                                   f"{MAX_ASPECT}:1")
    limit = max_pixels or RENDER_MAX_PIXELS
    scale = dpi / 72
    fit = math.sqrt(limit / (width_pt * height_pt))
    return min(scale, fit * 0.999)  # rounding of the bitmap size must not cross the limit


def render_pages(data: bytes, *, dpi: int = 150, pages: list[int] | None = None,
                 max_pixels: int | None = None) -> Iterator[tuple[int, bytes]]:
    """Yield ``(page_number, png_bytes)``, page numbers starting at 1, one page in memory at a time,
    each rendered at no more than ``max_pixels`` pixels (see :func:`render_scale`)."""
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
                width_pt, height_pt = page.get_size()
                scale = render_scale(width_pt, height_pt, dpi=dpi, max_pixels=max_pixels)
                image = page.render(scale=scale).to_pil()
            finally:
                page.close()
            buf = io.BytesIO()
            image.save(buf, "PNG", compress_level=1)
            yield number, buf.getvalue()
    finally:
        doc.close()
