"""Typed OCR results and their JSON-row form (one JSON line per image in the results file).

The row keys ``source, sha256, task, model, status, text, kv, words, usage, error`` are a stable
contract (DESIGN.md §6): warehouse loads and user queries read them. Keys may be added, never renamed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Word:
    """One recognised line: ``location`` = 8 ints (TL, TR, BR, BL) and ``rotate_rect`` = [cx, cy, w, h, angle],
    both on the ORIGINAL image. Width and height may come swapped with angle 90 (OpenCV minAreaRect style)."""

    text: str
    location: list[int]
    rotate_rect: list[int]

    @classmethod
    def from_words_info(cls, item: dict, scale_x: float = 1.0, scale_y: float = 1.0) -> Word:
        """One ``words_info`` item; a word without ``location`` (seen from ``qwen3.5-ocr``) gets its 8
        corners from ``rotate_rect`` instead of being dropped."""
        from .geometry import location_from_rect, rect_values

        rect = rect_values(item.get("rotate_rect"))
        rr = [round(v) for v in rect] if rect is not None else [int(v) for v in item.get("rotate_rect") or []]
        loc = [int(v) for v in item.get("location") or []]
        if len(loc) != 8 and rect is not None:
            loc = location_from_rect(rect)
        if scale_x != 1.0 or scale_y != 1.0:
            loc = [round(v * (scale_x if i % 2 == 0 else scale_y)) for i, v in enumerate(loc)]
            if len(rr) == 5:
                cx, cy, w, h, angle = rr
                # w/h follow the rotated axes: with angle ±90 the box's width runs along y.
                sw, sh = (scale_y, scale_x) if abs(angle) >= 45 else (scale_x, scale_y)
                rr = [round(cx * scale_x), round(cy * scale_y), round(w * sw), round(h * sh), angle]
        return cls(text=str(item.get("text", "")), location=loc, rotate_rect=rr)


@dataclass
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    image_tokens: int = 0
    total_tokens: int = 0

    @classmethod
    def from_api(cls, usage: dict | None) -> Usage:
        """Native (``input_tokens``…) or compatible (``prompt_tokens``…) usage; older responses lack totals."""
        u = dict(usage or {})
        inp = int(u.get("input_tokens", u.get("prompt_tokens", 0)) or 0)
        out = int(u.get("output_tokens", u.get("completion_tokens", 0)) or 0)
        img = u.get("image_tokens")
        if img is None:
            details = u.get("input_tokens_details") or u.get("prompt_tokens_details") or {}
            img = details.get("image_tokens", 0)
        total = int(u.get("total_tokens") or inp + out)
        return cls(inp, out, int(img or 0), total)

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.image_tokens + other.image_tokens,
            self.total_tokens + other.total_tokens,
        )

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass
class OcrError:
    code: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


@dataclass
class OcrResult:
    source: str
    task: str
    model: str
    status: str = "ok"  # "ok" | "error"
    sha256: str | None = None
    key: str | None = None
    text: str | None = None
    kv: Any = None
    words: list[Word] | None = None
    html: str | None = None
    latex: str | None = None
    usage: Usage = field(default_factory=Usage)
    cost: dict[str, float | None] | None = None
    error: OcrError | None = None
    request_id: str | None = None
    width: int | None = None
    height: int | None = None
    finish_reason: str | None = None
    page: int | None = None
    pages: int | None = None  # a document row (page None): how many pages it covers; None on page/image rows
    markdown: str | None = None  # the page's or document's markdown, when the service sends one (Responses API)
    boxes_uri: str | None = None  # where the picture of this row's boxes was written (draw_boxes_uri), if any

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_row(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "source": self.source,
            "page": self.page,
            "sha256": self.sha256,
            "task": self.task,
            "model": self.model,
            "status": self.status,
            "text": self.text,
            "kv": self.kv,
            "words": None if self.words is None else [asdict(w) for w in self.words],
            "html": self.html,
            "latex": self.latex,
            "usage": self.usage.to_dict(),
            "cost": self.cost,
            "error": None if self.error is None else self.error.to_dict(),
            "request_id": self.request_id,
            "width": self.width,
            "height": self.height,
            "finish_reason": self.finish_reason,
            "pages": self.pages,
            "markdown": self.markdown,
            "boxes_uri": self.boxes_uri,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_row(), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> OcrResult:
        words = row.get("words")
        err = row.get("error")
        return cls(
            source=row["source"],
            task=row["task"],
            model=row["model"],
            status=row.get("status", "ok"),
            sha256=row.get("sha256"),
            key=row.get("key"),
            text=row.get("text"),
            kv=row.get("kv"),
            words=None if words is None else [Word(**w) for w in words],
            html=row.get("html"),
            latex=row.get("latex"),
            usage=Usage(**(row.get("usage") or {})),
            cost=row.get("cost"),
            error=None if not err else OcrError(err.get("code", "Unknown"), err.get("message", "")),
            request_id=row.get("request_id"),
            width=row.get("width"),
            height=row.get("height"),
            finish_reason=row.get("finish_reason"),
            page=row.get("page"),
            pages=row.get("pages"),
            markdown=row.get("markdown"),
            boxes_uri=row.get("boxes_uri"),
        )

    @classmethod
    def failure(cls, source: str, task: str, model: str, code: str, message: str, **kw: Any) -> OcrResult:
        return cls(source=source, task=task, model=model, status="error", error=OcrError(code, message), **kw)


#: The currencies a row's ``cost`` carries.
CURRENCIES = ("usd", "cny")


def new_cost_total() -> dict[str, Any]:
    """An empty run total: ``{"usd": 0.0, "cny": 0.0, "unknown_rows": 0}`` (see :func:`add_cost`)."""
    return {"usd": 0.0, "cny": 0.0, "unknown_rows": 0}


def add_cost(total: dict[str, Any], cost: dict[str, float | None] | None) -> None:
    """Add one billed row's ``cost`` to a run ``total`` in place — the one summing rule for every summary.

    A currency some row could not price (``None``: the model's price is not published, or the region
    has no list price in that currency) makes that currency's total ``None`` — a partial sum would read
    as the bill. ``unknown_rows`` counts the rows with no known price at all (no currency priced: a row
    priced in CNY only, by a connection's own CNY price, is known), so a reader sees how many rows the
    null stands for. ``cost=None`` (a duplicate or cached row that carries
    no cost of its own) adds nothing.
    """
    if cost is None:
        return
    total.setdefault("unknown_rows", 0)
    if all(cost.get(cur) is None for cur in CURRENCIES):
        total["unknown_rows"] += 1
    for cur in CURRENCIES:
        value = cost.get(cur)
        if value is None or total.get(cur) is None:
            total[cur] = None
        else:
            total[cur] = round(total[cur] + value, 8)


def idempotency_key(sha256: str, task: str, model: str, params: dict[str, Any] | None = None) -> str:
    """The key a result is stored and upserted under: same image bytes + task + model + params → same key.

    A re-run that finds a row with this key skips the call, so it pays nothing.
    """
    blob = json.dumps([sha256, task, model, params or {}], sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()
