"""Judging terminal batches and landing their rows: the one path of the batch operator and the sensor.

Why one function: the operator (waiting on batches it submitted) and the sensor (waiting on ids from
elsewhere) must skip, land, fail and warn identically, and return the same summary; two copies of these
steps had already drifted in their messages and in what they returned.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow_provider_qwenocr.exceptions import QwenOcrBatchError, QwenOcrFailedImagesError
from airflow_provider_qwenocr.hooks.batch import evaluate_batch_counts, failed_ratio_exceeded, skip_exception
from airflow_provider_qwenocr.runs.summary import OcrSummary


def land_batches(runner: Any, batch_ids: list[str], batches: list[dict], *, output_uri: str | None,
                 manifest_uri: str | None, max_failed_ratio: float, delete_files: bool = False,
                 log: logging.Logger | Any, evaluate: bool = True,
                 legacy_keys: tuple[str, ...] = ("verdict", "counts", "statuses")) -> dict[str, Any]:
    """The XCom summary of terminal ``batches``, after the policy (``hooks.batch_policy``) and the landing.

    - every batch cancelled before anything completed → skip (``AirflowSkipException``);
    - with ``output_uri``, one row per image lands first, also when the task then fails (a batch that failed
      validation gives every image an error row naming why: the operator's rule, now the sensor's too);
      without, the summary holds the batches' request counts (``state="ended"``, ``results_uri`` None);
    - a failed batch or too many failed requests → :class:`QwenOcrBatchError`; more failed *images* (incl.
      those rejected before submission) than ``max_failed_ratio`` → :class:`QwenOcrFailedImagesError`.

    ``evaluate=False``: nothing was submitted (every image cached or rejected): land the manifest's rows only.
    ``legacy_keys``: which of the deprecated verdict keys this producer returned before (kept one release).
    """
    verdict = evaluate_batch_counts(batches, max_failed_ratio=max_failed_ratio) if evaluate else None
    if verdict is not None and verdict.action == "skip":
        raise skip_exception(verdict.message)
    old = {"verdict": verdict.action, "counts": verdict.counts, "statuses": verdict.statuses} if verdict else {}
    old = {k: v for k, v in old.items() if k in legacy_keys} or None
    landed = None
    if output_uri:
        landed = runner.land(batch_ids, output_uri=output_uri, manifest_uri=manifest_uri, batches=batches,
                             delete_files=delete_files)
        summary = landed.to_xcom(output_uri, batch_ids=batch_ids, manifest_uri=manifest_uri, deprecated=old)
    else:
        counts = verdict.counts if verdict else {}
        ended = OcrSummary(n_images=counts.get("total", 0), n_ok=counts.get("completed", 0),
                           n_failed=counts.get("total", 0) - counts.get("completed", 0))
        ended.cost_pending(ended.n_ok)  # billed, at a price this task did not compute
        summary = ended.to_xcom(None, batch_ids=batch_ids, manifest_uri=manifest_uri, state="ended", deprecated=old)
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
