"""Bounded reads of one source: a byte cap checked before the body, a header check, a wall-clock deadline.

Why (issue 20 #3, #4): a source was read whole before anything judged it. A 2 GB non-image named
``scan.png`` was read into memory (peak 2.2 GB) only to become an error row; a ``fetch=True`` URL that
drips a byte every 2 s held the task for minutes, and an endless one grew to 2.5 GB in 39 s.

The bounds are the service's own limits where they apply, and the decoder's where they do not:

- a downloaded image (``fetch=True``): the model's image limit (:func:`image_byte_cap`: 10 MB, 20 MB for
  ``qwen3.5-ocr``) — the service itself refuses more when it fetches a URL;
- a PDF from anywhere: :data:`MAX_PDF_SOURCE_BYTES` (500 MiB): five times the service's 100 MB per request,
  because a larger PDF is split without rendering into parts the service takes (``ocr/pdfsplit.py``);
- a stored image (local, ``s3://``, object storage): :data:`MAX_STORED_IMAGE_BYTES`, an uncompressed image
  at the decoder's pixel ceiling (``MAX_SOURCE_PIXELS`` × 4 bytes): a larger file cannot be an image we
  would decode, and a stored image is resized here before it is sent, so the service's 10 MB does not apply.

The size is checked before the body is read (``stat``, the object's ``ContentLength``, the
``Content-Length`` header); the first bytes are checked against the image/PDF signatures before the rest
(a file that is no image at all is refused after 4 KiB, whatever its name says; a misnamed JPEG still
passes: the decoder judges the format, not the name).
"""

from __future__ import annotations

import functools
import os
import threading
from typing import Any

from airflow_provider_qwenocr.ocr.grid import ImageValidationError
from airflow_provider_qwenocr.ocr.models import MAX_PDF_BYTES

MiB = 1024 * 1024
#: The most of one PDF read here: it is split into parts of at most the service's MAX_PDF_BYTES (100 MB) each.
MAX_PDF_SOURCE_BYTES = 5 * MAX_PDF_BYTES
#: Default image limits of the service, by model (used when the model catalogue cannot say).
DEFAULT_IMAGE_BYTES, QWEN35_IMAGE_BYTES = 10 * MiB, 20 * MiB
#: Bytes read before the signature check.
HEAD_BYTES = 4096
#: Wall-clock bound of one download when the caller gives none (the connection's timeout normally).
DEFAULT_FETCH_SECONDS = 60.0


def _stored_image_cap() -> int:
    from airflow_provider_qwenocr.ocr.images import MAX_SOURCE_PIXELS

    return MAX_SOURCE_PIXELS * 4


MAX_STORED_IMAGE_BYTES = _stored_image_cap()

# Leading bytes of every format Pillow decodes for us (IMAGE_EXTENSIONS in sources.py).
_SIGNATURES = (
    b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*",
    b"\x00\x00\x01\x00", b"\x00\x00\x00\x0cjP  \r\n\x87\n", b"\xffO\xffQ",
)


class SourceTooLarge(ImageValidationError):
    """A source over its byte cap: refused before (or while) its body is read. Becomes an error row."""

    code = "SourceTooLarge"


class NotAnImage(ImageValidationError):
    """A file whose first bytes are no image or PDF signature (whatever its name says)."""

    code = "InvalidImage"


class SourceTimeout(ImageValidationError):
    """A download that did not finish within its wall-clock deadline."""

    code = "SourceTimeout"


def image_byte_cap(model: str | None) -> int:
    """The service's byte limit for one image of ``model``: the catalogue's ``max_image_bytes`` when it
    knows the model, else 20 MB for the ``qwen3.5-ocr`` family and 10 MB for every other."""
    try:
        from airflow_provider_qwenocr.ocr.models import get_model

        cap = getattr(get_model(model), "max_image_bytes", None)
        if cap:
            return int(cap)
    except Exception:  # an unknown name: fall through to the family default
        pass
    return QWEN35_IMAGE_BYTES if (model or "").startswith("qwen3.5-ocr") else DEFAULT_IMAGE_BYTES


def cap_for(uri: str, *, downloaded: bool, model: str | None = None) -> int:
    """The byte cap of the source at ``uri`` (see the module docstring)."""
    if uri.split("?", 1)[0].lower().endswith(".pdf"):
        return MAX_PDF_SOURCE_BYTES
    return image_byte_cap(model) if downloaded else MAX_STORED_IMAGE_BYTES


def check_size(uri: str, size: int | None, cap: int) -> None:
    if size is not None and size > cap:
        raise SourceTooLarge(f"{uri}: {size:,} bytes, over the {cap:,}-byte limit for this source; not read")


#: Names that claim an image or PDF: only those are held to a signature (an explicitly named file of any
#: other extension is handed to the decoder, which judges it).
CLAIMED_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".jpe", ".bmp", ".dib", ".tif", ".tiff", ".webp", ".gif",
                              ".ico", ".jp2", ".pdf"})


def check_head(uri: str, head: bytes) -> None:
    """Refuse bytes that start with no image or PDF signature (RIFF…WEBP checked at its offset) when the
    name claims an image or PDF."""
    if os.path.splitext(uri.split("?", 1)[0])[1].lower() not in CLAIMED_SUFFIXES:
        return
    if head.startswith(_SIGNATURES) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP"):
        return
    from airflow_provider_qwenocr.ocr.pdf import is_pdf

    if is_pdf(head):
        return
    raise NotAnImage(f"{uri}: not an image or PDF (first bytes {head[:8]!r}); not read further")


def read_capped(uri: str, stream: Any, size: int | None, cap: int, *, check: bool = True) -> bytes:
    """Read ``stream`` (a binary file object of ``size`` bytes, or unknown) within ``cap`` bytes."""
    check_size(uri, size, cap)
    head = stream.read(HEAD_BYTES)
    if check:
        check_head(uri, head)
    rest = stream.read(cap + 1 - len(head))  # one byte over the cap proves the size lied
    if len(head) + len(rest) > cap:
        raise SourceTooLarge(f"{uri}: over the {cap:,}-byte limit for this source; read stopped there")
    return head + rest


# -- http(s) downloads -------------------------------------------------------------------------------

_session_lock = threading.Lock()
_session: Any = None


def _http_session():
    """One pooled session for downloads, with the client's deadline-aware connections."""
    global _session
    with _session_lock:
        if _session is None:
            import requests
            from requests.adapters import HTTPAdapter

            from airflow_provider_qwenocr.dashscope import deadline

            session = requests.Session()
            adapter = HTTPAdapter(pool_maxsize=16, max_retries=0)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            _session = deadline.install(session)
        return _session


def download(url: str, *, cap: int, timeout: float = DEFAULT_FETCH_SECONDS) -> bytes:
    """GET ``url`` within ``timeout`` seconds of wall clock (whatever the framing) and ``cap`` bytes."""
    from airflow_provider_qwenocr.dashscope import deadline

    hook = functools.partial(deadline.capped_body, limit=cap)
    try:
        with deadline.Deadline(timeout) as dl:
            response = _http_session().get(url, timeout=timeout, hooks={"response": [hook]})
    except deadline.ResponseTooLarge:
        raise SourceTooLarge(f"{url}: over the {cap:,}-byte limit for this source; download stopped") from None
    except Exception:
        if dl.expired:
            raise SourceTimeout(f"{url}: download not finished within {timeout:g} s") from None
        raise
    if dl.expired:  # a body without Content-Length ends at the cut and looks complete
        raise SourceTimeout(f"{url}: download not finished within {timeout:g} s")
    response.raise_for_status()
    return response.content
