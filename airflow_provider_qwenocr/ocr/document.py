"""A document's answers → ONE document row: ``page`` None, ``pages`` = N, the whole text, one KIE answer.

Why: users think in documents (a 2-page invoice, a 60-page contract) but a document reaches the service
in one or more requests — a PDF of ≤ 50 pages per request on ``qwen3.5-ocr``, a few page images per
request on the older models (their input-token limit holds ≈ 3 full pages), or one page per request.
Each request answers for its own pages; the document row is the one answer a user queries.

The rules (one place, pure):

- text, markdown, html, latex: the requests' answers joined in page order (a blank line between parts);
- key information: one request's answer is the document's answer as the service gave it (``qwen3.5-ocr``
  reads the whole PDF at once: a field on page 2 is filled). Several requests' answers are merged: per
  field, the **first non-null value in page order** (:func:`merge_kv`; "null" is the warehouse's NULL rule,
  ``flatten.is_null``), so a field read on page 1 is never overwritten by a later page;
- usage and cost: summed over the requests (page rows carry none when a request covered several pages,
  so summing page and document rows never counts a token twice); a currency one request could not
  price makes the document's cost in it unknown (None), never a partial sum;
- status: ``ok`` only when every request answered; otherwise the first failure (the document is redone
  on a re-run: only ``ok`` rows are cached);
- ``finish_reason``: ``length`` when any request was cut, else the first request's.

No Airflow import.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .flatten import is_null
from .plan import Identity
from .results import OcrResult, Usage, add_cost, new_cost_total


def merge_kv(answers: Sequence[Any]) -> Any:
    """One key-information answer from several (in page order): per field the first non-null value.

    Nested objects merge field by field; a list (a repeated item, e.g. invoice lines) takes the first
    non-empty list — lines are not concatenated across requests, since a line split by a page break
    would then appear twice. Non-dict answers: the first non-null one.
    """
    present = [a for a in answers if not is_null(a)]
    if not present:
        return answers[0] if answers else None
    if not all(isinstance(a, dict) for a in present):
        return present[0]
    merged: dict[str, Any] = {}
    for answer in present:
        for field, value in answer.items():
            if field not in merged:
                merged[field] = value
            elif isinstance(merged[field], dict) and isinstance(value, dict):
                merged[field] = merge_kv([merged[field], value])
            elif is_null(merged[field]) and not is_null(value):
                merged[field] = value
    return merged


def _join(values: Sequence[str | None]) -> str | None:
    parts = [v for v in values if v]
    return "\n\n".join(parts) if parts else None


def _cost(results: Sequence[OcrResult]) -> dict[str, float | None] | None:
    priced = [r.cost for r in results if r.cost is not None]
    if not priced:
        return None
    total = new_cost_total()
    for cost in priced:
        add_cost(total, cost)
    return {cur: total[cur] for cur in ("usd", "cny")}


def document_row(identity: Identity, answers: Sequence[OcrResult], pages: Sequence[OcrResult] = (),
                 *, page_count: int | None = None) -> OcrResult:
    """The document row of ``answers`` (one result per request, in page order) and its ``pages`` rows;
    ``identity`` is the document plan's (``ocr/plan.plan_document``): name, key, hash of the bytes.

    ``page_count`` defaults to ``len(pages)`` (or, without page rows, the number of answers). When the
    requests answered page by page (one page each), pass the page rows as ``answers`` too.
    """
    if not answers:
        raise ValueError("a document row needs at least one answer")
    first = answers[0]
    count = page_count if page_count is not None else (len(pages) or len(answers))
    failed = next((a for a in answers if not a.ok), None)
    base = {"source": identity.source, "key": identity.key, "sha256": identity.sha256, "task": first.task,
            "model": first.model, "page": None, "pages": count}
    usage = sum((a.usage for a in answers), Usage())
    cost = _cost(answers)
    if failed is not None:
        err = failed.error
        return OcrResult.failure(code=err.code if err else "Unknown", message=err.message if err else "",
                                 request_id=failed.request_id, usage=usage, cost=cost, **base)
    single = len(answers) == 1
    kv_answers = [a.kv for a in answers]
    markdown = _join([p.markdown for p in pages]) if any(p.markdown for p in pages) else \
        _join([a.markdown for a in answers])
    return OcrResult(
        **base, status="ok",
        text=_join([a.text for a in answers]),
        kv=first.kv if single else (merge_kv(kv_answers) if any(k is not None for k in kv_answers) else None),
        words=first.words if single else None,  # boxes are per image: a merged list would mix coordinate spaces
        html=_join([a.html for a in answers]), latex=_join([a.latex for a in answers]),
        markdown=markdown, usage=usage, cost=cost,
        request_id=",".join(dict.fromkeys(a.request_id for a in answers if a.request_id)) or None,
        width=first.width if single and count == 1 else None,
        height=first.height if single and count == 1 else None,
        finish_reason="length" if any(a.finish_reason == "length" for a in answers) else first.finish_reason,
    )


__all__ = ["document_row", "merge_kv"]
