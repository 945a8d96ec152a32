"""QwenOcrBatchSensor: wait for existing DashScope batches, apply the partial-failure policy, land results.

Why a sensor next to the operator: it only *reads* batch state, never submits, so it is idempotent across
task retries — a retried sensor re-attaches to the same batch ids and bills nothing. Pair it with
``QwenOcrBatchOperator(wait_for_completion=False)`` (ids from XCom key ``batch_ids``) to get retries on the
long wait without risking a second, billable submission. Poke, reschedule and deferrable modes share one
decision function with the operator (``hooks.batch.evaluate_batch_counts``), so both judge a partially
failed batch the same way.

By default the sensor does not cancel batches when it times out or is killed (they may belong to another
DAG); set ``cancel_on_timeout=True`` / ``cancel_on_kill=True`` when it owns them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import Any

from airflow_provider_qwenocr._compat import AirflowSensorTimeout, BaseSensorOperator, Context, default_deferrable
from airflow_provider_qwenocr.dashscope.batch import BatchStatus
from airflow_provider_qwenocr.deprecation import warn_deprecated
from airflow_provider_qwenocr.exceptions import QwenOcrBatchError
from airflow_provider_qwenocr.get_provider_info import DEFAULT_CONN_ID
from airflow_provider_qwenocr.hooks import batch as batch_hook
from airflow_provider_qwenocr.hooks.batch import compact_batch
from airflow_provider_qwenocr.hooks.qwenocr import QwenOcrHook
from airflow_provider_qwenocr.lineage import declare_results_asset, publish_results_event
from airflow_provider_qwenocr.triggers.batch import QwenOcrBatchTrigger


class QwenOcrBatchSensor(BaseSensorOperator):
    """Succeeds when every batch in ``batch_ids`` is terminal and the policy accepts the outcome.

    :param batch_ids: one id, a list of ids, or an ``XComArg`` resolving to them — e.g.
        ``submit.output["batch_ids"]`` for a ``QwenOcrBatchOperator(wait_for_completion=False)`` named
        ``submit``. A rendered list *string* (``"{{ ti.xcom_pull(...) }}"``) still works but is deprecated.
    :param conn_id: the ``dashscope`` connection.
    :param max_failed_ratio: fail when failed images / all images exceeds this (default 0, as both
        operators). With ``output_uri`` it is judged on the landed rows (so images the submit rejected
        count too); without, on the batches' request counts (failed, expired, cancelled requests).
    :param fail_on_partial_error: deprecated; True = ``max_failed_ratio=0``, False = ``max_failed_ratio=1``.
    :param output_uri: when set, download output/error files and write result rows there.
    :param manifest_uri: the submit's manifest (default: next to ``output_uri``) to rebuild full rows.
    :param cache_uri: add the landed ``ok`` rows to this result cache (shared with the realtime operator);
        default: the deployment's cache (see ``operators.locations``).
    :param use_cache: False: do not add rows to any cache.
    :param deferrable: wait in the triggerer; default ``[operators] default_deferrable``.
    :param delete_files: after landing, delete the batches' input/output/error files from the account.
    :param cancel_on_timeout: cancel the batches when the sensor times out (off: they may not be ours).
    :param cancel_on_kill: cancel the batches when the task is killed. Not given: follows
        ``cancel_on_timeout`` as before, with a DeprecationWarning when that is True (pass it explicitly).
    :param emit_asset: with ``output_uri``, declare the outlet asset ``qwenocr://<dag_id>/<task_id>``
        (see :mod:`airflow_provider_qwenocr.lineage`).
    :return: the XCom summary of :class:`~airflow_provider_qwenocr.runs.summary.OcrSummary`, as both operators:
        with ``output_uri`` the landed rows' counts, usage and cost (``state="done"``); without, the batches'
        request counts, ``results_uri`` None and ``state="ended"``. ``verdict``, ``counts`` and ``statuses``
        are still in it for one release (deprecated).
    """

    template_fields: Sequence[str] = ("batch_ids", "conn_id", "output_uri", "manifest_uri", "cache_uri")

    def __init__(
        self,
        *,
        batch_ids: str | list[str] | Any,
        conn_id: str = DEFAULT_CONN_ID,
        max_failed_ratio: float | None = None,
        fail_on_partial_error: bool | None = None,
        output_uri: str | None = None,
        manifest_uri: str | None = None,
        cache_uri: str | None = None,
        aws_conn_id: str | None = "aws_default",
        deferrable: bool | None = None,
        cancel_on_timeout: bool = False,
        cancel_on_kill: bool | None = None,
        max_poll_failures: int = 5,
        delete_files: bool = False,
        use_cache: bool = True,
        emit_asset: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.batch_ids = batch_ids
        self.conn_id = conn_id
        self.max_failed_ratio = batch_hook.resolve_max_failed_ratio(max_failed_ratio, fail_on_partial_error,
                                                                            owner="QwenOcrBatchSensor")
        self.output_uri = output_uri
        self.manifest_uri = manifest_uri
        self.cache_uri = cache_uri
        self.aws_conn_id = aws_conn_id
        self.deferrable = default_deferrable() if deferrable is None else deferrable
        self.cancel_on_timeout = cancel_on_timeout
        if cancel_on_kill is None:
            if cancel_on_timeout:
                warn_deprecated("QwenOcrBatchSensor: cancel_on_timeout=True no longer implies cancelling on kill "
                              "in 1.0; pass cancel_on_kill explicitly (True keeps today's behaviour)", stacklevel=2)
            cancel_on_kill = cancel_on_timeout
        self.cancel_on_kill = cancel_on_kill
        self.use_cache = use_cache
        self.max_poll_failures = max_poll_failures
        self.delete_files = delete_files
        self._result: Any = None
        self.results_asset = declare_results_asset(self) if emit_asset and output_uri else None

    @cached_property
    def hook(self) -> QwenOcrHook:
        return QwenOcrHook(conn_id=self.conn_id)

    def _ids(self) -> list[str]:
        ids = parse_batch_ids(self.batch_ids)
        if not ids:
            raise QwenOcrBatchError("QwenOcrBatchSensor needs at least one batch id")
        return ids

    def _cache(self) -> str | None:
        if not self.use_cache:
            return None
        from airflow_provider_qwenocr.operators.locations import default_cache_uri

        return self.cache_uri or default_cache_uri(self.dag_id or "adhoc")

    def _manifest(self) -> str | None:
        if self.manifest_uri or not self.output_uri:
            return self.manifest_uri
        return batch_hook.default_manifest_uri(self.output_uri)

    def execute(self, context: Context) -> Any:
        if self.deferrable:
            ids = self._ids()
            batches = [compact_batch(b) for b in self.hook.get_batches(ids)]
            if all(BatchStatus.of(b).is_terminal for b in batches):  # already done: no need to defer
                return self._published(context, self._finish(ids, batches))
            self.defer(
                trigger=QwenOcrBatchTrigger(batch_ids=ids, conn_id=self.conn_id,
                                            end_time=time.time() + float(self.timeout),
                                            poll_interval=float(self.poke_interval),
                                            max_poll_failures=self.max_poll_failures,
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

    def poke(self, context: Context) -> bool:
        ids = self._ids()
        batches = [compact_batch(b) for b in self.hook.get_batches(ids)]
        pending = [b["id"] for b in batches if not BatchStatus.of(b).is_terminal]
        if pending:
            self.log.info("waiting for %s: %s", pending, [b["status"] for b in batches])
            return False
        self._result = self._finish(ids, batches)
        return True

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        event = batch_hook.validate_execute_complete_event(event)
        if event["reason"] in ("timeout", "polling_error"):
            raise QwenOcrBatchError(f"batch wait ended with {event['reason']}: {event.get('message')} "
                                   f"(cancelled: {event.get('cancelled')})")
        return self._published(context, self._finish(event["batch_ids"], event.get("batches") or None))

    def _published(self, context: Context, result: dict[str, Any]) -> dict[str, Any]:
        if result.get("results_uri"):
            publish_results_event(self, context, result)
        return result

    def _finish(self, ids: list[str], batches: list[dict] | None) -> dict[str, Any]:
        """Judge the terminal batches and land the rows when there is an ``output_uri`` (as the operator)."""
        from airflow_provider_qwenocr.operators.landing import land_batches

        batches = batches if batches is not None else [compact_batch(b) for b in self.hook.get_batches(ids)]
        runner = self.hook.batch_runner(aws_conn_id=self.aws_conn_id, cache_uri=self._cache()) \
            if self.output_uri else None
        return land_batches(runner, ids, batches, output_uri=self.output_uri, manifest_uri=self._manifest(),
                            max_failed_ratio=self.max_failed_ratio, delete_files=self.delete_files, log=self.log)

    def on_kill(self) -> None:
        if self.cancel_on_kill:
            self.hook.cancel_batches(self._ids())


def parse_batch_ids(value: Any) -> list[str]:
    """Batch ids from a list/tuple (what an ``XComArg`` resolves to) or one id string.

    A string holding several ids — a rendered list (JSON, or the Python repr that ``xcom_pull`` renders
    to without ``render_template_as_native_obj``) or a comma-separated list — is still read, with a
    DeprecationWarning, for one release. Never evaluated as Python.
    """
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [str(i) for i in value if str(i).strip()]
    text = str(value).strip()
    if not (text.startswith("[") or "," in text):
        return [text] if text else []
    warn_deprecated("QwenOcrBatchSensor(batch_ids=<a string of several ids>) is deprecated: pass a list or an "
                  "XComArg such as submit.output['batch_ids']", stacklevel=3)
    if text.startswith("["):
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = json.loads(text.replace("'", '"'))  # the Python repr of a list of plain ids
        return parse_batch_ids(list(parsed)) if isinstance(parsed, list) else []
    return [i.strip() for i in text.split(",") if i.strip()]
