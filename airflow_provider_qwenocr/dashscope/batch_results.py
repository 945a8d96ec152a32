"""Batch output and error files → the same result rows as realtime.

Why a separate step with a manifest: output lines carry only ``custom_id`` and the chat-completion body.
The manifest entry of each id (:mod:`.batch_jsonl`) restores source, sha256, task and the scale back to
the original image; answers are parsed by the same ``ocr.parsing.parse_answer`` as realtime (fed the
compatible-mode text — there is no ``ocr_result`` on this endpoint), and ``cost`` uses the batch price
(half of realtime; only successful requests are billed). Every manifest entry yields a row: an answer,
an error line's code, or ``NotProcessed`` when a batch ended (expired, cancelled, failed) before it ran.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from airflow_provider_qwenocr.dashscope.batch_jsonl import ManifestEntry
from airflow_provider_qwenocr.dashscope.errors import PermanentError, QwenOcrError, classify_body, redact
from airflow_provider_qwenocr.ocr.models import DEFAULT_REGION, ModelSpec, Price, get_model
from airflow_provider_qwenocr.ocr.parsing import content_text, parse_answer
from airflow_provider_qwenocr.ocr.results import OcrResult, Usage


def iter_jsonl(content: bytes | str | None) -> Iterator[dict[str, Any]]:
    if not content:
        return
    text = content.decode("utf-8") if isinstance(content, bytes) else content
    for raw in text.splitlines():
        raw = raw.strip()
        if raw:
            yield json.loads(raw)


def line_error(line: dict[str, Any]) -> QwenOcrError | None:
    """The typed error of a failed output/error-file line (through the same classifier as realtime), else None.

    The error-file line shape is not documented; both observed spellings are read: the line's own
    ``error: {code, message}`` (``response`` null) and ``response: {status_code, body: {error: …}}``.
    The request id is ``response.request_id``, else the line's ``id`` (the same uuid in every capture).
    """
    response = line.get("response") or {}
    body = response.get("body") or {}
    err = line.get("error") or (body.get("error") if isinstance(body, dict) else None)
    status = response.get("status_code")
    status = int(status) if status is not None else None
    if err:
        typed = classify_body(status, {"error": err} if isinstance(err, dict) else {"error": str(err)}, answered=True)
        typed.request_id = typed.request_id or redact(response.get("request_id") or line.get("id")) or None
        return typed
    if status is not None and status != 200:
        typed = classify_body(status, body, answered=True)
        if typed.message == "(no message)":
            typed.message = redact(json.dumps(body, ensure_ascii=False))[:500]
        typed.request_id = typed.request_id or redact(response.get("request_id") or line.get("id")) or None
        return typed
    if not response:
        return PermanentError("no response in the batch output line", code="BatchRequestError")
    return None


def _line_error(line: dict[str, Any]) -> tuple[str, str] | None:
    """(code, message) when an output/error-file line is a failure, else None."""
    typed = line_error(line)
    return None if typed is None else (typed.code, typed.message)


def _list_price(spec: ModelSpec) -> Price:
    return spec.price(DEFAULT_REGION)


def result_from_line(entry: ManifestEntry, line: dict[str, Any] | None, *,
                     price_of: Callable[[ModelSpec], Price] = _list_price,
                     missing_reason: str = "no output for this request") -> OcrResult:
    """The row for one manifest entry, from its output/error-file line (or its absence).

    ``price_of`` gives a model's realtime price (the connection's ``ClientConfig.price_of``); the row costs
    half of it, as the Batch API bills."""
    common = dict(sha256=entry.sha256, key=entry.custom_id, width=entry.width, height=entry.height, page=entry.page)
    if entry.cached is not None:
        return OcrResult.from_row({**entry.cached, "source": entry.source, "page": entry.page})
    if entry.error is not None:
        return OcrResult.failure(entry.source, entry.task, entry.model, entry.error["code"], entry.error["message"],
                                 **common)
    if line is None:
        return OcrResult.failure(entry.source, entry.task, entry.model, "NotProcessed", missing_reason, **common)
    response = line.get("response") or {}
    request_id = response.get("request_id") or line.get("id")
    failure = _line_error(line)
    if failure is not None:  # code and message are scrubbed by the error; the line's id is not
        return OcrResult.failure(entry.source, entry.task, entry.model, failure[0], failure[1],
                                 request_id=redact(request_id) if request_id else None, **common)
    body = response.get("body") or {}
    choice = (body.get("choices") or [{}])[0]
    text, ocr_result = content_text((choice.get("message") or {}).get("content"))
    spec = get_model(entry.model)
    size = (entry.width, entry.height) if spec.normalized_text_boxes and entry.width and entry.height else None
    parsed = parse_answer(entry.task, text, ocr_result, scale_x=entry.scale_x, scale_y=entry.scale_y,
                          text_box_size=size)
    usage = Usage.from_api(body.get("usage"))
    price = price_of(spec)
    return OcrResult(
        source=entry.source, task=entry.task, model=body.get("model") or entry.model, status="ok",
        text=parsed.text, kv=parsed.kv, words=parsed.words, html=parsed.html, latex=parsed.latex,
        usage=usage, cost=price.cost(usage.input_tokens, usage.output_tokens, batch=True),
        request_id=request_id, finish_reason=choice.get("finish_reason"), **common,
    )


def results_for(manifest: Iterable[ManifestEntry], lines: dict[str, dict[str, Any]], *,
                price_of: Callable[[ModelSpec], Price] = _list_price,
                missing_reason: str = "no output for this request") -> Iterator[OcrResult]:
    """Every row of a batch run: one per source (duplicates included), in manifest order.

    A duplicate source (same key) gets the entry's row under its own name and page, with the usage and
    cost of the one request — as a cache hit carries the call that made it — so a load that keeps one row
    per key records the bill once whichever row comes last; the landing counts it as not billed.
    """
    for entry in manifest:
        result = result_from_line(entry, lines.get(entry.custom_id), price_of=price_of, missing_reason=missing_reason)
        yield result
        pages = entry.duplicate_pages if len(entry.duplicate_pages) == len(entry.duplicates) else None
        for i, other in enumerate(entry.duplicates):
            yield OcrResult.from_row({**result.to_row(), "source": other,
                                      "page": pages[i] if pages is not None else result.page})


def index_lines(*contents: bytes | str | None) -> dict[str, dict[str, Any]]:
    """custom_id → line over output and error files; a success line wins over an error line for one id."""
    out: dict[str, dict[str, Any]] = {}
    for content in contents:
        for line in iter_jsonl(content):
            cid = str(line.get("custom_id"))
            if cid in out and _line_error(line) is not None:
                continue
            out[cid] = line
    return out
