"""``words_info`` geometry as the service writes it: 8-int ``location`` and OpenCV's ``minAreaRect`` form.

Why OpenCV itself (it comes with rapidocr): the service writes a line's ``rotate_rect`` as OpenCV's
minimum-area rectangle ``[cx, cy, w, h, angle]`` of the line's corners. The 2025-11 capture of real traffic
(``tests/data/recordings/…advanced-recognition…``) shows the range of OpenCV ≥ 4.5.1, angle in (0, 90]: a
horizontal line is ``[cx, cy, height, length, 90]``, a line rising 17° to the right ``[…, 279, 825, 73]``;
the documentation's examples (``[150, 80, 49, 197, -89]``) show the same rectangles in the older range
[-90, 0). OpenCV's range changed between releases (5.x is back to [-90, 0)), so the result is brought
into the capture's (0, 90] whichever OpenCV is installed. The text block's 0–1000 rectangles are the same
function applied to normalised corners, as in the capture (``[502, 178, 95, 435, 90]``).
"""

from __future__ import annotations

Point = tuple[float, float]


def _round(x: float) -> int:
    return int(x + 0.5) if x >= 0 else -int(-x + 0.5)


def min_area_rect(points: list[Point]) -> list[int]:
    """``[cx, cy, w, h, angle]`` (ints, angle in (0, 90]) of the smallest rectangle around ``points``."""
    import cv2
    import numpy as np

    (cx, cy), (w, h), angle = cv2.minAreaRect(np.asarray(points, dtype=np.float32))
    if angle <= 0:  # OpenCV < 4.5.1 and 5.x write [-90, 0): the same box, turned by 90° in name only
        angle, w, h = angle + 90.0, h, w
    if _round(angle) == 0:
        angle, w, h = 90.0, h, w
    return [_round(cx), _round(cy), _round(w), _round(h), _round(angle)]


def location(box: list[Point]) -> list[int]:
    """The 8 ints x1,y1..x4,y4 (TL, TR, BR, BL) of a line's corners, in pixels of the original image."""
    return [_round(v) for p in box for v in p]


def normalised_rect(box: list[Point], width: int, height: int) -> list[int]:
    """The line's rectangle in the 0–1000 coordinates of the ``advanced_recognition`` text block."""
    return min_area_rect([(x * 1000.0 / width, y * 1000.0 / height) for x, y in box])
