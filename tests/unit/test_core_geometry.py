"""advanced_recognition boxes from the text block (compatible mode / Batch), checked against a real capture."""

from __future__ import annotations

import json
import math
import random

import pytest

from airflow_provider_qwenocr.ocr.geometry import denormalize, min_area_rect, normalize, rect_corners
from airflow_provider_qwenocr.ocr.models import get_model
from airflow_provider_qwenocr.ocr.parsing import parse_answer, strip_fence, words_from_text
from tests.conftest_paths import RECORDINGS

CAPTURE = RECORDINGS / "multimodal-generation-vl-ocr-advanced-recognition-nosse.response.body.txt"
# The capture's image: 6000×3000 px (reference/dashscope-api.md: "values up to x≈5928 for a 6000×3000 image").
WIDTH, HEIGHT = 6000, 3000


def _capture() -> tuple[str, list[dict]]:
    content = json.loads(CAPTURE.read_text())["output"]["choices"][0]["message"]["content"][0]
    return content["text"], content["ocr_result"]["words_info"]


def test_text_block_reproduces_the_services_words_info():
    """The service's own words_info, rebuilt from its 0–1000 text block: 12 lines, angles 29°–90°."""
    text, truth = _capture()
    words = words_from_text(text, WIDTH, HEIGHT)
    assert [w.text for w in words] == [t["text"] for t in truth] and len(words) == 12
    for word, t in zip(words, truth, strict=True):
        # One normalised unit is 6 px across and 3 px down: allow one unit and rounding.
        assert max(abs(a - b) for a, b in zip(word.location, t["location"], strict=True)) <= 6, word
        cx, cy, w, h, angle = word.rotate_rect
        tcx, tcy, tw, th, tangle = t["rotate_rect"]
        assert abs(cx - tcx) <= 6 and abs(cy - tcy) <= 6 and angle == tangle, (word, t)
        assert abs(w - tw) <= 6 and abs(h - th) <= 6, (word, t)


def test_min_area_rect_matches_the_services_convention():
    """From the captured ``location`` corners, our min-area rectangle is the captured ``rotate_rect``."""
    _, truth = _capture()
    for t in truth:
        loc = t["location"]
        got = min_area_rect([(loc[i], loc[i + 1]) for i in (0, 2, 4, 6)])
        assert max(abs(a - b) for a, b in zip(got, t["rotate_rect"], strict=True)) <= 1, (got, t)


def test_normalize_reproduces_the_text_block():
    text, truth = _capture()
    rects = [item["rotate_rect"] for item in json.loads(strip_fence(text, "json"))]
    for rect, t in zip(rects, truth, strict=True):
        loc = t["location"]
        got = normalize([(loc[i], loc[i + 1]) for i in (0, 2, 4, 6)], WIDTH, HEIGHT)
        assert max(abs(a - b) for a, b in zip(got, rect, strict=True)) <= 1, (got, rect)


def _inside(point, quad, tol):
    """Whether ``point`` lies in the convex ``quad`` (either winding), allowing ``tol`` px outside an edge."""
    sides = []
    for i in range(4):
        (x1, y1), (x2, y2) = quad[i], quad[(i + 1) % 4]
        sides.append(((x2 - x1) * (point[1] - y1) - (y2 - y1) * (point[0] - x1)) / math.hypot(x2 - x1, y2 - y1))
    return all(d >= -tol for d in sides) or all(d <= tol for d in sides)


@pytest.mark.parametrize("seed", range(5))
def test_round_trip_on_random_boxes(seed):
    """Pixel box → 0–1000 rectangle → pixel box. Upright lines come back within a unit; a tilted line on a
    non-square image comes back as the (larger) box around it, because the 0–1000 space is anisotropic and
    the text block can only hold a rectangle there, with its angle in whole degrees — the service's own
    text block has the same loss."""
    rng = random.Random(seed)
    width, height = rng.randint(300, 5000), rng.randint(300, 5000)
    unit = max(width, height) / 1000
    for _ in range(50):
        length, thick = rng.uniform(60, width / 2), rng.uniform(12, 80)
        cx, cy = rng.uniform(width * 0.3, width * 0.7), rng.uniform(height * 0.3, height * 0.7)
        upright = rect_corners([cx, cy, thick, length, 90])
        location, rect = denormalize(normalize(upright, width, height), width, height)
        assert max(abs(a - b) for a, b in zip(location, (v for p in upright for v in p), strict=True)) <= unit + 1
        assert rect[4] == 90 and abs(rect[3] - length) <= 2 * unit + 1 and abs(rect[2] - thick) <= 2 * unit + 1
        tilted = rect_corners([cx, cy, thick, length, rng.uniform(-80, 80) + 90])
        location, _ = denormalize(normalize(tilted, width, height), width, height)
        quad = [(location[i], location[i + 1]) for i in (0, 2, 4, 6)]
        # tolerance: a unit, rounding, and the angle written in whole degrees there (±0.5°, which the
        # anisotropic scaling can stretch by up to the image's aspect ratio) over half the length
        skew = math.radians(min(45.0, 0.5 * max(width / height, height / width)))
        assert all(_inside(p, quad, unit + 1 + length / 2 * math.sin(skew)) for p in tilted), (tilted, quad)


def test_documented_pos_list_form_and_garbage():
    text = '```json\n[{"pos_list": [{"rotate_rect": [500, 500, 100, 400, 90]}], "text": "A"}, {"text": "no box"},' \
           ' {"rotate_rect": [1, 2, 3], "text": "short"}, "str"]\n```'
    words = words_from_text(text, 1000, 1000)
    assert [(w.text, w.location) for w in words] == [("A", [300, 450, 700, 450, 700, 550, 300, 550])]
    assert words_from_text("I could not find any text.", 1000, 1000) == []


def test_parse_answer_prefers_words_info_and_needs_a_size():
    text, truth = _capture()
    assert not parse_answer("advanced_recognition", text).words  # no size: no guess
    from_text = parse_answer("advanced_recognition", text, text_box_size=(WIDTH, HEIGHT)).words
    native = parse_answer("advanced_recognition", text, {"words_info": truth}, text_box_size=(WIDTH, HEIGHT)).words
    assert len(from_text) == 12 and [w.location for w in native] == [t["location"] for t in truth]


def test_only_the_32px_models_write_normalised_boxes():
    assert get_model("qwen-vl-ocr").normalized_text_boxes
    assert get_model("qwen-vl-ocr-2025-11-20").normalized_text_boxes
    assert not get_model("qwen-vl-ocr-2025-04-13").normalized_text_boxes
