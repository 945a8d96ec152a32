"""QwenOcrBatchOperator: OCR many images through the half-price Batch API and land the result rows.

Retries and re-runs never pay twice (issue 19): the submit is billable and the service has no idempotency
token, so every batch carries the task instance's identity and the request's fingerprint in its
``metadata`` (``runs.reattach``), and its id goes to Airflow's task state store (≥ 3.3, key
``qwenocr_batches``) and to XCom (key ``batch_ids``) the moment it is created. A retry, a clear, or a
re-run after a lost worker or triggerer looks those batches up before uploading anything: running ones
are waited for again (in the worker or deferred), completed ones are landed, and of failed, expired or
cancelled ones only the lines without a result are sent again. The log names every batch re-attached to,
created, or left (another request's batch still running: an orphan, cancelled only on request —
``QwenOcrHook.cancel_orphan_batches``). Why the store directly and not Airflow 3.3's ``ResumableJobMixin``:
the mixin tracks one job and resubmits it whole when it failed (paying again for the lines it answered),
and exists only on 3.3; a run here is several batches, decided per part and per line, on 2.10 as well.

Cost safety: the operator cancels its batches on timeout, on error (polling error, exception while
waiting) and on kill (``on_kill`` when running, the trigger's ``on_kill`` while deferred on Airflow 3.3+).
The deferral's own framework timeout is set *beyond* the trigger's absolute deadline, so the trigger's
clean ``timeout`` event — which cancels — arrives first.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from airflow_provider_qwenocr._compat import Context, default_deferrable
from airflow_provider_qwenocr.dashscope.batch import (
    COMPLETION_WINDOW,
    BatchStatus,
    normalize_completion_window,
    window_hours,
)
from airflow_provider_qwenocr.deprecation import warn_deprecated
from airflow_provider_qwenocr.exceptions import QwenOcrBatchError, QwenOcrConfigError, QwenOcrSubmitRefusedError
from airflow_provider_qwenocr.hooks import batch as batch_hook
from airflow_provider_qwenocr.hooks.batch import compact_batch
from airflow_provider_qwenocr.lineage import publish_results_event
from airflow_provider_qwenocr.operators.base import QwenOcrBaseOperator
from airflow_provider_qwenocr.operators.landing import land_batches
from airflow_provider_qwenocr.operators.locations import default_cache_uri
from airflow_provider_qwenocr.runs.reattach import STATE_KEY, TaskIdentity, credit, stored_ids
from airflow_provider_qwenocr.triggers.batch import QwenOcrBatchTrigger

DEFAULT_TIMEOUT = 24 * 3600 + 3600  # the default 24 h window plus an hour of slack
TIMEOUT_SLACK = 3600  # default timeout = the completion window plus this


class QwenOcrBatchOperator(QwenOcrBaseOperator):
    """Submit images as DashScope batch job(s) (one model per file, split at the service limits) and wait.

    The arguments both OCR operators share (``images``, ``task``, ``prompt``, ``result_schema``, ``model``,
    ``min_pixels``, ``max_pixels``, ``fetch``, ``cache_uri``, ``use_cache``, ``conn_id``, ``aws_conn_id``,
    ``token_budget``, ``image_transport``) are documented on
    :class:`~airflow_provider_qwenocr.operators.base.QwenOcrBaseOperator`; tasks go as their fixed prompt
    text. Here:

    :param output_uri: where the JSONL result rows land (local path or object-storage URI). Default:
        ``$AIRFLOW_HOME/qwenocr/batch/<dag>/<task>/<run>/results.jsonl``.
    :param manifest_uri: where the manifest (custom_id → source, scale …) goes; default next to the output.
    :param wait_for_completion: False → return right after submission (use the sensor to wait).
    :param deferrable: wait in the triggerer; default ``[operators] default_deferrable``.
    :param poll_interval: seconds between status polls (the docs suggest 1–2 minutes for real batches).
    :param completion_window: how long the service may take: "24h" (default) up to "336h", or int hours /
        ``timedelta`` (templated; checked before anything is uploaded).
    :param timeout: seconds to wait before cancelling the batches and failing; default the completion window
        plus an hour.
    :param max_failed_ratio: the task fails when failed images / all images exceeds this (default 0: any
        failed image fails the task, as in ``QwenOcrOperator``). Failed images are those rejected before
        submission and the requests that failed, expired or were cancelled. The rows land first either way.
    :param fail_on_partial_error: deprecated; True = ``max_failed_ratio=0``, False = ``max_failed_ratio=1``.
    :param prepare_workers: threads preparing images (decode, resize, encode) while the input file is built.
        (``max_concurrency``, its old name, is deprecated: in ``QwenOcrOperator`` that name means calls in
        flight, and the Batch API has no calls in flight to bound.)
    :param enable_rotate: must stay False: the Batch API cannot rotate, so True is refused
        (``QwenOcrConfigError``) rather than silently ignored — use ``QwenOcrOperator`` for rotated scans.
    :param delete_files: delete the batch's input/output/error files from the account after landing the rows.
    :param batch_limits: ``BatchLimits`` (lines / file bytes / line bytes per input file); the service's by default.
    :param emit_asset: with ``wait_for_completion=True``, declare the outlet asset ``qwenocr://<dag_id>/<task_id>``
        (as ``QwenOcrOperator``); without waiting there are no rows yet — the sensor that lands them declares it.
    :return: the XCom summary of :class:`~airflow_provider_qwenocr.runs.summary.OcrSummary` (``state`` "done",
        or "submitted" without waiting) — never the rows themselves. With ``image_transport="url"`` the
        presigned URLs are valid past the completion window (one input file holds up to 50,000 lines).
    """

    template_fields: Sequence[str] = (
        "images", "task", "prompt", "result_schema", "model", "output_uri", "manifest_uri", "cache_uri", "conn_id",
        "min_pixels", "max_pixels", "metadata", "completion_window",
    )
    ui_color = "#ffd9b3"

    def __init__(
        self,
        *,
        manifest_uri: str | None = None,
        metadata: dict[str, str] | None = None,
        wait_for_completion: bool = True,
        deferrable: bool | None = None,
        poll_interval: float | timedelta = 60.0,
        timeout: float | timedelta | None = None,
        completion_window: str | int | timedelta = COMPLETION_WINDOW,
        max_failed_ratio: float | None = None,
        fail_on_partial_error: bool | None = None,
        max_poll_failures: int = 5,
        batch_limits: Any = None,
        prepare_workers: int = 4,
        delete_files: bool = False,
        emit_asset: bool = True,
        max_concurrency: int | None = None,
        **kwargs: Any,
    ) -> None:
        if kwargs.get("enable_rotate"):
            raise QwenOcrConfigError("enable_rotate=True is not available through the Batch API (compatible mode "
                                     "cannot rotate); use QwenOcrOperator for rotated scans")
        super().__init__(emit_asset=emit_asset and wait_for_completion, **kwargs)
        if max_concurrency is not None:
            warn_deprecated("QwenOcrBatchOperator(max_concurrency=...) is deprecated: use prepare_workers (threads "
                          "preparing images); max_concurrency means calls in flight in QwenOcrOperator", stacklevel=2)
            prepare_workers = max_concurrency
        if int(prepare_workers) < 1:
            raise QwenOcrConfigError(f"prepare_workers must be at least 1, not {prepare_workers!r}")
        self.manifest_uri = manifest_uri
        self.metadata = metadata
        self.wait_for_completion = wait_for_completion
        self.deferrable = default_deferrable() if deferrable is None else deferrable
        self.poll_interval = _seconds(poll_interval)
        self.completion_window = completion_window
        if not _is_template(completion_window):
            normalize_completion_window(completion_window)  # a clear error at parse time, not at run time
        self._timeout_given = timeout is not None
        self.timeout = _seconds(timeout) if timeout is not None else _window_timeout(completion_window)
        self.max_failed_ratio = batch_hook.resolve_max_failed_ratio(max_failed_ratio, fail_on_partial_error,
                                                                            owner="QwenOcrBatchOperator")
        self.max_poll_failures = max_poll_failures
        self.batch_limits = batch_limits
        self.prepare_workers = int(prepare_workers)
        self.delete_files = delete_files
        self.batch_ids: list[str] = []
        self.credited: list[str] = []

    # -- submit ---------------------------------------------------------------------------------------------
    def _resolve_uris(self, context: Context) -> tuple[str, str]:
        output = self.output_uri
        if not output:
            from airflow_provider_qwenocr.runs.results_store import default_base_dir

            ti = context.get("ti") or context.get("task_instance")
            run_id = str(getattr(ti, "run_id", None) or context.get("run_id") or int(time.time()))
            safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in run_id)
            map_index = getattr(ti, "map_index", -1)
            name = "results.jsonl" if map_index is None or map_index < 0 else f"results-{map_index}.jsonl"
            output = str(default_base_dir() / "batch" / self.dag_id / self.task_id / safe / name)
        manifest = self.manifest_uri or batch_hook.default_manifest_uri(output)
        return output, manifest

    def _runner(self) -> Any:
        return self.hook.batch_runner(aws_conn_id=self.aws_conn_id, cache_uri=self.cache_uri,
                                      prepare_workers=self.prepare_workers)

    def execute(self, context: Context) -> Any:
        from airflow_provider_qwenocr.runs.sources import expand_sources

        self.completion_window = normalize_completion_window(self.completion_window)  # rendered; before upload
        if not self._timeout_given:
            self.timeout = _window_timeout(self.completion_window)
        self.output_uri, self.manifest_uri = self._resolve_uris(context)
        if self.use_cache and not self.cache_uri:
            self.cache_uri = default_cache_uri(self.dag_id or "adhoc")
        elif not self.use_cache:
            self.cache_uri = None
        request = self.ocr_request()  # before anything is prepared or uploaded
        sources = expand_sources(self.images, aws_conn_id=self.aws_conn_id, fetch=self.fetch,
                                 max_pixels=request.bounds[1])
        ti = context.get("ti") or context.get("task_instance")
        identity = TaskIdentity.from_context(context)
        store = context.get("task_state_store")  # Airflow >= 3.3; kept across the task instance's tries
        recorded = stored_ids(self._store_get(store))

        def pushed(ids: list[str]) -> None:
            self.batch_ids = ids
            self._store_set(store, ids)  # before anything waits: a kill from here on re-attaches
            if ti is not None:
                ti.xcom_push(key="batch_ids", value=ids)

        from airflow_provider_qwenocr.runs.batch import SubmitRefused

        try:
            submitted = self._runner().submit(
                sources, request, manifest_uri=self.manifest_uri, metadata=self.metadata, limits=self.batch_limits,
                on_batch_created=pushed, token_budget=self.token_budget, completion_window=self.completion_window,
                image_transport=self.image_transport, identity=identity, recorded=recorded,
            )
        except SubmitRefused as exc:
            raise QwenOcrSubmitRefusedError(str(exc)) from None
        self.batch_ids = submitted.batch_ids
        self.credited = submitted.credited
        self._log_batches(submitted, recorded)
        if ti is not None:
            ti.xcom_push(key="batch_ids", value=self.batch_ids)  # also when empty (everything cached/rejected)
            ti.xcom_push(key="manifest_uri", value=self.manifest_uri)
            ti.xcom_push(key="output_uri", value=self.output_uri)
        self.log.info("submitted %d image(s) as %d request(s) in batch(es) %s; %d cached, %d rejected before "
                      "submission", submitted.n_images, submitted.n_requests, self.batch_ids,
                      submitted.n_cached, submitted.n_rejected)
        if not self.batch_ids:  # nothing sendable: land the error rows and stop
            return self._published(context, self._land([], evaluate=False))
        if not self.wait_for_completion:
            return submitted.summary(self.output_uri)
        if self.deferrable:
            end_time = time.time() + self.timeout
            self.defer(
                trigger=QwenOcrBatchTrigger(batch_ids=self.batch_ids, conn_id=self.conn_id, end_time=end_time,
                                            poll_interval=self.poll_interval,
                                            max_poll_failures=self.max_poll_failures, cancel_on_exit=True),
                method_name="execute_complete",
                kwargs={"output_uri": self.output_uri, "manifest_uri": self.manifest_uri,
                        "cache_uri": self.cache_uri, "credited": self.credited},
                timeout=timedelta(seconds=self.timeout + self.poll_interval + 60),
            )
        return self._published(context, self._wait_blocking())

    def _published(self, context: Context, summary: dict[str, Any]) -> dict[str, Any]:
        publish_results_event(self, context, summary)
        return summary

    # -- wait -----------------------------------------------------------------------------------------------
    def _wait_blocking(self) -> Any:
        """Poll in the worker; any way out before every batch is terminal (timeout, error, kill) cancels them."""
        from airflow_provider_qwenocr.dashscope.batch import is_transient_error

        deadline = time.monotonic() + self.timeout
        failures = 0
        batches: list[dict] = []
        try:
            while True:
                try:
                    batches = [compact_batch(b) for b in self.hook.get_batches(self.batch_ids)]
                    failures = 0
                except Exception as exc:
                    failures += 1
                    if not is_transient_error(exc) or failures >= self.max_poll_failures:
                        raise QwenOcrBatchError(f"polling batches {self.batch_ids} failed: {exc}") from exc
                    self.log.warning("transient poll error (%d/%d): %s", failures, self.max_poll_failures, exc)
                else:
                    if all(BatchStatus.of(b).is_terminal for b in batches):
                        break
                if time.monotonic() >= deadline:
                    raise QwenOcrBatchError(f"batches {self.batch_ids} not finished after {self.timeout:.0f} s")
                time.sleep(max(0.0, min(self.poll_interval, deadline - time.monotonic())))
        except BaseException:
            self.hook.cancel_batches(self.batch_ids)
            raise
        return self._land(batches)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None,
                         output_uri: str | None = None, manifest_uri: str | None = None,
                         cache_uri: str | None = None, credited: list[str] | None = None) -> Any:
        """Resume after the trigger: the instance is fresh, so ids and URIs come from the event and kwargs."""
        event = batch_hook.validate_execute_complete_event(event)
        self.batch_ids = event["batch_ids"]
        self.credited = list(credited or [])
        if not (output_uri and manifest_uri):  # dag.test() resumes with the event only: the defaults again
            output_uri, manifest_uri = self._resolve_uris(context)
        self.output_uri, self.manifest_uri = output_uri, manifest_uri
        self.cache_uri = cache_uri or self.cache_uri
        if event["reason"] in ("timeout", "polling_error"):
            cancelled = self.hook.cancel_batches(self.batch_ids)  # the trigger tried too; cancel is idempotent
            raise QwenOcrBatchError(f"batch wait ended with {event['reason']}: {event.get('message')} "
                                   f"(cancelled now: {cancelled}; already: {event.get('cancelled')})")
        return self._published(context, self._land(event.get("batches") or None))

    def _land(self, batches: list[dict] | None, *, evaluate: bool = True) -> dict[str, Any]:
        batches = batches if batches is not None else [compact_batch(b) for b in self.hook.get_batches(self.batch_ids)]
        self.results_uri = self.output_uri  # for lineage
        batches = credit(batches, self.credited)  # a re-attached batch's unanswered lines were sent again
        return land_batches(self._runner(), self.batch_ids, batches, output_uri=self.output_uri,
                            manifest_uri=self.manifest_uri, max_failed_ratio=self.max_failed_ratio,
                            delete_files=self.delete_files, log=self.log, evaluate=evaluate,
                            legacy_keys=("verdict",))

    def _store_get(self, store: Any) -> Any:
        if store is None:
            return None
        try:
            return store.get(STATE_KEY)
        except Exception as exc:  # the metadata lookup still finds the batches
            self.log.warning("could not read the task state store (%s); looking batches up by metadata", exc)
            return None

    def _store_set(self, store: Any, ids: list[str]) -> None:
        if store is None:
            return
        try:
            store.set(STATE_KEY, list(ids))
        except Exception as exc:  # the batch metadata still identifies them
            self.log.warning("could not record batch ids %s in the task state store: %s", ids, exc)

    def _log_batches(self, submitted: Any, recorded: list[str]) -> None:
        """One line naming every batch this try waits for: re-attached (and where it was found) or created."""
        attached = [b for b in submitted.batch_ids if b not in submitted.created]
        for bid in attached:
            where = "recorded in the task state store" if bid in recorded else "found by its metadata"
            self.log.info("re-attached to %s (%s)%s", bid, where,
                          "; only its answered lines are its own" if bid in submitted.credited else "")
        if attached or submitted.created:
            self.log.info("waiting for batch(es) %s: re-attached to %s, created %s", submitted.batch_ids, attached,
                          submitted.created)

    def on_kill(self) -> None:
        if self.batch_ids:
            self.hook.cancel_batches(self.batch_ids)


def _is_template(value: Any) -> bool:
    return isinstance(value, str) and "{{" in value


def _window_timeout(window: Any) -> float:
    """The default wait: the completion window plus an hour (24 h + 1 h while the window is a template)."""
    return float(DEFAULT_TIMEOUT if _is_template(window) else window_hours(window) * 3600 + TIMEOUT_SLACK)


def _seconds(value: float | timedelta) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


