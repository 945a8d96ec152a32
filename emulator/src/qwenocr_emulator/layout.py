"""Task outputs derived from recognised lines, by fixed rules (the emulator has no language model).

Rules (also in emulator/README.md):
- reading order: lines sorted by vertical centre; a line joins the current row when it overlaps the
  row vertically by at least half of the smaller height; rows are read top to bottom, each left to right.
- text (text_recognition, multi_lan, custom prompts): one row per output line, cells of a row joined by a
  space.
- words_info (advanced_recognition): one entry per recognised line; ``location`` = 8 ints (TL, TR, BR, BL)
  and ``rotate_rect`` = OpenCV's minAreaRect ``[cx, cy, w, h, angle]`` with angle in (0, 90] — a
  horizontal line is ``[cx, cy, height, length, 90]``, as the service writes it — on the received image's
  pixels; the ```json text carries the same rectangle of the line's corners in 0–1000 coordinates
  (``geometry.py``).
- kv_result (key_information_extraction): each leaf key of ``result_schema`` (nested up to 3 levels;
  a list holds one element template) is looked up in the lines after NFKC + whitespace-free +
  case-folded normalisation. Value = the rest of the line after the key and any separator (``:``, ``：``,
  ``=``, ``-``); if the rest is empty, the next cell in the same row, else the first cell of the next row.
  A key that is not found is ``null`` — never invented. Without a schema, every ``key: value`` line
  becomes a pair.
- table_parsing: rows as above; columns by merging the cells' horizontal extents across all rows; one
  ``<td>`` per column (empty when a row has no cell there) in a ```html ``<table>``.
- document_parsing: a ```latex fence; a first row clearly taller than the median becomes
  ``\\section*{...}``, every other row a paragraph, LaTeX specials escaped.
- formula_recognition: the recognised rows inside ``$$ ... $$`` in a ```latex fence (rapidocr reads
  characters, not math structure: a stand-in, not a formula recogniser).
"""

from __future__ import annotations

import html
import json
import re
import statistics
import unicodedata
from typing import Any

from qwenocr_emulator import geometry
from qwenocr_emulator.engine import Line

Rows = list[list[Line]]


def reading_order(lines: list[Line]) -> Rows:
    rows: Rows = []
    for line in sorted(lines, key=lambda l: (l.cy, l.x0)):
        if rows:
            row = rows[-1]
            r0 = min(l.y0 for l in row)
            r1 = max(l.y1 for l in row)
            overlap = min(r1, line.y1) - max(r0, line.y0)
            if overlap >= 0.5 * min(line.height, r1 - r0):
                row.append(line)
                continue
        rows.append([line])
    return [sorted(row, key=lambda l: l.x0) for row in rows]


def rows_text(rows: Rows) -> str:
    return "\n".join(" ".join(l.text for l in row) for row in rows)


# -- advanced_recognition ------------------------------------------------------------------------
def words_info(rows: Rows) -> list[dict[str, Any]]:
    return [{"location": geometry.location(line.box), "rotate_rect": geometry.min_area_rect(line.box),
             "text": line.text} for row in rows for line in row]


def advanced_text(words: list[dict[str, Any]], width: int, height: int) -> str:
    """The ```json text block: each line's rectangle in 0–1000 coordinates, as the service writes it."""
    def norm(loc: list[int]) -> list[int]:
        return geometry.normalised_rect([(loc[i], loc[i + 1]) for i in (0, 2, 4, 6)], width, height)

    items = [json.dumps({"rotate_rect": norm(w["location"]), "text": w["text"]}, ensure_ascii=False)
             for w in words]
    return "```json\n[\n\t" + ",\n\t".join(items) + "\n]\n```" if items else "```json\n[]\n```"


# -- key_information_extraction -----------------------------------------------------------------
_SEP = re.compile(r"^[\s:：=\-–—|.#。]+")


def _norm(s: str) -> str:
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", s)).casefold()


def _find_value(key: str, rows: Rows) -> str | None:
    nk = _norm(key)
    if not nk:
        return None
    for r, row in enumerate(rows):
        for c, line in enumerate(row):
            text = unicodedata.normalize("NFKC", line.text)
            pos = _locate(text, nk)
            if pos is None:
                continue
            rest = _SEP.sub("", text[pos:]).strip()
            if rest:
                return rest
            if c + 1 < len(row):
                return row[c + 1].text.strip()
            if r + 1 < len(rows):
                return rows[r + 1][0].text.strip()
            return None
    return None


def _locate(text: str, nkey: str) -> int | None:
    """End position in ``text`` of ``nkey`` matched ignoring whitespace and case, or None."""
    flat, index = [], []
    for i, ch in enumerate(text):
        if ch.isspace():
            continue
        for f in ch.casefold():
            flat.append(f)
            index.append(i)
    at = "".join(flat).find(nkey)
    if at < 0:
        return None
    return index[at + len(nkey) - 1] + 1


def fill_schema(schema: Any, rows: Rows) -> Any:
    if isinstance(schema, dict):
        return {k: (fill_schema(v, rows) if isinstance(v, (dict, list)) else _find_value(k, rows))
                for k, v in schema.items()}
    if isinstance(schema, list):
        if not schema:
            return []
        item = fill_schema(schema[0], rows)
        return [item] if _any_value(item) else []
    return None


def _any_value(value: Any) -> bool:
    if isinstance(value, dict):
        return any(_any_value(v) for v in value.values())
    if isinstance(value, list):
        return any(_any_value(v) for v in value)
    return value is not None


_PAIR = re.compile(r"^\s*([^:：=]{1,40}?)\s*[:：=]\s*(.+?)\s*$")


def free_pairs(rows: Rows) -> dict[str, str]:
    out: dict[str, str] = {}
    for row in rows:
        for line in row:
            m = _PAIR.match(unicodedata.normalize("NFKC", line.text))
            if m and m.group(1) not in out:
                out[m.group(1)] = m.group(2)
    return out


def json_text(value: Any) -> str:
    return "```json\n" + json.dumps(value, ensure_ascii=False, indent=1) + "\n```"


# -- table_parsing --------------------------------------------------------------------------------
def columns(rows: Rows) -> list[tuple[float, float]]:
    spans = sorted((l.x0, l.x1) for row in rows for l in row)
    cols: list[list[float]] = []
    for x0, x1 in spans:
        if cols and x0 <= cols[-1][1]:
            cols[-1][1] = max(cols[-1][1], x1)
        else:
            cols.append([x0, x1])
    return [(a, b) for a, b in cols]


def table_html(rows: Rows) -> str:
    cols = columns(rows)
    out = ["<table>"]
    for row in rows:
        cells: list[list[str]] = [[] for _ in cols]
        for line in row:
            idx = next((i for i, (a, b) in enumerate(cols) if a <= line.cx <= b), 0)
            cells[idx].append(html.escape(line.text))
        out.append("<tr>" + "".join(f"<td>{' '.join(c)}</td>" for c in cells) + "</tr>")
    out.append("</table>")
    return "```html\n" + "\n".join(out) + "\n```"


# -- document / formula ----------------------------------------------------------------------------
_LATEX_SPECIALS = {"\\": r"\textbackslash{}", "#": r"\#", "$": r"\$", "%": r"\%", "&": r"\&", "_": r"\_",
                   "{": r"\{", "}": r"\}", "^": r"\^{}", "~": r"\~{}"}


def latex_escape(s: str) -> str:
    return "".join(_LATEX_SPECIALS.get(ch, ch) for ch in s)


def document_latex(rows: Rows) -> str:
    if not rows:
        return "```latex\n\n```"
    heights = [max(l.height for l in row) for row in rows]
    median = statistics.median(heights)
    parts = []
    for i, row in enumerate(rows):
        text = latex_escape(" ".join(l.text for l in row))
        if i == 0 and len(rows) > 1 and heights[0] > 1.3 * median:
            parts.append(f"\\section*{{{text}}}")
        else:
            parts.append(text)
    return "```latex\n" + "\n\n".join(parts) + "\n```"


def formula_latex(rows: Rows) -> str:
    body = " \\\\ ".join(" ".join(l.text for l in row) for row in rows)
    return "```latex\n$$" + body + "$$\n```"
