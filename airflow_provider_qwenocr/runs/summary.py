"""The one XCom summary every OCR task returns: realtime, batch (waiting or not) and the batch sensor.

Why one class: the realtime runner and the batch landing each had a summary (``RunSummary``, ``_Summary``)
that disagreed on the shape of ``failed`` and the no-wait operator and the sensor returned shapes of
their own, so a downstream task had to know which producer ran. :class:`OcrSummary` is the contract:

``results_uri``
    where the rows are (or, for ``state="submitted"``, will be) — one JSON line per image; None only for a
    sensor without ``output_uri`` (nothing landed).
``n_images``, ``n_ok``, ``n_failed``, ``n_cached``
    images in the run; ok rows (cache hits included); error rows; rows served from the result cache
    (not billed again). Submitted: ``n_ok`` counts the cache hits, ``n_failed`` the images rejected
    before submission. A sensor without ``output_uri``: the batches' request counts.
``usage``
    tokens this run was billed for (cached and duplicate rows add nothing).
``cost``
    ``{"usd", "cny", "unknown_rows"}``: a currency is None as soon as one billed row's price is unknown
    (``unknown_rows`` says how many rows; never a wrong 0). Submitted, or landed by nobody yet: None, with
    ``unknown_rows`` = the requests whose bill is not known yet.
``failed``
    the first :data:`MAX_FAILED_IN_SUMMARY` failures, each ``{"source", "code", "error"}`` (the message);
    the rest are error rows in the results file.
``batch_ids``, ``manifest_uri``
    the batches and manifest (``[]`` / None for realtime).
``state``
    ``"done"`` (rows landed), ``"submitted"`` (``wait_for_completion=False``: batches created, nothing
    landed yet) or ``"ended"`` (a sensor without ``output_uri``: batches terminal, no rows written).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_qwenocr.ocr.results import OcrResult, Usage, add_cost, new_cost_total

MAX_FAILED_IN_SUMMARY = 20  # failures named in XCom
MAX_FAILED_KEPT = 50  # failures kept for the task log (memory stays flat however many images fail)
SUMMARY_KEYS = ("results_uri", "n_images", "n_ok", "n_failed", "n_cached", "usage", "cost", "failed",
                "batch_ids", "manifest_uri", "state")


@dataclass
class OcrSummary:
    """Counts, usage, cost and the first failures of one task's images; :meth:`to_xcom` is the contract."""

    n_images: int = 0
    usage: Usage = field(default_factory=Usage)  # billed this run (cached rows add nothing)
    cost: dict[str, Any] = field(default_factory=new_cost_total)  # usd/cny None = unknown (see add_cost)
    failed: list[dict[str, str]] = field(default_factory=list)  # first failures: {source, code, error}
    n_ok: int = 0
    n_failed: int = 0
    n_cached: int = 0

    def add(self, result: OcrResult, *, cached: bool = False) -> None:
        """Count one row; a cached row was paid for by an earlier run, so it adds no usage or cost."""
        self.n_images += 1
        if result.ok:
            self.n_ok += 1
        else:
            err = result.error
            self.add_failure(result.source, err.code if err else "Unknown", err.message if err else "")
        if cached:
            self.n_cached += 1
            return
        self.usage = self.usage + result.usage
        add_cost(self.cost, result.cost)

    def add_failure(self, source: str, code: str, message: str) -> None:
        self.n_failed += 1
        if len(self.failed) < MAX_FAILED_KEPT:
            self.failed.append({"source": source, "code": code, "error": message})

    def cost_pending(self, rows: int) -> None:
        """``rows`` will be billed at a price not known yet (submitted, not landed): the totals are unknown."""
        self.cost = {"usd": None, "cny": None, "unknown_rows": int(self.cost.get("unknown_rows") or 0) + rows}

    @property
    def failed_ratio(self) -> float:
        return self.n_failed / self.n_images if self.n_images else 0.0

    def to_xcom(self, results_uri: str | None, *, batch_ids: list[str] | None = None,
                manifest_uri: str | None = None, state: str = "done") -> dict[str, Any]:
        """The summary dict (JSON-safe), exactly :data:`SUMMARY_KEYS`."""
        out: dict[str, Any] = {
            "results_uri": results_uri, "n_images": self.n_images, "n_ok": self.n_ok, "n_failed": self.n_failed,
            "n_cached": self.n_cached, "usage": self.usage.to_dict(), "cost": dict(self.cost),
            "failed": [dict(f) for f in self.failed[:MAX_FAILED_IN_SUMMARY]],
            "batch_ids": list(batch_ids or []), "manifest_uri": manifest_uri, "state": state,
        }
        return json.loads(json.dumps(out))


def cost_text(cost: dict[str, Any]) -> str:
    """The task log's cost words: ``cost USD 0.0012, CNY 0.0087``, and why a total is None only when one is.

    Why: the log line used to end in "(None = unknown price)" on every run, priced or not, so a reader looked
    for an unknown price that was not there. Now it says how many billed rows have no published price
    (``unknown_rows``), or that a currency has no list price, and says nothing when every figure is known.
    """
    usd, cny, unknown = cost.get("usd"), cost.get("cny"), int(cost.get("unknown_rows") or 0)
    text = f"cost USD {usd}, CNY {cny}"
    if unknown:
        return text + f" (unknown: {unknown} billed row(s) of a model with no published price)"
    if usd is None or cny is None:
        return text + " (None: no published price in that currency)"
    return text


# -- the one failure policy of every OCR task (max_failed_ratio) --------------------------------------
# The one failure policy of every OCR task, realtime or batch: ``max_failed_ratio`` (default 0).
#
# Why one rule: a folder with two bad images must fail the same way whether it went through the realtime
# operator, the batch operator or the batch sensor. A *failed image* is any image that has an error row:
# refused before it was sent (undecodable, too small …), refused by the service, retries exhausted, and
# for batches also a request whose batch expired, failed or was cancelled before it ran. The task fails
# when failed / all images exceeds ``max_failed_ratio``; its results (with the error rows) are still
# written first, because the successful rows were paid for.

DEFAULT_MAX_FAILED_RATIO = 0.0


def resolve_max_failed_ratio(max_failed_ratio: float | None) -> float:
    """The checked ratio (None = the default, 0); outside 0..1 is a ``ValueError``."""
    ratio = DEFAULT_MAX_FAILED_RATIO if max_failed_ratio is None else float(max_failed_ratio)
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"max_failed_ratio must be between 0 and 1, not {max_failed_ratio!r}")
    return ratio


def failed_ratio_exceeded(n_failed: int, n_images: int, max_failed_ratio: float) -> str | None:
    """The failure message when too many images failed, else None."""
    if not n_images or n_failed <= 0:
        return None
    ratio = n_failed / n_images
    if ratio <= max_failed_ratio:
        return None
    return (f"{n_failed} of {n_images} images failed ({ratio:.1%} > max_failed_ratio {max_failed_ratio:.1%})")
