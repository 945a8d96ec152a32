"""``ocr_result.layouts``: the per-page block list of a Responses API answer, by fixed rules.

Why: a whole document comes back as one answer, and a client must still know what was on which page. A
third-party capture of the service (reference §10) shows ``ocr_result.layouts[]`` entries with
``pageNum``, ``type``, ``text`` and ``markdownContent``; nothing more about them is published, so the
emulator writes exactly those four keys. ``pageNum`` is 1-based across the request's inputs in order: each
``input_image`` is one page, each ``input_file`` PDF adds its pages.

Block rules (on the rows of ``layout.reading_order``; also in emulator/README.md):
- ``title``: the page's first row when it is clearly taller (> 1.3×) than the median row, as
  ``document_parsing`` makes it a section; markdown ``# …``.
- ``table``: two or more consecutive rows of two or more cells each; markdown pipe table, columns as
  ``table_parsing`` finds them (merged horizontal extents).
- ``text``: the other rows, one block per run of rows whose vertical gap stays under 1.5× the median row
  height (a paragraph); markdown = the rows, one per line.
A page where nothing is read has no block.
"""

from __future__ import annotations

import statistics
from typing import Any

from qwenocr_emulator.layout import Rows, columns, rows_text

TITLE_RATIO = 1.3
PARAGRAPH_GAP = 1.5


def _height(row) -> float:
    return max(l.height for l in row)


def _is_table_start(rows: Rows, i: int) -> bool:
    return len(rows[i]) >= 2 and i + 1 < len(rows) and len(rows[i + 1]) >= 2


def blocks(rows: Rows) -> list[tuple[str, Rows]]:
    """(type, rows) blocks of one page, top to bottom."""
    if not rows:
        return []
    median = statistics.median(_height(r) for r in rows)
    out: list[tuple[str, Rows]] = []
    i = 0
    if len(rows) > 1 and _height(rows[0]) > TITLE_RATIO * median:
        out.append(("title", rows[:1]))
        i = 1
    while i < len(rows):
        j = i + 1
        if _is_table_start(rows, i):
            while j < len(rows) and len(rows[j]) >= 2:
                j += 1
            out.append(("table", rows[i:j]))
        else:
            while (j < len(rows) and not _is_table_start(rows, j)
                   and min(l.y0 for l in rows[j]) - max(l.y1 for l in rows[j - 1]) <= PARAGRAPH_GAP * median):
                j += 1
            out.append(("text", rows[i:j]))
        i = j
    return out


def _table_markdown(rows: Rows) -> str:
    cols = columns(rows)
    lines = []
    for n, row in enumerate(rows):
        cells: list[list[str]] = [[] for _ in cols]
        for line in row:
            idx = next((k for k, (a, b) in enumerate(cols) if a <= line.cx <= b), 0)
            cells[idx].append(line.text.replace("|", "\\|"))
        lines.append("| " + " | ".join(" ".join(c) for c in cells) + " |")
        if n == 0:
            lines.append("|" + " --- |" * len(cols))
    return "\n".join(lines)


def markdown(kind: str, rows: Rows) -> str:
    if kind == "title":
        return "# " + rows_text(rows)
    if kind == "table":
        return _table_markdown(rows)
    return rows_text(rows)


def layouts(pages: list[Rows]) -> list[dict[str, Any]]:
    """The ``layouts`` list of a whole request: every block of every page, pages in order."""
    return [{"pageNum": n, "type": kind, "text": rows_text(rows), "markdownContent": markdown(kind, rows)}
            for n, page in enumerate(pages, start=1) for kind, rows in blocks(page)]
