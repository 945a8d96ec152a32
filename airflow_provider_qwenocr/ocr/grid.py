"""The service's image grid: smart_resize exactly as the service computes it, the tokens it bills, the limits.

Kept apart from :mod:`.images` (decoding and encoding) because it is pure arithmetic on sizes: the operator,
the batch builder, the token estimates and the fidelity tests all need it without touching a pixel.
"""

from __future__ import annotations

import math

from .models import ModelSpec

MIN_SIDE = 10  # both sides must be > 10 px
MAX_ASPECT = 200  # long side / short side ≤ 200


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
    hi = min(hi, spec.max_pixels_limit)  # ≤ 30,000 tokens per image
    if lo > hi:
        raise ValueError(f"min_pixels ({lo}) is larger than max_pixels ({hi})")
    return lo, hi


def validate_size(width: int, height: int) -> None:
    if width <= MIN_SIDE or height <= MIN_SIDE:
        raise ImageValidationError(f"image is {width}x{height} px; both sides must be larger than {MIN_SIDE} px")
    if max(width, height) / min(width, height) > MAX_ASPECT:
        raise ImageValidationError(f"image is {width}x{height} px; aspect ratio must be at most {MAX_ASPECT}:1")
