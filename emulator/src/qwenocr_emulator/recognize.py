"""The emulator's "model": images + task in, answer text + ``ocr_result`` + usage out.

Both endpoints and the batch plug-in go through here, so every path bills the same tokens and reads
the same text. Per image: load the bytes (byte limits per model), read the header (size, EXIF
orientation), validate like the service (decodable, both sides > 10 px, aspect ≤ 200:1; rules in
``imaging.py``), compute the model's grid with the emulator's own ``smart_resize`` for that image's
``min_pixels``/``max_pixels`` (tokens = h·w/patch² + 2). The ``echo`` engine stops there — it never
decodes pixels (issue 11: ≤ 15 ms of emulator CPU per 12-MP page). The rapidocr engine decodes at
receive time (so an undecodable image is refused before it is billed), runs on the image resized to the
grid (what the model sees), and maps boxes back to the received image's pixels.

``enable_rotate``: when nothing is recognised, the mean confidence is below ``ROTATE_THRESHOLD``, or most
line boxes are taller than wide (a page lying on its side), the image is also read turned by 90°, 180°
and 270°; the reading with the highest Σ(confidence × length)
wins and its boxes are mapped back onto the unrotated image.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from typing import Any

from PIL import Image, ImageOps

from qwenocr_emulator import imaging, layout
from qwenocr_emulator.engine import EchoEngine, Line
from qwenocr_emulator.faults import DropConnection, inspection_error
from qwenocr_emulator.imagesrc import ImageRef, load_bytes
from qwenocr_emulator.models import Model
from qwenocr_emulator.prompts import Task, first_json_object, task_prompt
from qwenocr_emulator.responses import dropped_response
from qwenocr_emulator.state import ApiError, EmulatorState, invalid_parameter

ROTATE_THRESHOLD = 0.85
CHAT_OVERHEAD_TOKENS = 11  # system prompt + chat template around the user's text
_CJK = re.compile(r"[\u3000-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef]")


def text_tokens(text: str | None) -> int:
    """Rough token count: one per CJK character, one per ~4 other characters."""
    if not text:
        return 0
    cjk = len(_CJK.findall(text))
    return cjk + math.ceil((len(text) - cjk) / 4)


@dataclass
class Received:
    """One image as the service received it, validated, with its grid and token count."""

    data: imaging.Payload
    name: str
    size: tuple[int, int]  # (w, h) upright (EXIF orientation applied), from the header
    grid: tuple[int, int]  # (h, w) after smart_resize
    tokens: int
    enable_rotate: bool
    img: Image.Image | None = None  # decoded pixels (rapidocr engine only; echo never decodes)


@dataclass
class Answer:
    text: str
    ocr_result: dict[str, Any] | None
    image_tokens: int
    prompt_tokens: int
    output_tokens: int
    ocr_seconds: float = 0.0
    lines: list[Line] = field(default_factory=list)
    finish_reason: str = "stop"

    @property
    def input_tokens(self) -> int:
        return self.image_tokens + self.prompt_tokens


def receive(refs: list[ImageRef], state: EmulatorState, model: Model, *, oss_resolve: bool) -> list[Received]:
    """Load and validate every image (header only for echo, full decode otherwise); ApiError 400 like the service."""
    if not refs:
        raise invalid_parameter("The request must contain at least one image.")
    decode = not isinstance(state.engine, EchoEngine)
    out = []
    for ref in refs:
        data, name = load_bytes(ref, state, oss_resolve=oss_resolve, limit=model.max_image_bytes)
        lo = _int(ref.min_pixels, "min_pixels")
        hi = _int(ref.max_pixels, "max_pixels")
        lo = model.default_min_pixels if lo is None else lo
        hi = min(model.default_max_pixels if hi is None else hi, model.image_pixel_cap)
        if lo > hi:
            raise invalid_parameter(f"min_pixels ({lo}) must not exceed max_pixels ({hi}).")
        try:
            header = imaging.open_payload_header(data)
            w, h = imaging.upright_size(header)
            imaging.check_shape(w, h)
            img = _decode(imaging.open_header(data.full())) if decode else None
        except imaging.ImageRefused as exc:
            raise invalid_parameter(str(exc)) from exc
        grid = imaging.smart_resize(h, w, model.patch, lo, hi)
        out.append(Received(data=data, name=name, size=(w, h), grid=grid,
                            tokens=imaging.image_tokens(grid, model.patch),
                            enable_rotate=bool(ref.enable_rotate), img=img))
    return out


def _decode(header: Image.Image) -> Image.Image:
    try:
        img = ImageOps.exif_transpose(header)
        img.load()
    except Exception as exc:
        raise imaging.ImageRefused(f"The image format is illegal and cannot be opened: {exc}") from exc
    return img


def can_inline(refs: list[ImageRef], state: EmulatorState) -> bool:
    """Echo-engine requests with inline/oss images are cheap: run them on the event loop, skipping two
    thread hops (this is what keeps the echo engine above 100 requests/s on 2 shared cores). Anything that
    downloads a URL stays in a worker thread — the URL may point back at this very server."""
    return isinstance(state.engine, EchoEngine) and all(
        isinstance(r.url, str) and r.url.startswith(("data:", "oss://")) for r in refs)


async def gate(request, state: EmulatorState, received: list[Received], prompt: str | None):
    """The quota check (429 beyond --rpm/--tpm) and the random fault draw, shared by both chat endpoints.

    Returns the half-sent response that drops the socket when a timeout is drawn, else None (go on).
    """
    state.faults.admit(sum(r.tokens for r in received) + text_tokens(prompt) + CHAT_OVERHEAD_TOKENS)
    try:
        await state.faults.random_fault()
    except DropConnection:
        request.scope["state"]["dropped"] = True
        return dropped_response()
    return None


async def offload(inline: bool, fn, *args, **kwargs):
    if inline:
        return fn(*args, **kwargs)
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(fn, *args, **kwargs)


def _int(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise invalid_parameter(f"{name} must be a positive integer, not {value!r}.")
    return int(value)


def inspect(received: list[Received], state: EmulatorState) -> None:
    for rec in received:
        if state.faults.inspection_fails(rec.data, rec.name):
            raise inspection_error()


_TRANSPOSE = {90: Image.Transpose.ROTATE_90, 180: Image.Transpose.ROTATE_180, 270: Image.Transpose.ROTATE_270}


def _unrotate(lines: list[Line], angle: int, w: int, h: int) -> list[Line]:
    """Map boxes read on the image turned ``angle``° counter-clockwise back onto the original (w x h)."""
    def back(x: float, y: float) -> tuple[float, float]:
        if angle == 90:
            return (w - y, x)
        if angle == 180:
            return (w - x, h - y)
        return (y, h - x)  # 270

    return [Line(l.text, [back(x, y) for x, y in l.box], l.score) for l in lines]


def _looks_rotated(lines: list[Line]) -> bool:
    if not lines or sum(l.score for l in lines) / len(lines) < ROTATE_THRESHOLD:
        return True
    tall = sum(1 for l in lines if l.height > 1.5 * (l.x1 - l.x0) and len(l.text) > 1)
    return tall * 2 > len(lines)


def _quality(lines: list[Line]) -> float:
    return sum(l.score * len(l.text) for l in lines)


def read_rows(rec: Received, state: EmulatorState) -> layout.Rows:
    """Recognised lines in reading order (decided in the upright frame), boxes on the received image."""
    engine = state.engine
    state.count_ocr()
    if isinstance(engine, EchoEngine):
        return [engine.recognize(rec.size, rec.data.digest())]
    w, h = rec.size
    gh, gw = rec.grid
    seen = rec.img.convert("RGB")
    if (gw, gh) != (w, h):
        seen = seen.resize((gw, gh), Image.Resampling.BICUBIC)
    sx, sy = w / gw, h / gh
    lines = engine.recognize(seen)
    angle = 0
    if rec.enable_rotate and _looks_rotated(lines):
        best_q = _quality(lines)
        for cand_angle, op in _TRANSPOSE.items():
            cand = engine.recognize(seen.transpose(op))
            q = _quality(cand)
            if q > best_q:
                angle, lines, best_q = cand_angle, cand, q
    rows = layout.reading_order(lines)
    if angle:
        rows = [_unrotate(row, angle, gw, gh) for row in rows]
    return [[Line(l.text, [(x * sx, y * sy) for x, y in l.box], l.score) for l in row] for row in rows]


def read_pages(received: list[Received], state: EmulatorState) -> list[layout.Rows]:
    """The rows of every image (or PDF page), in order: one engine run per image."""
    return [read_rows(rec, state) for rec in received]


def answer(received: list[Received], state: EmulatorState, task: Task, *, schema: dict | None = None,
           prompt: str | None = None, with_ocr_result: bool = True, combine_prompt: bool = False,
           pages: list[layout.Rows] | None = None) -> Answer:
    """Run the engine on every image and derive the task's answer (rules: emulator/layout.py).

    ``pages``: rows already read by ``read_pages`` (the Responses API derives two answers from one reading).
    """
    started = time.perf_counter()
    pages = read_pages(received, state) if pages is None else pages
    rows: layout.Rows = [row for page in pages for row in page]
    all_lines: list[Line] = [l for row in rows for l in row]
    words: list[dict] = []
    if task is Task.ADVANCED_RECOGNITION:
        for page in pages:
            words.extend(layout.words_info(page))
    ocr_result = None
    if task is Task.ADVANCED_RECOGNITION:
        w, h = received[0].size
        text = layout.advanced_text(words, w, h)
        ocr_result = {"words_info": words}
    elif task is Task.KEY_INFORMATION_EXTRACTION:
        kv = layout.fill_schema(schema, rows) if schema else layout.free_pairs(rows)
        text = layout.json_text(kv)
        ocr_result = {"kv_result": kv}
    elif task is Task.TABLE_PARSING:
        text = layout.table_html(rows)
    elif task is Task.DOCUMENT_PARSING:
        text = layout.document_latex(rows)
    elif task is Task.FORMULA_RECOGNITION:
        text = layout.formula_latex(rows)
    elif task is Task.CUSTOM and prompt and first_json_object(prompt) is not None:
        text = layout.json_text(layout.fill_schema(first_json_object(prompt), rows))
    else:
        text = layout.rows_text(rows)
    if task is Task.CUSTOM:
        prompt_tokens = text_tokens(prompt) + CHAT_OVERHEAD_TOKENS
    else:  # a built-in task runs on its fixed prompt (qwen3.5-ocr: combined with the user's text)
        combined = prompt if combine_prompt and prompt and prompt != task_prompt(task, schema) else None
        prompt_tokens = text_tokens(task_prompt(task, schema)) + text_tokens(combined) + CHAT_OVERHEAD_TOKENS
    return Answer(
        text=text,
        ocr_result=ocr_result if with_ocr_result else None,
        image_tokens=sum(r.tokens for r in received),
        prompt_tokens=prompt_tokens,
        output_tokens=max(1, text_tokens(text)),
        ocr_seconds=time.perf_counter() - started,
        lines=all_lines,
    )


def check_max_tokens(value: Any, model: Model) -> int | None:
    """``max_tokens`` must be within [1, the model's max output]; None means the model's limit."""
    if value is None:
        return None
    limit = model.max_output
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
        raise invalid_parameter(f"Range of max_tokens should be [1, {limit}]")
    return value


def truncate(ans: Answer, max_tokens: int | None) -> Answer:
    """Cut an answer longer than ``max_tokens`` like the service: text cut short, finish_reason "length",
    no ``ocr_result`` (the structured result needs the whole answer)."""
    if max_tokens is None or ans.output_tokens <= max_tokens:
        return ans
    from qwenocr_emulator.native import chunks

    kept = ""
    for piece in chunks(ans.text, size=1):
        if text_tokens(kept + piece) > max_tokens:
            break
        kept += piece
    ans.text, ans.output_tokens, ans.ocr_result, ans.finish_reason = kept, text_tokens(kept), None, "length"
    return ans


__all__ = ["ApiError", "Answer", "Received", "answer", "inspect", "read_pages", "receive", "text_tokens"]
