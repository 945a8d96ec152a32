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

The same poll step (:class:`BatchPoller`: terminal batches are not asked again, transient errors tolerated
up to :data:`MAX_POLL_FAILURES` in a row) drives the synchronous wait beside it, :func:`wait_for_batches`
(the batch operator without deferral) and the sensor's ``poke``, so the three waits judge alike.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

from airflow_provider_qwenocr._compat import BaseTrigger, TriggerEvent
from airflow_provider_qwenocr.dashscope.batch import BatchStatus, compact_batch, is_transient_error

# Severity order when batches end differently: the worst one names the event.
_SEVERITY = ("failed", "expired", "cancelled")

#: Consecutive transient poll errors (throttling, 5xx, network) tolerated before a wait gives up. A tuning
#: knob of the service, not a per-task choice: one value for the trigger, the blocking wait and the sensor.
MAX_POLL_FAILURES = 5


class PollingError(Exception):
    """Polling ended: a permanent error, or :data:`MAX_POLL_FAILURES` transient ones in a row (``__cause__``)."""


class BatchPoller:
    """One poll of ``batch_ids`` at a time; remembers the terminal ones (never asked again) and the last state.

    ``get_batches`` is the hook's (ids → batch dicts). :meth:`poll` returns True once every batch is terminal;
    a transient error returns False (and is counted), a permanent one or too many in a row raise
    :class:`PollingError`.
    """

    def __init__(self, get_batches: Callable[[list[str]], Iterable[dict]], batch_ids: Iterable[str],
                 max_poll_failures: int = MAX_POLL_FAILURES) -> None:
        self.get_batches = get_batches
        self.batch_ids = list(batch_ids)
        self.max_poll_failures = int(max_poll_failures)
        self.failures = 0
        self.batches: list[dict] = []  # the last full state (compact), in batch_ids order
        self.done: dict[str, dict] = {}

    def poll(self) -> bool:
        pending = [b for b in self.batch_ids if b not in self.done]
        try:
            fresh = {b["id"]: compact_batch(b) for b in self.get_batches(pending)} if pending else {}
        except Exception as exc:  # classified here, once for every wait
            self.failures += 1
            if not is_transient_error(exc) or self.failures >= self.max_poll_failures:
                kind = "transient" if is_transient_error(exc) else "permanent"
                raise PollingError(f"polling batches {self.batch_ids} failed ({self.failures}/"
                                   f"{self.max_poll_failures}, {kind}): {type(exc).__name__}: {exc}") from exc
            self.last_error = exc
            return False
        self.failures = 0
        self.batches = [self.done.get(bid) or fresh[bid] for bid in self.batch_ids]
        self.done.update({b["id"]: b for b in self.batches if BatchStatus.of(b).is_terminal})
        return len(self.done) == len(self.batch_ids)


def wait_for_batches(poller: BatchPoller, *, timeout: float, poll_interval: float, log: Any,
                     sleep: Callable[[float], Any] = time.sleep) -> list[dict]:
    """The synchronous wait (the batch operator without deferral): poll until every batch is terminal.

    Raises :class:`PollingError`, or ``TimeoutError`` after ``timeout`` seconds; the caller cancels."""
    deadline = time.monotonic() + timeout
    while not poller.poll():
        if poller.failures:
            log.warning("transient poll error (%d/%d): %s", poller.failures, poller.max_poll_failures,
                        poller.last_error)
        else:
            log.info("batches %s: %s", poller.batch_ids, [b["status"] for b in poller.batches])
        if time.monotonic() >= deadline:
            raise TimeoutError(f"batches {poller.batch_ids} not finished after {timeout:.0f} s")
        sleep(max(0.0, min(poll_interval, deadline - time.monotonic())))
    return poller.batches


class QwenOcrBatchTrigger(BaseTrigger):
    """Poll ``batch_ids`` every ``poll_interval`` seconds until all are terminal or ``end_time`` passes.

    :param batch_ids: batches to wait for.
    :param conn_id: the ``dashscope`` connection.
    :param end_time: absolute deadline, unix seconds (float); after it a ``timeout`` event is sent.
    :param poll_interval: seconds between polls.
    :param max_poll_failures: consecutive transient poll errors tolerated before ``polling_error``.
    :param cancel_on_exit: cancel the batches on timeout and polling error (the operator: yes; a sensor
        watching someone else's batches: its ``cancel_on_timeout``).
    :param cancel_on_kill: cancel the batches when the deferred task is killed.
    """

    def __init__(self, batch_ids: list[str], conn_id: str, end_time: float, poll_interval: float = 60.0,
                 max_poll_failures: int = MAX_POLL_FAILURES, cancel_on_exit: bool = True,
                 cancel_on_kill: bool = True) -> None:
        super().__init__()
        self.batch_ids = list(batch_ids)
        self.conn_id = conn_id
        self.end_time = float(end_time)
        self.poll_interval = float(poll_interval)
        self.max_poll_failures = int(max_poll_failures)
        self.cancel_on_exit = bool(cancel_on_exit)
        self.cancel_on_kill = bool(cancel_on_kill)

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
        poller = BatchPoller(lambda ids: self._hook().get_batches(ids), self.batch_ids, self.max_poll_failures)
        while True:
            if time.time() >= self.end_time:
                cancelled = await self._cancel_quietly()
                yield self._event("timeout", "timeout", f"batches not finished by the deadline "
                                  f"({self.end_time:.0f}); cancelled: {cancelled}", poller.batches, cancelled)
                return
            try:
                finished = await asyncio.to_thread(poller.poll)
            except PollingError as exc:
                self.log.warning("%s", exc)
                cancelled = await self._cancel_quietly()
                cause = exc.__cause__
                yield self._event("error", "polling_error", f"{type(cause).__name__}: {cause}", poller.batches,
                                  cancelled)
                return
            if finished:
                values = {BatchStatus.of(b).value for b in poller.batches}
                reason = next((r for r in _SEVERITY if r in values), "success")
                status = "success" if reason == "success" else "error"
                counts = ", ".join(f"{b['id']}={b['status']} {b.get('request_counts')}" for b in poller.batches)
                yield self._event(status, reason, counts, poller.batches)
                return
            if poller.failures:
                self.log.warning("polling %s failed (%d/%d, transient): %s", self.batch_ids, poller.failures,
                                 self.max_poll_failures, poller.last_error)
            else:
                self.log.info("batches %s: %s", self.batch_ids, [b["status"] for b in poller.batches])
            await asyncio.sleep(max(0.0, min(self.poll_interval, self.end_time - time.time())))

    async def on_kill(self) -> None:
        """Airflow 3.3+: the user killed the deferred task — cancel the remote work it was waiting on."""
        cancelled = await self._cancel_quietly(self.cancel_on_kill)
        self.log.info("task killed while deferred; cancelled batches: %s", cancelled)
