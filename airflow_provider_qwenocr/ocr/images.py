"""smart_resize exactly as the service computes it, and image preparation (validate, decode, resize, encode).

Why resize locally: the service resizes every image to a grid of ``patch``-px tiles anyway (and bills
tokens for that grid). Sending the image already at that size gives the same tokens and the same pixels
the model sees, while uploading a fraction of the bytes. JPEG draft mode lets libjpeg decode at 1/2, 1/4
or 1/8 scale straight to near the target size; with the ``fast`` extra, :mod:`.jpeg_fast` does JPEGs with
libjpeg-turbo and OpenCV at under half the CPU (numbers in its docstring and bench/RESULTS.md).
"""

from __future__ import annotations

import base64
import hashlib
import io
import math
from dataclasses import dataclass

from PIL import Image, ImageOps

from . import jpeg_fast
from .models import ModelSpec

MIN_SIDE = 10  # both sides must be > 10 px
MAX_ASPECT = 200  # long side / short side ≤ 200
MAX_SOURCE_PIXELS = 250_000_000  # refuse decompression bombs before decoding
MAX_DATA_URL_BYTES = 10 * 1024 * 1024  # the service's limit on a base64 string
DEFAULT_JPEG_QUALITY = 85  # text stays sharp; ~0.4x the bytes of a q92 phone/scanner JPEG

_MIME = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "BMP": "image/bmp",
         "TIFF": "image/tiff", "GIF": "image/gif", "MPO": "image/jpeg"}


class ImageValidationError(ValueError):
    """The image cannot be sent: undecodable, too small, too thin, too large. Becomes an error row."""

    code = "InvalidImage"


def _round(x: float, f: int) -> int:
    return round(x / f) * f


def _floor(x: float, f: int) -> int:
    return math.floor(x / f) * f


def _ceil(x: float, f: int) -> int:
    return math.ceil(x / f) * f


def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """(h_bar, w_bar): the size the service feeds the model, multiples of ``factor`` within the pixel bounds.

    Same arithmetic as the service (and Qwen2-VL's reference): round each side to the grid; if the area
    is above ``max_pixels`` scale down by sqrt(area/max) and floor; if below ``min_pixels`` scale up and ceil.
    """
    if height <= 0 or width <= 0:
        raise ValueError("height and width must be positive")
    if max(height, width) / min(height, width) > MAX_ASPECT:
        raise ImageValidationError(
            f"aspect ratio {max(height, width) / min(height, width):.0f}:1 exceeds {MAX_ASPECT}:1"
        )
    h_bar = max(factor, _round(height, factor))
    w_bar = max(factor, _round(width, factor))
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, _floor(height / beta, factor))
        w_bar = max(factor, _floor(width / beta, factor))
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = _ceil(height * beta, factor)
        w_bar = _ceil(width * beta, factor)
    return h_bar, w_bar


def image_tokens(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> int:
    """Tokens the service bills for one image: grid cells + 2 (vision begin/end markers)."""
    h, w = smart_resize(height, width, factor, min_pixels, max_pixels)
    return h * w // (factor * factor) + 2


def pixel_bounds(spec: ModelSpec, min_pixels: int | None, max_pixels: int | None) -> tuple[int, int]:
    lo = min_pixels if min_pixels is not None else spec.default_min_pixels
    hi = max_pixels if max_pixels is not None else spec.default_max_pixels
    cap = spec.max_image_tokens * spec.patch * spec.patch  # ≤ 30,000 tokens per image
    hi = min(hi, cap)
    if lo > hi:
        raise ValueError(f"min_pixels ({lo}) is larger than max_pixels ({hi})")
    return lo, hi


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


def _looks_like_line_art(img: Image.Image) -> bool:
    """Few distinct colours (screenshots, rendered text, diagrams) compress better and cleaner as PNG."""
    probe = img.reduce(max(1, max(img.size) // 256))  # a small new image; no full-size copy (was ~1/4 of prep)
    probe.thumbnail((128, 128))
    return probe.getcolors(64) is not None


def open_image(data: bytes) -> Image.Image:
    try:
        img = Image.open(io.BytesIO(data))
    except Exception as exc:  # PIL raises several types for garbage input
        raise ImageValidationError(f"cannot decode image: {exc}") from exc
    w, h = img.size
    if w * h > MAX_SOURCE_PIXELS:
        raise ImageValidationError(f"image has {w * h / 1e6:.0f} MP; refusing to decode more than "
                                   f"{MAX_SOURCE_PIXELS / 1e6:.0f} MP")
    return img


def _oriented_size(img: Image.Image) -> tuple[int, int]:
    w, h = img.size
    try:
        orientation = img.getexif().get(0x0112, 1)
    except Exception:
        orientation = 1
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def validate_size(width: int, height: int) -> None:
    if width <= MIN_SIDE or height <= MIN_SIDE:
        raise ImageValidationError(f"image is {width}x{height} px; both sides must be larger than {MIN_SIDE} px")
    if max(width, height) / min(width, height) > MAX_ASPECT:
        raise ImageValidationError(f"image is {width}x{height} px; aspect ratio must be at most {MAX_ASPECT}:1")


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
    img = open_image(data)
    width, height = _oriented_size(img)
    validate_size(width, height)
    th, tw = smart_resize(height, width, spec.patch, lo, hi)
    # The libjpeg-turbo path (ocr/jpeg_fast.py) when installed; it returns None for what Pillow must do.
    probe = None if fmt else _looks_like_line_art
    encoded = jpeg_fast.to_grid(data, img, (tw, th), jpeg_quality, is_line_art=probe) if fmt != "PNG" else None
    if encoded is not None:
        fmt = "JPEG"
    else:
        encoded, fmt = _pillow_to_grid(img, (width, height), (tw, th), fmt, jpeg_quality)
    mime = _MIME[fmt]
    b64 = base64.b64encode(encoded).decode("ascii")
    url = f"data:{mime};base64,{b64}"
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


def _pillow_to_grid(img: Image.Image, oriented: tuple[int, int], grid: tuple[int, int], fmt: str | None,
                    jpeg_quality: int) -> tuple[bytes, str]:
    """The reference path (and the fallback of :mod:`.jpeg_fast`): draft decode, EXIF, convert, resize, encode."""
    width, height = oriented
    tw, th = grid
    if img.format == "JPEG":
        # libjpeg scales by 1/2, 1/4, 1/8 while decoding: ask for the smallest scale still ≥ target.
        raw_w, raw_h = img.size
        need = (tw, th) if (raw_w, raw_h) == (width, height) else (th, tw)
        img.draft("RGB", need)
    try:
        img = ImageOps.exif_transpose(img)
    except Exception as exc:
        raise ImageValidationError(f"cannot decode image: {exc}") from exc
    if img.mode not in ("RGB", "L"):
        if img.mode in ("RGBA", "LA", "P", "PA") or "transparency" in img.info:
            rgba = img.convert("RGBA")
            bg = Image.new("RGB", rgba.size, (255, 255, 255))
            bg.paste(rgba, mask=rgba.getchannel("A"))
            img = bg
        else:
            img = img.convert("RGB")
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
