"""QwenOcrBatchTrigger: waits in the triggerer until every batch is terminal, the deadline passes, or polling breaks.

Why it is built this way (each point is a known way deferrable operators leak paid work):

- **Serializable kwargs only** (ids, conn id, numbers): the triggerer re-creates the trigger from
  ``serialize()`` after a restart, so nothing else can survive.
- **Absolute deadline** (``end_time``, unix seconds): a relative timeout would restart from zero on every
  re-creation and a restarted triggerer could wait forever. The deadline is fixed at defer time.
- **Blocking SDK calls in** ``asyncio.to_thread`` — including building the hook, whose connection lookup is
  synchronous — so one slow poll never stalls the other triggers sharing the event loop.
- **A small import**: this module needs only the batch client's status and shape (``dashscope.batch``); the
  hook is imported when the first poll runs, and neither loads the run loops, OpenCV or numpy.
- **Bounded tolerance**: throttling, 5xx and network errors are retried up to ``max_poll_failures``
  consecutive times; a permanent error (bad key, unknown batch) ends the wait at once.
- **Exactly one terminal event** carrying the batch ids (the resumed task is a fresh instance) and a
  machine-readable ``reason``: success, failed, expired, cancelled, timeout, polling_error.
- **Cancel on the way out**: on timeout and on polling errors (when ``cancel_on_exit``), and when a user
  kills the deferred task (when ``cancel_on_kill``; ``on_kill``, Airflow 3.3+; a no-op before), the remote
  batches are cancelled.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow_provider_qwenocr._compat import BaseTrigger, TriggerEvent
from airflow_provider_qwenocr.dashscope.batch import BatchStatus, compact_batch, is_transient_error

# Severity order when batches end differently: the worst one names the event.
_SEVERITY = ("failed", "expired", "cancelled")


class QwenOcrBatchTrigger(BaseTrigger):
    """Poll ``batch_ids`` every ``poll_interval`` seconds until all are terminal or ``end_time`` passes.

    :param batch_ids: batches to wait for.
    :param conn_id: the ``dashscope`` connection.
    :param end_time: absolute deadline, unix seconds (float); after it a ``timeout`` event is sent.
    :param poll_interval: seconds between polls.
    :param max_poll_failures: consecutive transient poll errors tolerated before ``polling_error``.
    :param cancel_on_exit: cancel the batches on timeout and polling error (the operator: yes; a sensor
        watching someone else's batches: its ``cancel_on_timeout``).
    :param cancel_on_kill: cancel the batches when the deferred task is killed; None (a trigger serialized
        by an older version) = ``cancel_on_exit``, as before.
    """

    def __init__(self, batch_ids: list[str], conn_id: str, end_time: float, poll_interval: float = 60.0,
                 max_poll_failures: int = 5, cancel_on_exit: bool = True, cancel_on_kill: bool | None = None) -> None:
        super().__init__()
        self.batch_ids = list(batch_ids)
        self.conn_id = conn_id
        self.end_time = float(end_time)
        self.poll_interval = float(poll_interval)
        self.max_poll_failures = int(max_poll_failures)
        self.cancel_on_exit = bool(cancel_on_exit)
        self.cancel_on_kill = self.cancel_on_exit if cancel_on_kill is None else bool(cancel_on_kill)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "batch_ids": list(self.batch_ids),
                "conn_id": self.conn_id,
                "end_time": self.end_time,
                "poll_interval": self.poll_interval,
                "max_poll_failures": self.max_poll_failures,
                "cancel_on_exit": self.cancel_on_exit,
                "cancel_on_kill": self.cancel_on_kill,
            },
        )

    def _hook(self):
        """One hook per trigger run (its connection is looked up once, in a worker thread)."""
        hook = getattr(self, "_hook_instance", None)
        if hook is None:
            from airflow_provider_qwenocr.hooks.qwenocr import QwenOcrHook

            hook = self._hook_instance = QwenOcrHook(conn_id=self.conn_id)
        return hook

    def _poll(self, done: dict[str, dict]) -> list[dict]:
        """Current state of every batch; batches already terminal are not asked again."""
        pending = [b for b in self.batch_ids if b not in done]
        fresh = {b["id"]: compact_batch(b) for b in self._hook().get_batches(pending)} if pending else {}
        return [done.get(bid) or fresh[bid] for bid in self.batch_ids]

    def _cancel(self) -> list[str]:
        return self._hook().cancel_batches(self.batch_ids)

    def _event(self, status: str, reason: str, message: str, batches: list[dict] | None = None,
               cancelled: list[str] | None = None) -> TriggerEvent:
        return TriggerEvent({
            "status": status, "reason": reason, "message": message, "batch_ids": list(self.batch_ids),
            "batches": batches or [], "cancelled": cancelled or [], "end_time": self.end_time,
        })

    async def _cancel_quietly(self, wanted: bool | None = None) -> list[str]:
        if not (self.cancel_on_exit if wanted is None else wanted):
            return []
        try:
            return await asyncio.to_thread(self._cancel)
        except Exception as exc:  # the event must still go out
            self.log.warning("cancel of %s failed: %s", self.batch_ids, exc)
            return []

    async def run(self) -> AsyncIterator[TriggerEvent]:
        failures = 0
        last: list[dict] = []
        done: dict[str, dict] = {}
        while True:
            if time.time() >= self.end_time:
                cancelled = await self._cancel_quietly()
                yield self._event("timeout", "timeout", f"batches not finished by the deadline "
                                  f"({self.end_time:.0f}); cancelled: {cancelled}", last, cancelled)
                return
            try:
                last = await asyncio.to_thread(self._poll, done)
                failures = 0
                done.update({b["id"]: b for b in last if BatchStatus.of(b).is_terminal})
            except Exception as exc:  # classified below
                failures += 1
                transient = is_transient_error(exc)
                self.log.warning("polling %s failed (%d/%d, %s): %s", self.batch_ids, failures,
                                 self.max_poll_failures, "transient" if transient else "permanent", exc)
                if not transient or failures >= self.max_poll_failures:
                    cancelled = await self._cancel_quietly()
                    yield self._event("error", "polling_error", f"{type(exc).__name__}: {exc}", last, cancelled)
                    return
            else:
                statuses = [BatchStatus.of(b) for b in last]
                if all(s.is_terminal for s in statuses):
                    values = {s.value for s in statuses}
                    reason = next((r for r in _SEVERITY if r in values), "success")
                    status = "success" if reason == "success" else "error"
                    counts = ", ".join(f"{b['id']}={b['status']} {b.get('request_counts')}" for b in last)
                    yield self._event(status, reason, counts, last)
                    return
                self.log.info("batches %s: %s", self.batch_ids, [s.value for s in statuses])
            await asyncio.sleep(max(0.0, min(self.poll_interval, self.end_time - time.time())))

    async def on_kill(self) -> None:
        """Airflow 3.3+: the user killed the deferred task — cancel the remote work it was waiting on."""
        cancelled = await self._cancel_quietly(self.cancel_on_kill)
        self.log.info("task killed while deferred; cancelled batches: %s", cancelled)
