"""advanced_recognition boxes from the text block (compatible mode / Batch), checked against a real capture."""

from __future__ import annotations

import json
import math
import random

import pytest

from airflow_provider_qwenocr.ocr.geometry import (
    denormalize,
    location_from_rect,
    min_area_rect,
    normalize,
    rect_corners,
    rect_values,
)
from airflow_provider_qwenocr.ocr.models import get_model
from airflow_provider_qwenocr.ocr.parsing import parse_answer, strip_fence, words_from_text
from airflow_provider_qwenocr.ocr.results import Word
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


def test_text_block_bracketed_string_and_list_forms_give_the_same_boxes():
    """qwen3.5-ocr writes ``"<cx><cy><w><h><angle>"`` (0–1000 per axis); the list form also occurs."""
    strings = '```json\n[{"rotate_rect": "<498><880><488><86><0>", "text": "A"},' \
              ' {"rotate_rect": "<500><500><100><400><90>", "text": "B"}, {"rotate_rect": "<1><2>", "text": "bad"}]\n```'
    lists = '```json\n[{"rotate_rect": [498, 880, 488, 86, 0], "text": "A"},' \
            ' {"rotate_rect": [500, 500, 100, 400, 90], "text": "B"}]\n```'
    from_strings, from_lists = words_from_text(strings, 1000, 2000), words_from_text(lists, 1000, 2000)
    assert [w.text for w in from_strings] == ["A", "B"]
    assert [(w.location, w.rotate_rect) for w in from_strings] == [(w.location, w.rotate_rect) for w in from_lists]
    # "<498><880><488><86><0>" on 1000×2000 px: centre (498, 1760), 488 px wide, 172 px high.
    assert sorted(from_strings[0].location[0::2]) == [254, 254, 742, 742]
    assert sorted(from_strings[0].location[1::2]) == [1674, 1674, 1846, 1846]


@pytest.mark.parametrize("value,expected", [
    ("<498><880><488><86><0>", [498.0, 880.0, 488.0, 86.0, 0.0]),
    ("< 1 ><2><3><4><-90>", [1.0, 2.0, 3.0, 4.0, -90.0]),
    ([1, 2, 3, 4, 5], [1.0, 2.0, 3.0, 4.0, 5.0]),
    ("<1><2><3><4>", None), ("x<1><2><3><4><5>", None), ([1, 2, 3, True, 5], None), (None, None),
])
def test_rect_values_reads_both_spellings(value, expected):
    assert rect_values(value) == expected


def test_word_without_location_gets_corners_from_rotate_rect_in_both_forms():
    """Some qwen3.5-ocr words_info items have no ``location``: derive it, whichever way w/h are written."""
    capture_word = _capture()[1][0]  # the capture's first word: both fields present
    derived = Word.from_words_info({"text": capture_word["text"], "rotate_rect": capture_word["rotate_rect"]})
    assert max(abs(a - b) for a, b in zip(derived.location, capture_word["location"], strict=True)) <= 1
    service_form = Word.from_words_info({"text": "x", "rotate_rect": [150, 80, 49, 197, -89]})  # h, w, -89
    other_form = Word.from_words_info({"text": "x", "rotate_rect": [150, 80, 197, 49, 1]})  # w, h, 1
    assert service_form.location == other_form.location and len(service_form.location) == 8
    horizontal_90 = Word.from_words_info({"text": "x", "rotate_rect": [100, 50, 20, 160, 90]})
    horizontal_0 = Word.from_words_info({"text": "x", "rotate_rect": [100, 50, 160, 20, 0]})
    assert horizontal_90.location == horizontal_0.location == [20, 40, 180, 40, 180, 60, 20, 60]
    scaled = Word.from_words_info({"text": "x", "rotate_rect": [100, 50, 160, 20, 0]}, 2.0, 2.0)
    assert scaled.location == [40, 80, 360, 80, 360, 120, 40, 120]
    assert location_from_rect([100, 50, 20, 160, -90]) == horizontal_0.location
