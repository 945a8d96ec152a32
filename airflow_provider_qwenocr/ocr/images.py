"""Image preparation (validate, decode, resize to the service's grid, encode); the grid itself is :mod:`.grid`.

Why resize locally: the service resizes every image to a grid of ``patch``-px tiles anyway (and bills
tokens for that grid). Sending the image already at that size gives the same tokens and the same pixels
the model sees, while uploading a fraction of the bytes. JPEG draft mode lets libjpeg decode at 1/2, 1/4
or 1/8 scale straight to near the target size; with the ``fast`` extra, :mod:`.jpeg_fast` does JPEGs with
libjpeg-turbo and OpenCV at under half the CPU (numbers in its docstring and bench/RESULTS.md).

Memory is bounded per image by construction (issue 9: four 13000×13000 RGBA PNGs once took 8.7 GB):

1. The header is read first; an image over :data:`MAX_SOURCE_PIXELS` is refused before any pixel is
   decoded (an error row, not an OOM kill).
2. Decoding happens once, already reduced where the codec allows (JPEG ``draft``: 1/2…1/8 inside
   libjpeg); other formats are decoded at full size and at once cut down with ``Image.reduce`` to at
   most 2× the target grid per side, *before* any mode conversion, alpha flattening or EXIF rotation
   (each of which would otherwise copy the full-size image).
3. Full-size decodes draw on one process-wide :data:`DECODE_BUDGET_BYTES` budget (a counting
   condition), so large images are decoded one after another instead of all at once; the full-size
   pixels are freed (``Image.close``) and, after a large decode, handed back to the OS
   (glibc ``malloc_trim``) before the budget is released. Without the trim, glibc keeps each worker
   thread's freed pixels in that thread's arena and RSS still grows to concurrency × image.

So the peak is about ``min(DECODE_BUDGET_BYTES, concurrency × 4 B × source pixels)`` +
``concurrency × ~5 × 4 B × target pixels`` (+ the encoded bytes) + a constant for the interpreter; the
target grid is at most ``max_pixels``. Both limits are module attributes (and environment variables
``QWENOCR_MAX_SOURCE_PIXELS`` / ``QWENOCR_DECODE_BUDGET_MB``) so a deployment can set them.
"""

from __future__ import annotations

import base64
import hashlib
import io
import math
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from PIL import Image

from . import jpeg_fast
from .grid import MAX_ASPECT as MAX_ASPECT  # re-exported: the grid arithmetic lives in .grid
from .grid import MIN_SIDE as MIN_SIDE
from .grid import ImageValidationError, pixel_bounds, smart_resize, validate_size
from .grid import image_tokens as image_tokens
from .models import ModelSpec

#: Refuse images with more pixels than this before decoding (default: Pillow's own decompression-bomb
#: error threshold, 2 × ``Image.MAX_IMAGE_PIXELS`` ≈ 179 MP — about 716 MB decoded at 4 bytes/pixel).
MAX_SOURCE_PIXELS = int(os.environ.get("QWENOCR_MAX_SOURCE_PIXELS") or 178_956_970)
#: Bytes of full-size decoded pixels allowed at once across all preparation threads of the process.
DECODE_BUDGET_BYTES = int(float(os.environ.get("QWENOCR_DECODE_BUDGET_MB") or 768) * 1024 * 1024)
MAX_DATA_URL_BYTES = 10 * 1024 * 1024  # the service's limit on a base64 string
DEFAULT_JPEG_QUALITY = 85  # text stays sharp; ~0.4x the bytes of a q92 phone/scanner JPEG

_MIME = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "BMP": "image/bmp",
         "TIFF": "image/tiff", "GIF": "image/gif", "MPO": "image/jpeg"}


@dataclass
class PreparedImage:
    """An image ready to send: a data URL at exactly the model's grid size, plus what we need to map back."""

    data_url: str
    mime: str
    width: int  # original (after EXIF orientation)
    height: int
    sent_width: int
    sent_height: int
    tokens: int  # estimated image tokens, identical to what the service bills for the original
    sha256: str
    nbytes: int  # encoded bytes (before base64)

    @property
    def scale_x(self) -> float:
        return self.width / self.sent_width

    @property
    def scale_y(self) -> float:
        return self.height / self.sent_height


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def reference_sha(uri: str) -> str:
    """What an image sent by reference (a URL the service fetches) is keyed on: its URI stands in for its
    unread bytes. For a presigned URL that is the object's URI, since the URL changes at every signing."""
    return sha256_hex(f"url:{uri}".encode())


def _looks_like_line_art(img: Image.Image) -> bool:
    """Few distinct colours (screenshots, rendered text, diagrams) compress better and cleaner as PNG."""
    probe = img.reduce(max(1, max(img.size) // 256))  # a small new image; no full-size copy (was ~1/4 of prep)
    probe.thumbnail((128, 128))
    return probe.getcolors(64) is not None


def open_image(data: bytes) -> Image.Image:
    """Open (header only) and refuse an image over :data:`MAX_SOURCE_PIXELS` before decoding it."""
    try:
        img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise ImageValidationError(f"image is too large to decode safely: {exc}") from None
    except Image.UnidentifiedImageError:
        raise ImageValidationError("cannot decode image: not a recognised image format") from None
    except Exception as exc:  # PIL raises several types for garbage input
        raise ImageValidationError(f"cannot decode image: {exc}") from None
    check_source_pixels(*img.size)
    return img


def check_source_pixels(width: int, height: int) -> None:
    if width * height > MAX_SOURCE_PIXELS:
        raise ImageValidationError(
            f"image is {width}x{height} px ({width * height / 1e6:.0f} MP); refusing to decode more than "
            f"{MAX_SOURCE_PIXELS / 1e6:.0f} MP (MAX_SOURCE_PIXELS)")


class _DecodeBudget:
    """A counting budget of decoded bytes: a decode waits until its bytes fit (one over the budget runs alone)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._used = 0

    @contextmanager
    def hold(self, nbytes: int) -> Iterator[None]:
        nbytes = min(int(nbytes), DECODE_BUDGET_BYTES)
        with self._cond:
            while self._used and self._used + nbytes > DECODE_BUDGET_BYTES:
                self._cond.wait()
            self._used += nbytes
        try:
            yield
        finally:
            with self._cond:
                self._used -= nbytes
                self._cond.notify_all()


_BUDGET = _DecodeBudget()
_TRIM_ABOVE = 64 * 1024 * 1024  # only large decodes are worth a malloc_trim (it walks every arena)


def _malloc_trim() -> None:
    """Return freed heap memory of every glibc arena to the OS (a no-op where there is no glibc)."""
    global _libc
    if _libc is None:
        try:
            import ctypes

            _libc = ctypes.CDLL("libc.so.6")
            _libc.malloc_trim.argtypes = [ctypes.c_size_t]
        except (OSError, AttributeError):
            _libc = False
    if _libc:
        _libc.malloc_trim(0)


_libc = None
_TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
              5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
              8: Image.Transpose.ROTATE_90}


def _decoded_bytes(img: Image.Image) -> int:
    """Bytes Pillow needs for the decoded image (1 B/px for L/P/1, else 4), plus a conversion copy for P."""
    w, h = img.size
    per_px = 1 if img.mode in ("1", "L", "P") else 2 if img.mode.startswith("I;16") else 4
    return w * h * (per_px + (4 if img.mode in ("P", "PA") else 0))


def _reduce_in_strips(img: Image.Image, factor: int) -> Image.Image:
    """``img.reduce(factor)`` strip by strip: Pillow's reduce of an RGBA image makes a full-size
    premultiplied copy first (measured: 13000² RGBA peaks at 2 × 676 MB); a ~16 MB strip at a time
    keeps the extra memory to the strip."""
    w, h = img.size
    w2, h2 = w // factor * factor, h // factor * factor
    rows = max(factor, (16 * 1024 * 1024 // max(1, w * 4)) // factor * factor)
    out = Image.new(img.mode, (w2 // factor, h2 // factor))
    for y in range(0, h2, rows):
        part = img.crop((0, y, w2, min(y + rows, h2))).reduce(factor)
        out.paste(part, (0, y // factor))
    return out


def _decode(img: Image.Image, target: tuple[int, int]) -> Image.Image:
    """The decode step: pixels of ``img`` (not yet loaded) reduced to at most ~2× ``target`` (w, h, in
    the file's own orientation) per side, in RGB or L, alpha flattened on white.

    JPEG decodes reduced inside libjpeg (``draft``); everything else decodes at full size under the
    process-wide budget and is reduced by an integer factor before any conversion copies it."""
    if img.format == "JPEG":
        img.draft("RGB", target)  # libjpeg scales by 1/2, 1/4, 1/8: the smallest scale still ≥ target
    nbytes = _decoded_bytes(img)
    with _BUDGET.hold(nbytes):
        full = img
        try:
            img.load()
            factor = max(1, min(img.size[0] // max(1, target[0]), img.size[1] // max(1, target[1])))
            if img.mode in ("P", "PA", "1") or (img.mode not in ("RGB", "L", "RGBA", "LA") and factor > 1):
                has_alpha = img.mode in ("PA", "LA", "RGBA") or "transparency" in img.info
                img = img.convert("RGBA" if has_alpha else "RGB")
            if factor > 1:
                img = _reduce_in_strips(img, factor)
        except Exception as exc:
            raise ImageValidationError(f"cannot decode image: {exc}") from None
        finally:
            if img is not full:
                full.close()  # frees the full-size pixels now, though the caller still holds the object
            if nbytes > _TRIM_ABOVE:
                _malloc_trim()
    if img.mode not in ("RGB", "L"):
        if img.mode in ("RGBA", "LA"):
            rgba = img.convert("RGBA")
            bg = Image.new("RGB", rgba.size, (255, 255, 255))
            bg.paste(rgba, mask=rgba.getchannel("A"))
            img = bg
        else:
            img = img.convert("RGB")
    return img


def _orientation(img: Image.Image) -> int:
    """The EXIF orientation, read from the header only.

    Not ``getexif()`` on a PNG: it decodes the whole image to look for an eXIf chunk after the pixel data
    (measured: that was the full-size decode outside the budget, in every worker thread at once)."""
    try:
        if img.format == "PNG":
            raw = img.info.get("exif")
            if not raw:
                return 1
            exif = Image.Exif()
            exif.load(raw)
        else:
            exif = img.getexif()
        return int(exif.get(0x0112, 1) or 1)
    except Exception:
        return 1


def _oriented_size(img: Image.Image) -> tuple[int, int]:
    w, h = img.size
    return (h, w) if _orientation(img) in (5, 6, 7, 8) else (w, h)


def frame_count(data: bytes) -> int:
    """Pages of a multi-page TIFF / frames of an animated GIF or WebP (1 for everything else)."""
    img = open_image(data)
    return int(getattr(img, "n_frames", 1) or 1)


def frame_png(data: bytes, index: int, max_pixels: int | None = None) -> bytes:
    """Page/frame ``index`` (0-based) of a multi-frame image as PNG bytes, at most ``max_pixels`` pixels.

    Checked against :data:`MAX_SOURCE_PIXELS` before its pixels are decoded, decoded under the budget."""
    img = open_image(data)
    try:
        img.seek(index)
    except EOFError:
        raise ImageValidationError(f"frame {index + 1} out of range") from None
    check_source_pixels(*img.size)
    w, h = img.size
    limit = max_pixels or w * h
    scale = min(1.0, math.sqrt(limit / (w * h)))
    target = (max(1, int(w * scale)), max(1, int(h * scale)))
    frame = _decode(img, target)
    if frame.size != target:
        frame = frame.resize(target, Image.Resampling.BOX)
    buf = io.BytesIO()
    frame.save(buf, "PNG", compress_level=1)
    return buf.getvalue()


def prepare_image(
    data: bytes,
    spec: ModelSpec,
    *,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
    fmt: str | None = None,
    jpeg_quality: int = DEFAULT_JPEG_QUALITY,
    sha256: str | None = None,
) -> PreparedImage:
    """Validate and prepare ``data`` for ``spec``: decode (draft), EXIF-transpose, resize to the grid, encode.

    ``fmt`` forces "JPEG" or "PNG"; by default photos and scans go as JPEG and line art as PNG.
    Raises :class:`ImageValidationError` for anything the service would refuse.
    """
    lo, hi = pixel_bounds(spec, min_pixels, max_pixels)
    img = open_image(data)  # header only; refuses images over MAX_SOURCE_PIXELS
    width, height = _oriented_size(img)
    validate_size(width, height)
    th, tw = smart_resize(height, width, spec.patch, lo, hi)
    # The libjpeg-turbo path (ocr/jpeg_fast.py) when installed; it returns None for what Pillow must do.
    probe = None if fmt else _looks_like_line_art
    encoded = jpeg_fast.to_grid(data, img, (tw, th), jpeg_quality, is_line_art=probe) if fmt != "PNG" else None
    if encoded is not None:
        fmt = "JPEG"
    else:
        encoded, fmt = _pillow_to_grid(img, (tw, th), fmt, jpeg_quality)
    mime = _MIME[fmt]
    url = data_url(mime, encoded)
    if len(url) > MAX_DATA_URL_BYTES:
        raise ImageValidationError(f"encoded image is {len(url) / 1e6:.1f} MB as base64; the limit is 10 MB")
    return PreparedImage(
        data_url=url,
        mime=mime,
        width=width,
        height=height,
        sent_width=tw,
        sent_height=th,
        tokens=th * tw // (spec.patch * spec.patch) + 2,
        sha256=sha256 or sha256_hex(data),
        nbytes=len(encoded),
    )


def data_url(mime: str, encoded: bytes) -> str:
    """The ``data:<mime>;base64,…`` URL the service reads an inline image from."""
    return f"data:{mime};base64,{base64.b64encode(encoded).decode('ascii')}"


def _pillow_to_grid(img: Image.Image, grid: tuple[int, int], fmt: str | None, jpeg_quality: int) -> tuple[bytes, str]:
    """The reference path (and the fallback of :mod:`.jpeg_fast`): bounded decode, EXIF, resize, encode."""
    tw, th = grid
    orientation = _orientation(img)
    need = (tw, th) if orientation not in (5, 6, 7, 8) else (th, tw)  # the target in the file's orientation
    img = _decode(img, need)
    if orientation in _TRANSPOSE:  # EXIF rotation on the reduced image, not the full-size one
        img = img.transpose(_TRANSPOSE[orientation])
    if img.size != (tw, th):
        # Downscaling: BOX (area averaging) is antialiased and the cheapest filter that is; reducing_gap
        # lets Pillow reduce() by an integer factor first on large reductions. Upscaling: BICUBIC.
        shrinking = tw * th < img.size[0] * img.size[1]
        resample = Image.Resampling.BOX if shrinking else Image.Resampling.BICUBIC
        img = img.resize((tw, th), resample, reducing_gap=2.0 if shrinking else None)
    if fmt is None:
        fmt = "PNG" if _looks_like_line_art(img) else "JPEG"
    buf = io.BytesIO()
    if fmt == "JPEG":
        img.save(buf, "JPEG", quality=jpeg_quality, optimize=False)
    else:
        img.save(buf, "PNG", compress_level=1)
    return buf.getvalue(), fmt


def estimate_tokens(data: bytes, spec: ModelSpec, min_pixels: int | None = None, max_pixels: int | None = None) -> int:
    """Image tokens from the header alone (no full decode): used for budgets and the TPM limiter."""
    lo, hi = pixel_bounds(spec, min_pixels, max_pixels)
    img = open_image(data)
    w, h = _oriented_size(img)
    validate_size(w, h)
    return image_tokens(h, w, spec.patch, lo, hi)


def decode_data_url(url: str) -> tuple[str, bytes]:
    """(mime, bytes) of a ``data:<mime>;base64,...`` URL."""
    if not url.startswith("data:") or ";base64," not in url:
        raise ImageValidationError("not a base64 data URL")
    head, b64 = url[5:].split(";base64,", 1)
    try:
        return head, base64.b64decode(b64, validate=False)
    except Exception as exc:
        raise ImageValidationError(f"invalid base64 in data URL: {exc}") from exc
