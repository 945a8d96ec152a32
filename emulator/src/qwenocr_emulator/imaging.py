"""Image facts the service checks before the model runs: size from the header, limits, the token grid.

Why header-only: the service bills an image by its size alone; reading the JPEG/PNG header (Pillow opens
lazily: ``Image.open`` parses the header, ``size`` needs no pixel data) costs well under a millisecond for
a 12-MP page, where a full decode costs ~50 ms. So the ``echo`` engine never decodes, and the emulator is
never the bottleneck of a full-resolution benchmark. The rapidocr engine decodes (it must read pixels).

Rules, from the public documentation (reference §6, §9):
- smart_resize: round each side to a multiple of the patch P; if the area is above ``max_pixels`` scale
  down by sqrt(h·w/max_pixels) and floor to P; if below ``min_pixels`` scale up by sqrt(min_pixels/(h·w))
  and ceil to P. Tokens = h_bar·w_bar/P² + 2. ``max_pixels`` is capped at 30,000 tokens' worth.
- refused with 400 InvalidParameter: a file/URL above the model's byte limit (10 MB; qwen3.5-ocr 20 MB),
  a base64 string above 10 MB, an undecodable image, a side ≤ 10 px, an aspect ratio above 200:1.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import math

from PIL import Image

MB = 1024 * 1024
MIN_SIDE = 10  # both sides must be > 10 px
MAX_ASPECT = 200  # long side / short side ≤ 200
MAX_BASE64_CHARS = 10 * MB  # the base64 string itself, whatever the model
_SWAPS_SIDES = {5, 6, 7, 8}  # EXIF orientations that turn the image by 90°


class ImageRefused(ValueError):
    """An image the service refuses (the message is what it says); rendered as 400 InvalidParameter."""


HEAD_B64_CHARS = 256 * 1024  # decoded first for the header: 192 KiB covers EXIF/ICC segments of real files


def _b64decode(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ImageRefused(f"The image data URL holds invalid base64: {exc}") from exc


class Payload:
    """One image's bytes as received — from a data URL, decoded from base64 only as far as needed.

    Why: the echo engine needs the size (header) and a per-image identifier; decoding 3.4 MB of base64
    for that would be a third of its CPU budget per 12-MP page. ``head()`` decodes the first 256 KiB of
    the text; ``full()`` the whole (rapidocr, the inspection probe of a flat image). ``nbytes`` is
    computed from the base64 length. So with echo, broken base64 past the header goes unnoticed.
    """

    def __init__(self, raw: bytes | None = None, *, b64: str | None = None):
        self._raw, self._b64 = raw, b64

    @property
    def nbytes(self) -> int:
        if self._raw is not None:
            return len(self._raw)
        n = len(self._b64)
        return n // 4 * 3 - (self._b64.endswith("==") + self._b64.endswith("=")) if n % 4 == 0 else n * 3 // 4

    def head(self) -> bytes:
        if self._raw is not None or len(self._b64) <= HEAD_B64_CHARS:
            return self.full()
        return _b64decode(self._b64[:HEAD_B64_CHARS])

    def full(self) -> bytes:
        if self._raw is None:
            self._raw = _b64decode(self._b64)
        return self._raw

    def digest(self) -> str:
        """sha256 of the image as received (of the base64 text for a data URL): an identifier, cheap."""
        if self._b64 is not None:
            return hashlib.sha256(self._b64.encode("ascii", "replace")).hexdigest()
        return hashlib.sha256(self._raw).hexdigest()


def decode_data_url(url: str) -> tuple[str, Payload]:
    """(mime, payload) of ``data:<mime>;base64,<b64>``; refuses a string above 10 MB."""
    comma = url.find(",", 0, 256)
    head = url[5:comma] if comma > 0 else ""
    if not head.endswith(";base64"):
        raise ImageRefused("The image data URL must look like data:<mime>;base64,<data>.")
    if len(url) - comma - 1 > MAX_BASE64_CHARS:
        raise ImageRefused(f"The base64 image is {len(url) - comma - 1} characters; the limit is "
                           f"{MAX_BASE64_CHARS} (10 MB).")
    return head[: -len(";base64")], Payload(b64=url[comma + 1:])


def check_bytes(payload: Payload, limit: int) -> None:
    if payload.nbytes > limit:
        raise ImageRefused(f"The image is {payload.nbytes} bytes; the limit for this model is {limit // MB} MB.")


def open_header(data: bytes) -> Image.Image:
    """The image opened lazily (header parsed, pixels not decoded); refuses what Pillow cannot identify."""
    try:
        return Image.open(io.BytesIO(data))
    except Exception as exc:  # UnidentifiedImageError, DecompressionBombError, truncated headers
        raise ImageRefused(f"The image format is illegal and cannot be opened: {exc}") from exc


def open_payload_header(payload: Payload) -> Image.Image:
    """The header from the payload's first bytes; the whole payload when the header is longer than that."""
    try:
        return open_header(payload.head())
    except ImageRefused:
        return open_header(payload.full())


def upright_size(img: Image.Image) -> tuple[int, int]:
    """(width, height) as displayed: the EXIF orientation tag (read from the header) may swap the sides."""
    w, h = img.size
    try:
        orientation = img.getexif().get(0x0112)
    except Exception:  # a broken EXIF block: the service would read the pixels as stored
        orientation = None
    return (h, w) if orientation in _SWAPS_SIDES else (w, h)


def check_shape(width: int, height: int) -> None:
    if width <= MIN_SIDE or height <= MIN_SIDE:
        raise ImageRefused(f"The image length and width must be greater than {MIN_SIDE} pixels (got {width}x{height}).")
    if max(width, height) / min(width, height) > MAX_ASPECT:
        raise ImageRefused(f"The aspect ratio of the image must not exceed {MAX_ASPECT}:1 (got {width}x{height}).")


def smart_resize(height: int, width: int, patch: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """(h_bar, w_bar) the model sees, as the documentation defines it."""
    h_bar = max(patch, round(height / patch) * patch)
    w_bar = max(patch, round(width / patch) * patch)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h_bar = max(patch, math.floor(height / beta / patch) * patch)
        w_bar = max(patch, math.floor(width / beta / patch) * patch)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / patch) * patch
        w_bar = math.ceil(width * beta / patch) * patch
    return h_bar, w_bar


def image_tokens(grid: tuple[int, int], patch: int) -> int:
    return grid[0] * grid[1] // (patch * patch) + 2


# A flat colour field encodes far below this (a 12-MP uniform JPEG is ~0.07 bit/px); a scanned page is
# 1–3 bit/px. Entropy decoding — which no reduced-size decode can skip — costs in proportion to the
# encoded bytes, so probing only images under this bound caps the probe's CPU.
FLAT_MAX_BITS_PER_PIXEL = 0.5


def is_flat(nbytes: int, size: tuple[int, int]) -> bool:
    """Whether the encoded image is small enough per pixel to be a (near-)flat colour field."""
    return nbytes * 8 <= FLAT_MAX_BITS_PER_PIXEL * size[0] * size[1]


def mean_colour(img: Image.Image) -> tuple[float, float, float]:
    """The image's mean RGB colour without a full-size decode where the format allows it.

    JPEG: ``draft`` asks libjpeg for a 1/8-scale DCT decode (no full IDCT, 1/64 of the pixels). Other
    formats are decoded then box-reduced (PNG has no reduced decode).
    """
    w, h = img.size
    if img.format == "JPEG":
        img.draft("RGB", (max(1, w // 8), max(1, h // 8)))
    probe = img if img.mode == "RGB" else img.convert("RGB")
    return probe.resize((1, 1), Image.Resampling.BOX).getpixel((0, 0))
