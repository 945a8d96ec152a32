"""The sources of one multi-page file: a PDF's pages, a multi-page TIFF's pages, an animated GIF/WebP's frames.

Why apart from :mod:`.sources`: listing decides *which* files are sources; this decides how one file
becomes several (each page read lazily, the file's bytes kept only while its pages are being rendered).
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from airflow_provider_qwenocr.dashscope.errors import describe

if TYPE_CHECKING:
    from airflow_provider_qwenocr.runs.sources import Source


# -- PDF pages --------------------------------------------------------------------------------------


def _pdf_module():
    """``airflow_provider_qwenocr.ocr.pdf`` if it and pypdfium2 are importable, else None."""
    try:
        return importlib.import_module("airflow_provider_qwenocr.ocr.pdf")
    except ImportError:
        return None


def pdf_pages(uri: str, reader: Callable[[], bytes], max_pixels: int | None = None) -> list[Source]:
    """One source per page. The PDF is read once here to count pages; each page re-reads it when its
    turn comes (a small per-PDF cache avoids re-downloading it for every page of the same file)."""
    from airflow_provider_qwenocr.runs.sources import Source

    pdf = _pdf_module()
    if pdf is None or not hasattr(pdf, "page_count") or not hasattr(pdf, "render_pages"):
        msg = "PDF input needs the pdf extra: pip install 'airflow-provider-qwenocr[pdf]'"
        return [Source(uri, error=msg)]
    try:
        n_pages = int(pdf.page_count(reader()))
    except Exception as exc:  # a corrupt PDF is that document's problem, not the whole task's
        return [Source(uri, error=f"cannot read PDF: {describe(exc)}")]
    cached = _OnePdf(reader, n_pages)

    def render(number: int) -> bytes:
        return next(iter(pdf.render_pages(cached.get(), pages=[number], max_pixels=max_pixels)))[1]

    return [Source(uri, page=n, _reader=(lambda n=n: render(n)), _file=reader) for n in range(1, n_pages + 1)]


def frames(uri: str, reader: Callable[[], bytes], max_pixels: int | None = None) -> list[Source]:
    """One source per page of a multi-page TIFF / frame of an animated GIF or WebP; a single-frame file
    (or one whose header cannot be read: the decoder reports that as its row) stays one source."""
    from airflow_provider_qwenocr.ocr import images
    from airflow_provider_qwenocr.runs.sources import Source

    try:
        n_frames = images.frame_count(reader())
    except Exception:
        n_frames = 1
    if n_frames <= 1:
        return [Source(uri, _reader=reader)]
    cached = _OnePdf(reader, n_frames)
    return [Source(uri, page=n, _reader=(lambda n=n: images.frame_png(cached.get(), n - 1, max_pixels)),
                   _file=reader) for n in range(1, n_frames + 1)]


class _OnePdf:
    """Keeps the bytes of one PDF (or multi-frame image) while its pages are being rendered, then lets them go."""

    def __init__(self, reader: Callable[[], bytes], n_pages: int) -> None:
        self._reader = reader
        self._n_pages = n_pages
        self._lock = threading.Lock()
        self._data: bytes | None = None
        self._uses = 0

    def get(self) -> bytes:
        with self._lock:
            data = self._data if self._data is not None else self._reader()
            self._uses += 1
            # keep the bytes for the next page, drop them after the last one (memory stays flat)
            self._data = data if self._uses < self._n_pages else None
            return data
