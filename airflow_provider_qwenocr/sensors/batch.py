"""QwenOcrBatchSensor: wait for existing DashScope batches, apply the partial-failure policy, land results.

Why a sensor next to the operator: it only *reads* batch state, never submits, so it is idempotent across
task retries — a retried sensor re-attaches to the same batch ids and bills nothing. Pair it with
``QwenOcrBatchOperator(wait_for_completion=False)`` (ids from XCom key ``batch_ids``) to get retries on the
long wait without risking a second, billable submission. Poke, reschedule and deferrable modes share the
poll step with the trigger and the operator (``triggers.batch.BatchPoller``) and the landing and policy
(``hooks.batch_policy.land_batches``), so all judge a partially failed batch the same way.

An empty ``batch_ids`` is a success with nothing to wait for: the operator pushes ``[]`` when every image
came from the cache (or was rejected before submission) and it landed those rows itself.

By default the sensor does not cancel batches when it times out or is killed (they may belong to another
DAG); set ``cancel_on_timeout=True`` / ``cancel_on_kill=True`` when it owns them.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import Any

from airflow_provider_qwenocr._compat import AirflowSensorTimeout, BaseSensorOperator, Context, default_deferrable
from airflow_provider_qwenocr.exceptions import QwenOcrBatchError, QwenOcrConfigError
from airflow_provider_qwenocr.get_provider_info import DEFAULT_CONN_ID
from airflow_provider_qwenocr.hooks.batch_policy import compact_batch, land_batches, validate_execute_complete_event
from airflow_provider_qwenocr.hooks.locations import (
    cache_location,
    check_location,
    is_template,
    manifest_location,
    task_ids,
)
from airflow_provider_qwenocr.hooks.qwenocr import QwenOcrHook
from airflow_provider_qwenocr.lineage import declare_results_asset, publish_results_event
from airflow_provider_qwenocr.runs.summary import OcrSummary, resolve_max_failed_ratio
from airflow_provider_qwenocr.triggers.batch import BatchPoller, PollingError, QwenOcrBatchTrigger


class QwenOcrBatchSensor(BaseSensorOperator):
    """Succeeds when every batch in ``batch_ids`` is terminal and the policy accepts the outcome.

    :param batch_ids: one id, a list of ids, or an ``XComArg`` resolving to them — e.g.
        ``submit.output["batch_ids"]`` for a ``QwenOcrBatchOperator(wait_for_completion=False)`` named
        ``submit`` (``[]``: nothing to wait for, see above). A string is one id.
    :param conn_id: the ``dashscope`` connection.
    :param max_failed_ratio: fail when failed images / all images exceeds this (default 0, as both
        operators). With ``output_uri`` it is judged on the landed rows (so images the submit rejected
        count too); without, on the batches' request counts (failed, expired, cancelled requests).
    :param output_uri: when set, download output/error files and write result rows there (a file: the
        operator's ``output_uri``; absolute path or URI).
    :param manifest_uri: the submit's manifest (default: next to ``output_uri``) to rebuild full rows.
    :param cache_uri: add the landed ``ok`` rows to this result cache (shared with the realtime operator);
        default: the deployment's cache (the rule of ``hooks/locations.py``).
    :param use_cache: False: do not add rows to any cache.
    :param deferrable: wait in the triggerer; default ``[operators] default_deferrable``.
    :param delete_files: after landing, delete the batches' input/output/error files from the account.
    :param cancel_on_timeout: cancel the batches when the sensor times out (off: they may not be ours).
    :param cancel_on_kill: cancel the batches when the task is killed (off: they may not be ours).
    :param emit_asset: with ``output_uri``, declare the outlet asset ``qwenocr://<dag_id>/<task_id>``
        (see :mod:`airflow_provider_qwenocr.lineage`).
    :return: the XCom summary of :class:`~airflow_provider_qwenocr.runs.summary.OcrSummary`, as both operators:
        with ``output_uri`` the landed rows' counts, usage and cost (``state="done"``); without, the batches'
        request counts, ``results_uri`` None and ``state="ended"``.

    Transient poll errors are tolerated :data:`~airflow_provider_qwenocr.triggers.batch.MAX_POLL_FAILURES`
    times in a row (poke and deferred alike).
    """

    template_fields: Sequence[str] = ("batch_ids", "conn_id", "output_uri", "manifest_uri", "cache_uri", "aws_conn_id")

    def __init__(
        self,
        *,
        batch_ids: str | list[str] | Any,
        conn_id: str = DEFAULT_CONN_ID,
        max_failed_ratio: float = 0.0,
        output_uri: str | None = None,
        manifest_uri: str | None = None,
        cache_uri: str | None = None,
        aws_conn_id: str | None = "aws_default",
        deferrable: bool | None = None,
        cancel_on_timeout: bool = False,
        cancel_on_kill: bool = False,
        delete_files: bool = False,
        use_cache: bool = True,
        emit_asset: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.batch_ids = batch_ids
        self.conn_id = conn_id
        try:
            self.max_failed_ratio = resolve_max_failed_ratio(max_failed_ratio)
        except ValueError as exc:
            raise QwenOcrConfigError(str(exc)) from None
        self.output_uri = _results_file(output_uri)
        self.manifest_uri = check_location("manifest_uri", manifest_uri)
        self.cache_uri = check_location("cache_uri", cache_uri)
        self.aws_conn_id = aws_conn_id
        self.deferrable = default_deferrable() if deferrable is None else deferrable
        self.cancel_on_timeout = cancel_on_timeout
        self.cancel_on_kill = cancel_on_kill
        self.use_cache = use_cache
        self.delete_files = delete_files
        self._result: Any = None
        self._poller: BatchPoller | None = None
        self.results_asset = declare_results_asset(self) if emit_asset and output_uri else None

    @cached_property
    def hook(self) -> QwenOcrHook:
        return QwenOcrHook(conn_id=self.conn_id)

    def _ids(self) -> list[str]:
        return parse_batch_ids(self.batch_ids)

    def _manifest(self) -> str | None:
        if self.manifest_uri or not self.output_uri:
            return check_location("manifest_uri", self.manifest_uri)
        return manifest_location(None, _results_file(self.output_uri))

    def execute(self, context: Context) -> Any:
        ids = self._ids()
        if not ids:  # the operator landed every row itself (all cached or rejected): nothing to wait for
            self.log.info("no batch ids: the submit sent nothing (every image cached or rejected); nothing to wait for")
            return self._published(context, self._finish([], [], context, evaluate=False))
        if self.deferrable:
            if self._poll(ids):  # already done: no need to defer
                return self._published(context, self._finish(ids, self._poller.batches, context))
            self.defer(
                trigger=QwenOcrBatchTrigger(batch_ids=ids, conn_id=self.conn_id,
                                            end_time=time.time() + float(self.timeout),
                                            poll_interval=float(self.poke_interval),
                                            cancel_on_exit=self.cancel_on_timeout,
                                            cancel_on_kill=self.cancel_on_kill),
                method_name="execute_complete",
                timeout=timedelta(seconds=float(self.timeout) + float(self.poke_interval) + 60),
            )
        try:
            super().execute(context)
        except AirflowSensorTimeout:  # poke/reschedule mode: the deferrable path's trigger does this itself
            if self.cancel_on_timeout:
                self.hook.cancel_batches(self._ids())
            raise
        return self._published(context, self._result)

    def _poll(self, ids: list[str]) -> bool:
        """One poll with the trigger's step, kept across pokes (terminal batches are not asked again)."""
        if self._poller is None or self._poller.batch_ids != ids:
            self._poller = BatchPoller(self.hook.get_batches, ids)
        try:
            return self._poller.poll()
        except PollingError as exc:
            raise QwenOcrBatchError(str(exc)) from exc.__cause__

    def poke(self, context: Context) -> bool:
        finished = self._poll(self._ids())
        poller = self._poller
        if not finished:
            if poller.failures:
                self.log.warning("transient poll error (%d/%d): %s", poller.failures, poller.max_poll_failures,
                                 poller.last_error)
            else:
                self.log.info("waiting for %s: %s", poller.batch_ids, [b["status"] for b in poller.batches])
            return False
        self._result = self._finish(poller.batch_ids, poller.batches, context)
        return True

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        event = validate_execute_complete_event(event)
        if event["reason"] in ("timeout", "polling_error"):
            raise QwenOcrBatchError(f"batch wait ended with {event['reason']}: {event.get('message')} "
                                   f"(cancelled: {event.get('cancelled')})")
        return self._published(context, self._finish(event["batch_ids"], event.get("batches") or None, context))

    def _published(self, context: Context, result: dict[str, Any]) -> dict[str, Any]:
        if result.get("results_uri"):
            publish_results_event(self, context, result)
        return result

    def _finish(self, ids: list[str], batches: list[dict] | None, context: Context = None, *,
                evaluate: bool = True) -> dict[str, Any]:
        """Judge the terminal batches and land the rows when there is an ``output_uri`` (as the operator).

        ``evaluate=False`` (no batch ids): land the manifest's rows (cache hits, rejections) only, as the
        operator did; without ``output_uri``, an empty ``ended`` summary."""
        output_uri = _results_file(self.output_uri)
        if not evaluate and not output_uri:
            return OcrSummary().to_xcom(None, batch_ids=[], manifest_uri=self._manifest(), state="ended")
        if evaluate and batches is None:
            batches = [compact_batch(b) for b in self.hook.get_batches(ids)]
        runner = None
        if output_uri:
            dag_id = task_ids(self, context)["dag_id"]
            cache = cache_location(self.cache_uri, use_cache=self.use_cache, dag_id=dag_id)
            runner = self.hook.batch_runner(aws_conn_id=self.aws_conn_id, cache_uri=cache)
        return land_batches(runner, ids, batches or [], output_uri=output_uri, manifest_uri=self._manifest(),
                            max_failed_ratio=self.max_failed_ratio, delete_files=self.delete_files, log=self.log,
                            evaluate=evaluate)

    def on_kill(self) -> None:
        if self.cancel_on_kill and self._ids():
            self.hook.cancel_batches(self._ids())


def _results_file(output_uri: Any) -> str | None:
    """The sensor lands into one results file — the operator's — so that the manifest beside it is found."""
    output = check_location("output_uri", output_uri)
    if output and output.endswith("/") and not is_template(output):
        raise QwenOcrConfigError(f"output_uri={output!r} is a folder: give the submitting operator's results "
                                 "file (its manifest is found beside it), e.g. submit.output['results_uri']")
    return output


def parse_batch_ids(value: Any) -> list[str]:
    """Batch ids from a list/tuple (what an ``XComArg`` resolves to) or one id string.

    A string holding several ids (a list rendered by ``"{{ ti.xcom_pull(...) }}"``, or comma-separated) is
    refused with what to pass instead, rather than sent to the service as one unknown id."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [str(i) for i in value if str(i).strip()]
    text = str(value).strip()
    if text.startswith("[") or "," in text:
        raise QwenOcrConfigError(f"batch_ids={text[:200]!r} is a string of several ids: pass a list, or an XComArg "
                                 "such as submit.output['batch_ids'] (a template renders a list to a string)")
    return [text] if text else []
