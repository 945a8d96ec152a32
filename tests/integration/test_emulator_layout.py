"""The emulator's documented answer rules (emulator/layout.py), on synthetic lines — no server, no OCR.

Kept next to the other emulator tests; they run in milliseconds.
"""

from __future__ import annotations

import json

from qwenocr_emulator import layout
from qwenocr_emulator.engine import Line

from airflow_provider_qwenocr.ocr.parsing import extract_latex, extract_table_html, parse_json_loose


def line(text, x, y, w=100, h=20, score=0.99):
    return Line(text, [(x, y), (x + w, y), (x + w, y + h), (x, y + h)], score)


def test_reading_order_groups_rows_and_sorts_cells():
    lines = [line("right", 300, 12), line("second", 10, 60), line("left", 10, 10), line("third", 10, 110, h=22)]
    rows = layout.reading_order(lines)
    assert [[l.text for l in r] for r in rows] == [["left", "right"], ["second"], ["third"]]
    assert layout.rows_text(rows) == "left right\nsecond\nthird"


def test_kv_nested_schema_separators_neighbours_and_nulls():
    rows = layout.reading_order([
        line("发票代码：221021325353", 10, 10, w=300),
        line("Invoice No.", 10, 50), line("10283819", 200, 50),
        line("Date", 10, 90), line("2013-06-29", 10, 130),
    ])
    schema = {"发票": {"发票代码": "代码", "Invoice No": ""}, "Date": "", "Seller": "",
              "items": [{"Date": ""}], "missing": [{"nope": ""}]}
    kv = layout.fill_schema(schema, rows)
    assert kv == {"发票": {"发票代码": "221021325353", "Invoice No": "10283819"}, "Date": "2013-06-29",
                  "Seller": None, "items": [{"Date": "2013-06-29"}], "missing": []}
    assert parse_json_loose(layout.json_text(kv)) == kv


def test_kv_without_schema_takes_key_value_lines():
    rows = layout.reading_order([line("Name: Li Lei", 10, 10), line("no pair here", 10, 50),
                                 line("金额：12.00", 10, 90)])
    assert layout.free_pairs(rows) == {"Name": "Li Lei", "金额": "12.00"}


def test_table_columns_and_empty_cells():
    rows = layout.reading_order([
        line("Item", 10, 10), line("Qty", 200, 10), line("Price", 400, 10),
        line("Apple", 10, 50), line("3.50", 400, 50),
    ])
    html = extract_table_html(layout.table_html(rows))
    assert "<tr><td>Item</td><td>Qty</td><td>Price</td></tr>" in html
    assert "<tr><td>Apple</td><td></td><td>3.50</td></tr>" in html


def test_words_info_location_and_rotate_rect():
    horizontal = line("abc", 10, 20, w=100, h=20)
    tilted = Line("xyz", [(0, 100), (100, 0), (110, 10), (10, 110)], 0.9)
    words = layout.words_info([[horizontal], [tilted]])
    assert words[0]["location"] == [10, 20, 110, 20, 110, 40, 10, 40]
    # the service's form (OpenCV minAreaRect, angle in (0, 90]): a horizontal line is [cx, cy, h, w, 90]
    assert words[0]["rotate_rect"] == [60, 30, 20, 100, 90]
    assert words[1]["rotate_rect"] == [55, 55, 14, 141, 45]
    text = layout.advanced_text(words, 200, 200)
    # the text block's 0–1000 rectangle follows the same convention
    assert json.loads(text.strip("`").removeprefix("json"))[0]["rotate_rect"] == [300, 150, 100, 500, 90]


def test_rotate_rect_reproduces_the_captured_service_answer():
    """From each captured line's ``location`` corners, the emulator writes the captured ``rotate_rect``."""
    from tests.conftest_paths import RECORDINGS

    body = json.loads((RECORDINGS / "multimodal-generation-vl-ocr-advanced-recognition-nosse.response.body.txt")
                      .read_text(encoding="utf-8"))
    words = body["output"]["choices"][0]["message"]["content"][0]["ocr_result"]["words_info"]
    assert len(words) == 12
    for w in words:
        loc = w["location"]
        got = layout.words_info([[Line(w["text"], [(loc[i], loc[i + 1]) for i in (0, 2, 4, 6)], 1.0)]])[0]
        assert got["location"] == loc
        assert max(abs(a - b) for a, b in zip(got["rotate_rect"], w["rotate_rect"], strict=True)) <= 1, (got, w)


def test_rotate_rect_is_the_documented_examples_rectangle():
    """The docs' [150, 80, 49, 197, -89] (OpenCV's older range) is written [150, 80, 197, 49, 1] here."""
    import math

    t = math.radians(1)
    u, v = (math.cos(t) * 98.5, math.sin(t) * 98.5), (-math.sin(t) * 24.5, math.cos(t) * 24.5)
    box = [(150 - u[0] - v[0], 80 - u[1] - v[1]), (150 + u[0] - v[0], 80 + u[1] - v[1]),
           (150 + u[0] + v[0], 80 + u[1] + v[1]), (150 - u[0] + v[0], 80 - u[1] + v[1])]
    assert layout.words_info([[Line("x", box, 1.0)]])[0]["rotate_rect"] == [150, 80, 197, 49, 1]


def test_document_and_formula_latex():
    rows = layout.reading_order([line("Title_1 & more", 10, 10, h=40), line("body 50%", 10, 70),
                                 line("next", 10, 110)])
    latex = extract_latex(layout.document_latex(rows))
    assert latex.startswith(r"\section*{Title\_1 \& more}") and r"body 50\%" in latex
    assert extract_latex(layout.formula_latex(layout.reading_order([line("E=mc2", 0, 0)]))) == "$$E=mc2$$"
