"""Rotated text boxes of ``advanced_recognition``: ``rotate_rect`` = [cx, cy, w, h, angle°] and ``location``.

What the service does (read off a real capture, 12 lines of a 6000×3000 image): the model writes each line
as a rectangle in 0–1000 normalised coordinates (the ```json text block). ``ocr_result.words_info`` then
carries ``location`` = that rectangle's corners mapped to pixels (a parallelogram once the two axes scale
differently), in a fixed corner order, and ``rotate_rect`` = the minimum-area rectangle around them, written
the way OpenCV's ``minAreaRect`` writes it (angle in (0, 90], ``w`` the side along the angle).

Only the text block exists where there is no ``ocr_result`` (compatible mode, hence the Batch API), so
:func:`denormalize` redoes that mapping; on the capture it reproduces every ``location`` and ``rotate_rect``
to within 6 px (one normalised unit is 6 px there).

Two rectangle spellings occur (reference §9): the list ``[cx, cy, w, h, angle]`` and, in ``qwen3.5-ocr``
text blocks, a string of five angle-bracketed numbers ``"<498><880><488><86><0>"``; :func:`rect_values`
reads both. The service writes horizontal lines as ``[cx, cy, h, w, ±90]`` (minAreaRect form) as often
as ``[cx, cy, w, h, 0]``: both describe one rectangle, and :func:`location_from_rect` gives the same
corners for either (some ``qwen3.5-ocr`` words carry a ``rotate_rect`` but no ``location``).
"""

from __future__ import annotations

import math
import re
from typing import Any

Point = tuple[float, float]


def _r(x: float) -> int:
    return math.floor(x + 0.5)


_BRACKETED = re.compile(r"<\s*(-?\d+(?:\.\d+)?)\s*>")


def rect_values(value: Any) -> list[float] | None:
    """``[cx, cy, w, h, angle]`` from a 5-number list or a ``"<cx><cy><w><h><angle>"`` string; else None."""
    if isinstance(value, str):
        nums = _BRACKETED.findall(value)
        if len(nums) != 5 or _BRACKETED.sub("", value).strip():
            return None
        return [float(n) for n in nums]
    if (isinstance(value, (list, tuple)) and len(value) == 5
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
        return [float(v) for v in value]
    return None


def location_from_rect(rect: list[float]) -> list[int]:
    """The 8 corner ints (TL, TR, BR, BL, as ``location`` orders them) of a ``rotate_rect``.

    Either spelling of one rectangle (``[cx, cy, w, h, 0]`` or ``[cx, cy, h, w, 90]``, or ``-89``) gives
    the same corners: they are ordered clockwise by their angle around the centre, starting at the
    corner nearest the image's top-left (smallest x + y).
    """
    corners = rect_corners(rect)
    cx, cy = float(rect[0]), float(rect[1])
    ordered = sorted(corners, key=lambda p: math.atan2(p[1] - cy, p[0] - cx))
    start = min(range(4), key=lambda i: (ordered[i][0] + ordered[i][1], ordered[i][0]))
    ordered = ordered[start:] + ordered[:start]
    return [_r(round(v, 6)) for p in ordered for v in p]  # round(…, 6): cos 90° is not exactly 0


def rect_corners(rect: list[float]) -> list[Point]:
    """The corners of ``[cx, cy, w, h, angle]`` in the service's ``location`` order."""
    cx, cy, w, h, angle = (float(v) for v in rect)
    t = math.radians(angle)
    u = (math.cos(t) * w / 2, math.sin(t) * w / 2)  # half of the w side, along the angle
    v = (-math.sin(t) * h / 2, math.cos(t) * h / 2)  # half of the h side
    return [(cx + su * u[0] + sv * v[0], cy + su * u[1] + sv * v[1]) for su, sv in ((-1, 1), (-1, -1), (1, -1), (1, 1))]


def min_area_rect(points: list[Point]) -> list[int]:
    """The minimum-area rectangle around a convex quadrilateral, as ``[cx, cy, w, h, angle]`` (angle in (0, 90])."""
    best = None
    n = len(points)
    for i in range(n):
        ex, ey = points[(i + 1) % n][0] - points[i][0], points[(i + 1) % n][1] - points[i][1]
        norm = math.hypot(ex, ey)
        if norm == 0:
            continue
        ux, uy = ex / norm, ey / norm
        along = [p[0] * ux + p[1] * uy for p in points]
        across = [-p[0] * uy + p[1] * ux for p in points]
        a_lo, a_hi, c_lo, c_hi = min(along), max(along), min(across), max(across)
        area = (a_hi - a_lo) * (c_hi - c_lo)
        if best is None or area < best[0] - 1e-9:
            ma, mc = (a_lo + a_hi) / 2, (c_lo + c_hi) / 2
            centre = (ma * ux - mc * uy, ma * uy + mc * ux)
            best = (area, centre, a_hi - a_lo, c_hi - c_lo, math.degrees(math.atan2(uy, ux)))
    if best is None:  # all four points equal
        x, y = points[0]
        return [_r(x), _r(y), 0, 0, 90]
    _, (cx, cy), w, h, angle = best
    angle %= 180  # a side's direction is defined up to 180°; then bring it into (0, 90]
    if angle > 90:
        angle -= 90
        w, h = h, w
    elif angle == 0:
        angle = 90
        w, h = h, w
    return [_r(cx), _r(cy), _r(w), _r(h), _r(angle)]


def denormalize(rect: list[float], width: int, height: int) -> tuple[list[int], list[int]]:
    """(``location``, ``rotate_rect``) in pixels of a ``width`` × ``height`` image from a 0–1000 rectangle."""
    corners = [(x * width / 1000, y * height / 1000) for x, y in rect_corners(rect)]
    return [_r(v) for p in corners for v in p], min_area_rect(corners)


def normalize(corners: list[Point], width: int, height: int) -> list[int]:
    """The 0–1000 rectangle (as the text block writes it) of a box given by its pixel corners."""
    return min_area_rect([(x * 1000 / width, y * 1000 / height) for x, y in corners])
