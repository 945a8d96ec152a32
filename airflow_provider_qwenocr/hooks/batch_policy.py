"""The batch policy shared by the batch operator, sensor and trigger (re-exported by ``hooks.batch``).

Why it lives beside the hook: the operator (waiting on batches it submitted) and the sensor (waiting on
ids from elsewhere) must decide *identically* when a batch counts as done, partial, skipped or failed,
must accept the same trigger events and must land rows the same way (:func:`land_batches`; two copies of
these steps had already drifted in their messages and in what they returned). Keeping the rules in the
hook package lets both import them without importing each other (the pattern of the anthropic
provider's batch trio).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_qwenocr.dashscope.batch import BatchStatus, compact_batch  # noqa: F401 - re-exported
from airflow_provider_qwenocr.exceptions import QwenOcrBatchError, QwenOcrFailedImagesError
from airflow_provider_qwenocr.runs.summary import (  # noqa: F401 - the one failure policy, importable from here
    DEFAULT_MAX_FAILED_RATIO,
    OcrSummary,
    failed_ratio_exceeded,
    resolve_max_failed_ratio,
)

#: Machine-readable reasons a batch trigger ends with; ``status`` is success | error | timeout.
EVENT_REASONS = frozenset({"success", "failed", "expired", "cancelled", "timeout", "polling_error"})
EVENT_STATUSES = frozenset({"success", "error", "timeout"})


@dataclass
class BatchVerdict:
    """What to do once every batch is terminal: ``success`` | ``partial`` | ``skip`` | ``fail``."""

    action: str
    message: str
    counts: dict[str, int] = field(default_factory=dict)
    statuses: dict[str, str] = field(default_factory=dict)

    @property
    def should_land(self) -> bool:
        """Results are worth downloading whenever something completed (it was billed), even on failure."""
        return self.counts.get("completed", 0) > 0 or self.action in ("success", "partial")


def evaluate_batch_counts(batches: Iterable[dict[str, Any]], *, max_failed_ratio: float | None = None) -> BatchVerdict:
    """The partial-failure policy over terminal batches (the requests they hold).

    - every batch ``completed`` and no failed request → ``success``;
    - every batch ``cancelled`` and nothing completed → ``skip`` (someone cancelled the work on purpose);
    - a batch ``failed`` (validation or service failure: its requests never ran) → ``fail``;
    - nothing completed at all (e.g. ``expired`` before any request ran) → ``fail``;
    - otherwise some requests failed, expired or were cancelled (total − completed) → ``partial`` when
      their share is within ``max_failed_ratio`` (default 0, as the realtime operator), else ``fail``.

    Callers that landed rows apply :func:`failed_ratio_exceeded` to the rows as well: that also counts
    images rejected before submission, which no batch knows about.
    """
    ratio = resolve_max_failed_ratio(max_failed_ratio)
    batches = list(batches)
    statuses = {b.get("id", "?"): str(b.get("status")) for b in batches}
    counts = {"total": 0, "completed": 0, "failed": 0}
    for b in batches:
        rc = b.get("request_counts") or {}
        for k in counts:
            counts[k] += int(rc.get(k) or 0)
    kinds = {BatchStatus.of(b) for b in batches}
    desc = ", ".join(f"{i}={s}" for i, s in statuses.items())
    summary = f"{counts['completed']}/{counts['total']} requests completed, {counts['failed']} failed ({desc})"
    if not batches:
        return BatchVerdict("fail", "no batches to evaluate", counts, statuses)
    if any(not k.is_terminal for k in kinds):
        raise ValueError(f"evaluate_batch_counts needs terminal batches: {desc}")
    if kinds == {BatchStatus.COMPLETED} and counts["failed"] == 0:
        return BatchVerdict("success", summary, counts, statuses)
    if kinds == {BatchStatus.CANCELLED} and counts["completed"] == 0:
        return BatchVerdict("skip", f"every batch was cancelled before any request completed: {summary}",
                            counts, statuses)
    if BatchStatus.FAILED in kinds:
        errors = [e for b in batches for e in ((b.get("errors") or {}).get("data") or [])]
        detail = "; ".join(f"{e.get('code')}: {e.get('message')} (line {e.get('line')})" for e in errors[:5])
        return BatchVerdict("fail", f"batch failed: {summary}" + (f" — {detail}" if detail else ""), counts, statuses)
    if counts["completed"] == 0:
        return BatchVerdict("fail", f"no request completed: {summary}", counts, statuses)
    too_many = failed_ratio_exceeded(counts["total"] - counts["completed"], counts["total"], ratio)
    if too_many:
        return BatchVerdict("fail", f"partial failure: {too_many}; {summary}", counts, statuses)
    return BatchVerdict("partial", f"partial failure: {summary}", counts, statuses)


def validate_execute_complete_event(event: Any) -> dict[str, Any]:
    """Reject anything but a well-formed terminal event of :class:`QwenOcrBatchTrigger`.

    The resumed task is a fresh instance: everything it needs (batch ids, final batch objects) must come
    from the event, so a malformed event is an error, never a silent success.
    """
    from airflow_provider_qwenocr.exceptions import QwenOcrBatchError

    if not isinstance(event, dict):
        raise QwenOcrBatchError(f"unexpected trigger event (not a dict): {event!r}")
    status, reason = event.get("status"), event.get("reason")
    if status not in EVENT_STATUSES or reason not in EVENT_REASONS:
        raise QwenOcrBatchError(f"unexpected trigger event status/reason {status!r}/{reason!r}: {event!r}")
    ids = event.get("batch_ids")
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
        raise QwenOcrBatchError(f"trigger event carries no batch ids: {event!r}")
    if status == "success" and reason != "success":
        raise QwenOcrBatchError(f"inconsistent trigger event: {event!r}")
    return event


def skip_exception(message: str) -> Exception:
    """``AirflowSkipException`` from the module ``_compat`` took ``AirflowException`` from (sdk on 3.x)."""
    import importlib

    from airflow_provider_qwenocr._compat import AirflowException

    module = importlib.import_module(AirflowException.__module__)
    return module.AirflowSkipException(message)


def land_batches(runner: Any, batch_ids: list[str], batches: list[dict], *, output_uri: str | None,
                 manifest_uri: str | None, max_failed_ratio: float, delete_files: bool = False,
                 log: logging.Logger | Any, evaluate: bool = True) -> dict[str, Any]:
    """The XCom summary of terminal ``batches``, after the policy and the landing (operator and sensor alike).

    - every batch cancelled before anything completed → skip (``AirflowSkipException``);
    - with ``output_uri``, one row per image lands first, also when the task then fails (a batch that failed
      validation gives every image an error row naming why); without, the summary holds the batches'
      request counts (``state="ended"``, ``results_uri`` None);
    - a failed batch or too many failed requests → :class:`QwenOcrBatchError`; more failed *images* (incl.
      those rejected before submission) than ``max_failed_ratio`` → :class:`QwenOcrFailedImagesError`.

    ``evaluate=False``: nothing was submitted (every image cached or rejected): land the manifest's rows only.
    """
    verdict = evaluate_batch_counts(batches, max_failed_ratio=max_failed_ratio) if evaluate else None
    if verdict is not None and verdict.action == "skip":
        raise skip_exception(verdict.message)
    landed = None
    if output_uri:
        landed = runner.land(batch_ids, output_uri=output_uri, manifest_uri=manifest_uri, batches=batches,
                             delete_files=delete_files)
        summary = landed.to_xcom(output_uri, batch_ids=batch_ids, manifest_uri=manifest_uri)
    else:
        counts = verdict.counts if verdict else {}
        ended = OcrSummary(n_images=counts.get("total", 0), n_ok=counts.get("completed", 0),
                           n_failed=counts.get("total", 0) - counts.get("completed", 0))
        ended.cost_pending(ended.n_ok)  # billed, at a price this task did not compute
        summary = ended.to_xcom(None, batch_ids=batch_ids, manifest_uri=manifest_uri, state="ended")
    where = f"; rows (incl. error rows) landed at {output_uri}" if landed else ""
    if verdict is not None and verdict.action == "fail":
        raise QwenOcrBatchError(verdict.message + where)
    too_many = failed_ratio_exceeded(landed.n_failed, landed.n_images, max_failed_ratio) if landed else None
    if too_many:
        raise QwenOcrFailedImagesError(too_many + where)
    if verdict is not None and verdict.action == "partial":
        log.warning("%s%s", verdict.message, where)
    if landed:
        log.info("landed %d row(s) (%d ok, %d failed) at %s; usage %s; cost %s", landed.n_images, landed.n_ok,
                 landed.n_failed, output_uri, summary["usage"], summary["cost"])
    return summary
