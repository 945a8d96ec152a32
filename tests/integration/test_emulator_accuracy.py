"""Character accuracy of the emulator (rapidocr engine) on rendered zh+en documents, through its HTTP API.

Accuracy = 1 − CER over the whole document, after NFKC normalisation with all whitespace removed (the
measure used in reference/local-stack.md). The documents and their ground truth are rendered by
scripts/render_test_docs.py and committed under tests/data/docs/.
"""

from __future__ import annotations

import base64
import io
import json
import unicodedata

import httpx
import pytest
from PIL import Image

pytestmark = pytest.mark.integration

NATIVE = "/api/v1/services/aigc/multimodal-generation/generation"
FLOOR = 0.95


def norm(text: str) -> str:
    return "".join(unicodedata.normalize("NFKC", text).split())


def edit_distance(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def char_accuracy(truth: str, got: str) -> float:
    t, g = norm(truth), norm(got)
    return max(0.0, 1 - edit_distance(t, g) / max(1, len(t)))


def ocr(srv, data: bytes, task="text_recognition", **item):
    mime = "image/jpeg" if data[:2] == b"\xff\xd8" else "image/png"
    url = f"data:{mime};base64," + base64.b64encode(data).decode()
    body = {"model": "qwen-vl-ocr", "input": {"messages": [{"role": "user", "content": [{"image": url, **item}]}]},
            "parameters": {"ocr_options": {"task": task}}}
    resp = httpx.post(srv.base_url + NATIVE, json=body, headers={"Authorization": "Bearer sk-x"}, timeout=120)
    assert resp.status_code == 200, resp.text
    return resp.json()["output"]["choices"][0]["message"]["content"][0]


def documents(docs_dir):
    return sorted(p for p in docs_dir.iterdir()
                  if p.suffix in (".png", ".jpg") and p.with_suffix(".txt").exists())


def test_character_accuracy_on_rendered_documents(emulator, docs_dir, capsys):
    docs = documents(docs_dir)
    assert len(docs) >= 8 and any(p.suffix == ".jpg" for p in docs)
    total_chars, total_errors, per_doc = 0, 0, {}
    for path in docs:
        truth = path.with_suffix(".txt").read_text(encoding="utf-8")
        got = ocr(emulator, path.read_bytes())["text"]
        t, g = norm(truth), norm(got)
        errors = edit_distance(t, g)
        total_chars += len(t)
        total_errors += errors
        per_doc[path.stem] = round(1 - errors / len(t), 4)
    accuracy = 1 - total_errors / total_chars
    with capsys.disabled():
        print(f"\nemulator char accuracy (1-CER, NFKC, no whitespace): {accuracy:.4f} over {total_chars} chars; "
              f"per document: {json.dumps(per_doc)}")
    assert accuracy >= FLOOR
    assert min(per_doc.values()) >= 0.9


def test_advanced_recognition_boxes_lie_on_the_received_image(emulator, docs_dir):
    path = docs_dir / "paragraph_en.png"
    w, h = Image.open(path).size
    content = ocr(emulator, path.read_bytes(), task="advanced_recognition")
    words = content["ocr_result"]["words_info"]
    truth = path.with_suffix(".txt").read_text().splitlines()
    assert [norm(x["text"]) for x in words] == [norm(x) for x in truth]
    for word, row in zip(words, range(len(truth)), strict=True):
        xs, ys = word["location"][0::2], word["location"][1::2]
        assert all(-2 <= x <= w + 2 for x in xs) and all(-2 <= y <= h + 2 for y in ys)
        expected_y = 24 + row * 57 + 15  # rendered rows: top 24 px, 57 px apart, ~30 px glyphs
        assert abs(word["rotate_rect"][1] - expected_y) < 20
        # the service's form for a horizontal line: [cx, cy, line height, line length, 90]
        cx, cy, side_a, side_b, angle = word["rotate_rect"]
        assert angle in (90, 89, 1) and (side_a < side_b) == (angle != 1)


def test_enable_rotate_reads_a_sideways_page(emulator, docs_dir):
    path = docs_dir / "paragraph_en.png"
    img = Image.open(path).convert("RGB").transpose(Image.Transpose.ROTATE_90)
    buf = io.BytesIO()
    img.save(buf, "PNG")
    truth = path.with_suffix(".txt").read_text()
    rotated = ocr(emulator, buf.getvalue(), enable_rotate=True)["text"]
    assert char_accuracy(truth, rotated) >= FLOOR
    # Boxes come back on the sideways image as received: the title (top rows of the upright page) lies
    # along the left edge after a 90° counter-clockwise turn.
    content = ocr(emulator, buf.getvalue(), task="advanced_recognition", enable_rotate=True)
    words = content["ocr_result"]["words_info"]
    title = next(wd for wd in words if norm(wd["text"]) == "QuarterlyReport")
    rw, rh = img.size
    assert all(x < 80 for x in title["location"][0::2])
    assert all(0 <= y <= rh for y in title["location"][1::2])
    assert abs(title["rotate_rect"][4]) == 90
