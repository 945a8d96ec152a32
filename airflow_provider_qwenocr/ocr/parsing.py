"""Turn a model answer into typed fields: text, kv, words, html, latex.

Why we prefer ``ocr_result`` over parsing ``text``: the native API returns ``words_info`` (boxes on the
original image) and ``kv_result`` (parsed JSON) next to the text, while the JSON inside ``text`` uses a
different coordinate scale (0–1000 on 2025-11-20). We fall back to parsing ``text`` only where there is no
``ocr_result``: compatible mode, Batch, streaming, and custom prompts.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from typing import Any

from .geometry import denormalize, rect_values
from .results import Word
from .tasks import OcrTask

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\n?(.*?)(?:```|\Z)", re.S)
_FULLWIDTH = str.maketrans({"，": ",", "：": ":", "“": '"', "”": '"', "‘": "'", "’": "'", "｛": "{", "｝": "}",
                            "［": "[", "］": "]", "（": "(", "）": ")"})


def strip_fence(text: str, lang: str | None = None) -> str:
    """Body of the first ```lang fenced block (any language if ``lang`` is None), else the text itself.

    An unterminated fence (the answer ran out of ``max_tokens``) still yields its body.
    """
    for m in _FENCE.finditer(text or ""):
        if lang is None or m.group(1).lower() == lang:
            return m.group(2).strip()
    return (text or "").strip()


def parse_json_loose(text: str) -> Any:
    """Parse JSON the way models write it: fenced, single-quoted, with full-width punctuation or trailing text.

    Returns None when nothing JSON-like can be recovered — the caller keeps the raw text.
    """
    if not text:
        return None
    body = strip_fence(text)
    candidates = []
    for form in (body, body.translate(_FULLWIDTH)):
        candidates.append(form)
        m = re.search(r"[\[{].*[\]}]", form, re.S)
        if m and m.group(0) != form:
            candidates.append(m.group(0))
    for cand in candidates:
        try:
            return json.loads(cand)
        except ValueError:
            pass
        try:
            value = ast.literal_eval(cand.replace("null", "None").replace("true", "True").replace("false", "False"))
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            continue
        if isinstance(value, (dict, list)):
            return value
    return None


def extract_table_html(text: str) -> str | None:
    body = strip_fence(text, "html")
    m = re.search(r"<table.*?(?:</table>|\Z)", body, re.S | re.I)
    return m.group(0).strip() if m else (body if "<tr" in body.lower() else None)


def extract_latex(text: str) -> str | None:
    body = strip_fence(text, "latex")
    return body or None


@dataclass
class Parsed:
    text: str | None = None
    kv: Any = None
    words: list[Word] | None = None
    html: str | None = None
    latex: str | None = None


def parse_answer(
    task: str | OcrTask,
    text: str | None,
    ocr_result: dict | None = None,
    *,
    scale_x: float = 1.0,
    scale_y: float = 1.0,
    parse_custom_json: bool = True,
    text_box_size: tuple[int, int] | None = None,
) -> Parsed:
    """Typed fields for one image's answer.

    ``scale_x``/``scale_y`` map box coordinates from the image we sent (resized to the model's grid) back
    to the original image: the service reports boxes on the image it received. ``text_box_size`` = the
    original (width, height): with no ``words_info`` (compatible mode, Batch), read ``advanced_recognition``
    boxes from the text block's 0–1000 rectangles (see :mod:`.geometry`).
    """
    task = OcrTask.parse(task)
    ocr_result = ocr_result or {}
    out = Parsed(text=text)
    if task is OcrTask.ADVANCED_RECOGNITION:
        info = ocr_result.get("words_info")
        if info is not None:
            out.words = [Word.from_words_info(w, scale_x, scale_y) for w in info]
        elif text_box_size is not None:
            out.words = words_from_text(text or "", *text_box_size)
    elif task is OcrTask.KEY_INFORMATION_EXTRACTION:
        kv = ocr_result.get("kv_result")
        out.kv = kv if kv is not None else parse_json_loose(text or "")
    elif task is OcrTask.TABLE_PARSING:
        out.html = extract_table_html(text or "")
    elif task in (OcrTask.DOCUMENT_PARSING, OcrTask.FORMULA_RECOGNITION):
        out.latex = extract_latex(text or "")
    elif task is OcrTask.CUSTOM and parse_custom_json and text and ("{" in text or "```json" in text):
        out.kv = parse_json_loose(text)
    return out


def words_from_text(text: str, width: int, height: int) -> list[Word]:
    """Boxes from an ``advanced_recognition`` text block: ``[{"rotate_rect": [cx, cy, w, h, a], "text": …}]``
    in 0–1000 coordinates (also the documented ``{"pos_list": [{"rotate_rect": …}]}`` form, and
    ``qwen3.5-ocr``'s ``"<cx><cy><w><h><angle>"`` strings), in pixels of a ``width`` × ``height`` image.
    Items without a readable 5-number rectangle are skipped."""
    data = parse_json_loose(text)
    if isinstance(data, dict):
        data = data.get("words_info") or data.get("words") or [data]
    words = []
    for item in data if isinstance(data, list) else []:
        if not isinstance(item, dict):
            continue
        rect = item.get("rotate_rect")
        if rect is None and isinstance(item.get("pos_list"), list) and item["pos_list"]:
            first = item["pos_list"][0]
            rect = first.get("rotate_rect") if isinstance(first, dict) else None
        values = rect_values(rect)  # a 5-number list or a "<cx><cy><w><h><angle>" string (qwen3.5-ocr)
        if values is None:
            continue
        location, rotate_rect = denormalize(values, width, height)
        words.append(Word(text=str(item.get("text", "")), location=location, rotate_rect=rotate_rect))
    return words


def content_text(content: Any) -> tuple[str | None, dict | None]:
    """(text, ocr_result) from a native ``message.content`` list or a compatible-mode string."""
    if content is None:
        return None, None
    if isinstance(content, str):
        return content, None
    texts, ocr = [], None
    for item in content:
        if not isinstance(item, dict):
            continue
        if "text" in item and item["text"] is not None:
            texts.append(str(item["text"]))
        if item.get("ocr_result"):
            ocr = item["ocr_result"]
    return ("".join(texts) if texts else None), ocr
