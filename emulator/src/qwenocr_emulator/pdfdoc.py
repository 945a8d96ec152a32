"""Whole PDFs as the Responses API takes them: the documented limits, then one page image per page.

Why its own file: a PDF is the one input that is not an image. The service checks it as a document
(reference §10: ``input_file`` with a ``file_url``, ≤ 50 pages and ≤ 100 MB per file, Responses API only)
and the model then reads every page. The emulator does the same: the limits first (size before parsing,
pages before rendering, so a refused 51-page file costs nothing), then each page becomes a ``Received``
image that the existing engine reads like any other.

Rendering: 2× (144 dpi). The service's own rendering resolution is not published; 144 dpi makes a
letter page 1224×1584 px (≈ 1,900 tokens at 32-px patches), legible for OCR, and the page's grid and
tokens follow the documented ``smart_resize`` with the model's default pixel bounds. The ``echo``
engine never renders (it needs only the size): its line names the page as ``sha256(pdf)#page=N``.

pdfium is not thread-safe (pypdfium2's documentation), and OCR runs in worker threads: every pdfium call
holds one module lock.
"""

from __future__ import annotations

import hashlib
import threading

from qwenocr_emulator import imaging
from qwenocr_emulator.engine import EchoEngine
from qwenocr_emulator.models import MB, Model
from qwenocr_emulator.recognize import Received
from qwenocr_emulator.state import EmulatorState, invalid_parameter

MAX_PDF_PAGES = 50
MAX_PDF_BYTES = 100 * MB
RENDER_SCALE = 2.0  # 144 dpi (PDF user space is 72 units per inch)
_PDFIUM_LOCK = threading.Lock()


def is_pdf(data: bytes) -> bool:
    """PDF readers accept the ``%PDF-`` header anywhere in the first 1024 bytes."""
    return b"%PDF-" in data[:1024]


class PagePayload(imaging.Payload):
    """A PDF page as "received": the PDF's bytes, identified per page (the echo engine's digest)."""

    def __init__(self, pdf: bytes, page: int, pdf_digest: str):
        super().__init__(pdf)
        self._page_digest = hashlib.sha256(f"{pdf_digest}#page={page}".encode()).hexdigest()

    def digest(self) -> str:
        return self._page_digest


def check_size(data: bytes, name: str) -> None:
    if len(data) > MAX_PDF_BYTES:
        raise invalid_parameter(f"The PDF {name[:200]} is {len(data)} bytes; a PDF may be at most "
                                f"{MAX_PDF_BYTES // MB} MB.")


def pages(data: bytes, name: str, state: EmulatorState, model: Model) -> list[Received]:
    """Every page of the PDF as a ``Received`` image, in order; 400 InvalidParameter for what the service refuses."""
    import pypdfium2 as pdfium

    check_size(data, name)
    decode = not isinstance(state.engine, EchoEngine)
    digest = hashlib.sha256(data).hexdigest()
    hi = min(model.default_max_pixels, model.image_pixel_cap)
    out: list[Received] = []
    with _PDFIUM_LOCK:
        try:
            doc = pdfium.PdfDocument(data)
        except pdfium.PdfiumError as exc:
            raise invalid_parameter(f"The file {name[:200]} is not a readable PDF: {exc}") from exc
        try:
            n = len(doc)
            if n == 0:
                raise invalid_parameter(f"The PDF {name[:200]} has no pages.")
            if n > MAX_PDF_PAGES:
                raise invalid_parameter(f"The PDF {name[:200]} has {n} pages; a PDF may have at most "
                                        f"{MAX_PDF_PAGES} pages.")
            for i in range(n):
                page = doc[i]
                try:
                    pw, ph = page.get_size()
                    img = None
                    if decode:
                        bitmap = page.render(scale=RENDER_SCALE)
                        img = bitmap.to_pil().convert("RGB")
                        bitmap.close()
                        w, h = img.size
                    else:
                        w, h = max(1, round(pw * RENDER_SCALE)), max(1, round(ph * RENDER_SCALE))
                finally:
                    page.close()
                try:
                    imaging.check_shape(w, h)
                except imaging.ImageRefused as exc:
                    raise invalid_parameter(f"Page {i + 1} of {name[:200]}: {exc}") from exc
                grid = imaging.smart_resize(h, w, model.patch, model.default_min_pixels, hi)
                out.append(Received(data=PagePayload(data, i + 1, digest), name=f"{name}#page={i + 1}",
                                    size=(w, h), grid=grid, tokens=imaging.image_tokens(grid, model.patch),
                                    enable_rotate=False, img=img))
        finally:
            doc.close()
    return out
