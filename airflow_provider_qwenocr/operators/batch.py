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
    normalize_completion_window,
    window_hours,
)
from airflow_provider_qwenocr.exceptions import QwenOcrBatchError, QwenOcrConfigError, QwenOcrSubmitRefusedError
from airflow_provider_qwenocr.hooks.batch_policy import compact_batch, land_batches, validate_execute_complete_event
from airflow_provider_qwenocr.hooks.locations import (
    cache_location,
    check_location,
    is_template,
    manifest_location,
    output_location,
    task_ids,
)
from airflow_provider_qwenocr.lineage import publish_results_event
from airflow_provider_qwenocr.operators.base import QwenOcrBaseOperator
from airflow_provider_qwenocr.runs.reattach import STATE_KEY, TaskIdentity, credit, stored_ids
from airflow_provider_qwenocr.triggers.batch import BatchPoller, PollingError, QwenOcrBatchTrigger, wait_for_batches

DEFAULT_TIMEOUT = 24 * 3600 + 3600  # the default 24 h window plus an hour of slack
TIMEOUT_SLACK = 3600  # default timeout = the completion window plus this
#: Threads preparing images (decode, resize, encode) while the input file is built: CPU work, sized for the
#: worker rather than for the task.
PREPARE_WORKERS = 4
#: Per-file limits of the input files (``BatchLimits``); None = the service's published ones.
BATCH_LIMITS = None


class QwenOcrBatchOperator(QwenOcrBaseOperator):
    """Submit images as DashScope batch job(s) (one model per file, split at the service limits) and wait.

    The arguments both OCR operators share (``images``, ``task``, ``prompt``, ``result_schema``, ``model``,
    ``min_pixels``, ``max_pixels``, ``output_uri``, ``cache_uri``, ``use_cache``, ``conn_id``,
    ``aws_conn_id``, ``token_budget``, ``image_transport``, ``max_failed_ratio``, ``emit_asset``) are
    documented on :class:`~airflow_provider_qwenocr.operators.base.QwenOcrBaseOperator`; tasks go as their
    fixed prompt text. ``max_failed_ratio`` counts the images rejected before submission and the requests
    that failed, expired or were cancelled. Here:

    :param manifest_uri: where the manifest (custom_id → source, scale …) goes; default next to the output.
    :param metadata: your own ``metadata`` pairs for each batch (at most 10: the service takes 16, and the
        provider's re-attach keys — ``ds_name`` included — take the rest and win; refused before any upload).
    :param wait_for_completion: False → return right after submission (use the sensor to wait).
    :param deferrable: wait in the triggerer; default ``[operators] default_deferrable``.
    :param poll_interval: seconds between status polls (the docs suggest 1–2 minutes for real batches).
    :param completion_window: how long the service may take: "24h" (default) up to "336h", or int hours /
        ``timedelta`` (templated; checked before anything is uploaded).
    :param timeout: seconds to wait before cancelling the batches and failing; default the completion window
        plus an hour.
    :param delete_files: delete the batch's input/output/error files from the account after landing the rows.
    :param emit_asset: with ``wait_for_completion=True``, declare the outlet asset ``qwenocr://<dag_id>/<task_id>``
        (as ``QwenOcrOperator``); without waiting there are no rows yet — the sensor that lands them declares it.

    ``enable_rotate`` is refused (``QwenOcrConfigError``): the Batch API cannot rotate — use
    ``QwenOcrOperator`` for rotated scans. Images are prepared by :data:`PREPARE_WORKERS` threads; transient
    poll errors are tolerated :data:`~airflow_provider_qwenocr.triggers.batch.MAX_POLL_FAILURES` times in a row.

    :return: the XCom summary of :class:`~airflow_provider_qwenocr.runs.summary.OcrSummary` (``state`` "done",
        or "submitted" without waiting) — never the rows themselves. With ``image_transport="url"`` the
        presigned URLs are valid past the completion window (one input file holds up to 50,000 lines).
    """

    template_fields: Sequence[str] = (*QwenOcrBaseOperator.template_fields, "manifest_uri", "metadata",
                                      "completion_window")
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
        delete_files: bool = False,
        **kwargs: Any,
    ) -> None:
        if kwargs.pop("enable_rotate", False):
            raise QwenOcrConfigError("enable_rotate is not available through the Batch API (compatible mode "
                                     "cannot rotate); use QwenOcrOperator for rotated scans")
        kwargs["emit_asset"] = kwargs.get("emit_asset", True) and wait_for_completion
        super().__init__(**kwargs)
        self.manifest_uri = check_location("manifest_uri", manifest_uri)
        self.metadata = metadata
        self.wait_for_completion = wait_for_completion
        self.deferrable = default_deferrable() if deferrable is None else deferrable
        self.poll_interval = _seconds(poll_interval)
        self.completion_window = completion_window
        if not is_template(completion_window):
            normalize_completion_window(completion_window)  # a clear error at parse time, not at run time
        self._timeout_given = timeout is not None
        self.timeout = _seconds(timeout) if timeout is not None else _window_timeout(completion_window)
        self.delete_files = delete_files
        self.batch_ids: list[str] = []
        self.credited: list[str] = []

    # -- submit ---------------------------------------------------------------------------------------------
    def _runner(self) -> Any:
        return self.hook.batch_runner(aws_conn_id=self.aws_conn_id, cache_uri=self.cache_uri,
                                      prepare_workers=PREPARE_WORKERS)

    def execute(self, context: Context) -> Any:
        from airflow_provider_qwenocr.runs.sources import expand_sources

        self.completion_window = normalize_completion_window(self.completion_window)  # rendered; before upload
        if not self._timeout_given:
            self.timeout = _window_timeout(self.completion_window)
        ids = task_ids(self, context)
        self.output_uri = output_location(self.output_uri, **ids)
        self.manifest_uri = manifest_location(self.manifest_uri, self.output_uri)
        self.cache_uri = cache_location(self.cache_uri, use_cache=self.use_cache, dag_id=ids["dag_id"])
        request = self.ocr_request()  # before anything is prepared or uploaded
        sources = expand_sources(self.images, aws_conn_id=self.aws_conn_id, fetch=self.fetch,
                                 max_pixels=request.bounds[1], model=request.model,
                                 fetch_timeout=self.hook.config.timeout,
                                 exclude=[self.output_uri, self.manifest_uri, self.cache_uri])  # never our own outputs
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
                sources, request, manifest_uri=self.manifest_uri, metadata=self.metadata, limits=BATCH_LIMITS,
                on_batch_created=pushed, token_budget=self.token_budget, completion_window=self.completion_window,
                image_transport=self.image_transport, identity=identity, recorded=recorded,
                lookup=getattr(ti, "try_number", None) != 1,  # a first try cannot have created a batch
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
                                            poll_interval=self.poll_interval, cancel_on_exit=True,
                                            cancel_on_kill=True),
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
        """Poll in the worker (the trigger's poll step); any way out before every batch is terminal (timeout,
        polling error, kill) cancels them."""
        try:
            batches = wait_for_batches(BatchPoller(self.hook.get_batches, self.batch_ids), timeout=self.timeout,
                                       poll_interval=self.poll_interval, log=self.log)
        except PollingError as exc:
            self.hook.cancel_batches(self.batch_ids)
            raise QwenOcrBatchError(str(exc)) from exc.__cause__
        except TimeoutError as exc:
            self.hook.cancel_batches(self.batch_ids)
            raise QwenOcrBatchError(str(exc)) from None
        except BaseException:
            self.hook.cancel_batches(self.batch_ids)
            raise
        return self._land(batches)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None,
                         output_uri: str | None = None, manifest_uri: str | None = None,
                         cache_uri: str | None = None, credited: list[str] | None = None) -> Any:
        """Resume after the trigger: the instance is fresh, so ids and URIs come from the event and kwargs."""
        event = validate_execute_complete_event(event)
        self.batch_ids = event["batch_ids"]
        self.credited = list(credited or [])
        if not (output_uri and manifest_uri):  # dag.test() resumes with the event only: the defaults again
            ids = task_ids(self, context)
            output_uri = output_location(self.output_uri, **ids)
            manifest_uri = manifest_location(self.manifest_uri, output_uri)
            cache_uri = cache_location(self.cache_uri, use_cache=self.use_cache, dag_id=ids["dag_id"])
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
                            delete_files=self.delete_files, log=self.log, evaluate=evaluate)

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


def _window_timeout(window: Any) -> float:
    """The default wait: the completion window plus an hour (24 h + 1 h while the window is a template)."""
    return float(DEFAULT_TIMEOUT if is_template(window) else window_hours(window) * 3600 + TIMEOUT_SLACK)


def _seconds(value: float | timedelta) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


