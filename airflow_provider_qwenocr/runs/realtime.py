"""The realtime OCR loop the operator runs: for each source plan → cache? → prepare → recognise → row.

Each source's plan (``ocr/plan.py``: how it is sent, which keys find it) is the one the token estimate
and the batch builder use; the client returns the finished row (identity from the plan, usage, cost) and
the loop writes it as it came.

Why this lives outside the operator: the operator is Airflow glue (templating, context, XCom); this
loop is plain Python over a client object, so it is tested without Airflow and reused by anything that
wants the same semantics (idempotent, bounded memory, per-image failures as rows).

Guarantees:
- Bounded memory: at most ``2 × max_concurrency`` images are in flight; an image's bytes are dropped as
  soon as its row is written. Memory does not grow with the number of images.
- Idempotent: an image whose idempotency key is in the cache is not sent again (no tokens billed);
  every finished ``ok`` image is cached at once, so a killed task's retry re-bills nothing done. The
  same bytes under two names in one run are one call (:class:`InFlight`): both get a row, billed once.
- Failure isolation: a bad image (unreadable, undecodable, refused by the service, retries exhausted, its
  row or drawing not writable) becomes an error row naming its file; a cache that cannot be read or
  written is a miss plus a warning. Only account-wide failures stop the whole run, because every other
  call would fail too: :class:`AccountError` (bad key, billing state) and
  :class:`ServiceUnavailableError` (the client's circuit breaker opened: service unreachable or
  persistently failing). Then images not yet done get no row at all — they were never sent, and a
  re-run picks them up (finished ones are in the cache).
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_qwenocr.dashscope.errors import (
    AccountError,
    QwenOcrError,
    RetryableError,
    ServiceUnavailableError,
    describe,
    redact,
)
from airflow_provider_qwenocr.ocr.images import ImageValidationError, estimate_tokens
from airflow_provider_qwenocr.ocr.plan import Identity, Send, SourcePlan, find_cached, plan_source
from airflow_provider_qwenocr.ocr.request import OcrRequest
from airflow_provider_qwenocr.ocr.results import OcrResult
from airflow_provider_qwenocr.runs.results_store import ResultCache, ResultsWriter
from airflow_provider_qwenocr.runs.sources import Source
from airflow_provider_qwenocr.runs.summary import MAX_FAILED_IN_SUMMARY, MAX_FAILED_KEPT, OcrSummary

log = logging.getLogger(__name__)

#: The realtime summary is the one XCom contract (:class:`~airflow_provider_qwenocr.runs.summary.OcrSummary`).
RunSummary = OcrSummary


@dataclass(frozen=True)
class OcrJob:
    """One task's :class:`OcrRequest` plus what only the run knows: the key to scrub from messages and the
    presigner of ``image_transport="url"`` (object-store sources go to the service as presigned URLs: no
    local read, decode or resize; keyed on their object URI). The client prices the rows it returns in its
    connection's region, so the job carries no region."""

    request: OcrRequest
    secret: str | None = field(default=None, repr=False)  # only used to scrub messages
    presigner: Any = field(default=None, repr=False, compare=False)

    spec = property(lambda self: self.request.spec)
    model = property(lambda self: self.request.model)
    task = property(lambda self: self.request.task.value)
    prompt = property(lambda self: self.request.prompt)
    result_schema = property(lambda self: self.request.result_schema)
    min_pixels = property(lambda self: self.request.min_pixels)
    max_pixels = property(lambda self: self.request.max_pixels)
    enable_rotate = property(lambda self: self.request.enable_rotate)
    fetch = property(lambda self: self.request.fetch)

    def key(self, sha256: str) -> str:
        """The request's idempotency key (:meth:`OcrRequest.key`), the one the client gives the row it returns."""
        return self.request.key(sha256)


Drawer = Callable[[bytes, OcrResult, Source], None]


def process_one(src: Source, job: OcrJob, client: Any, cache: ResultCache | None,
                drawer: Drawer | None = None, inflight: InFlight | None = None) -> tuple[OcrResult, bool]:
    """(row, not billed by this run) for one source, as its plan (``ocr.plan``) says. Raises only
    :class:`AccountError` / :class:`ServiceUnavailableError` (stop everything).

    ``inflight`` (the run's) makes the same key under two names one call: the second source waits for the
    first and gets its row under its own name, not billed (like a cache hit)."""
    plan = plan_source(src, job.request, presigner=job.presigner)
    ident = plan.identity
    if plan.error is not None:
        return _failure(job, ident, plan.error.code, redact(plan.error.text(describe), job.secret)), False
    twin = inflight.claim(ident.key) if inflight is not None else None
    if twin is not None:  # the same bytes under another name are being recognised: wait for that row
        row = OcrResult.from_row(ident.reuse(twin.result().to_row()))
        _draw(drawer, plan.data, row, src)
        return row, row.ok
    outcome: Future = Future()
    try:
        result, cached = _recognise(plan, src, job, client, cache)
        outcome.set_result(result)
    except BaseException as exc:
        outcome.set_exception(exc)
        raise
    finally:
        if inflight is not None:
            inflight.release(ident.key, outcome)
    if not cached:
        _draw(drawer, plan.data, result, src)
    return result, cached


def _recognise(plan: SourcePlan, src: Source, job: OcrJob, client: Any,
               cache: ResultCache | None) -> tuple[OcrResult, bool]:
    """The cached row of ``plan``, else the client's finished row (cached when ok), else an error row."""
    ident = plan.identity
    hit = find_cached(cache, plan)
    if hit is not None:
        return OcrResult.from_row(ident.reuse(hit[1])), True
    try:
        image = job.request.prepare(plan.data, sha256=ident.sha256) if plan.data is not None else plan.url
        result = client.recognize(image, request=job.request, identity=ident)
    except (AccountError, ServiceUnavailableError):
        raise
    except ImageValidationError as exc:
        return _failure(job, ident, exc.code, describe(exc)), False
    except QwenOcrError as exc:
        breaker = getattr(client, "breaker", None)
        if isinstance(exc, RetryableError) and breaker is not None and breaker.is_open:
            raise breaker.error() from None  # an outage, not this image's fault: no row, the re-run sends it
        message = redact(exc.message, job.secret)
        if plan.send is Send.PRESIGNED and plan.url:  # the signature never lands in a row
            message = message.replace(plan.url, str(plan.reference))
        return _failure(job, ident, exc.code, message, request_id=exc.request_id), False
    except Exception as exc:  # an unexpected bug for one image must not lose the other images' rows
        log.warning("unexpected error on %s", src.name, exc_info=True)
        return _failure(job, ident, type(exc).__name__, redact(describe(exc), job.secret)), False
    if result.ok and cache is not None:
        cache.put(result)
    return result, False


def _failure(job: OcrJob, ident: Identity, code: str, message: str, **kw: Any) -> OcrResult:
    return OcrResult.failure(task=job.task, model=job.model, code=code, message=message, **ident.fields(), **kw)


def _draw(drawer: Drawer | None, data: bytes | None, result: OcrResult, src: Source) -> None:
    if drawer is None or data is None or not result.ok or not result.words:
        return
    try:
        drawer(data, result, src)
    except Exception:  # a picture is a by-product: never fail the image for it
        log.warning("could not draw boxes for %s", src.name, exc_info=True)


class InFlight:
    """Idempotency keys being recognised in this run → the row they will get (a ``Future``).

    Why: two names for the same bytes (a copy in another folder) used to be two calls billed twice, and the
    warehouse ledger (one row per key) then recorded one of them. An entry lives only while its call runs
    (memory stays flat); a later twin finds the row in the result cache instead.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[str, Future] = {}

    def claim(self, key: str) -> Future | None:
        """None when the caller is the first with ``key`` (it must :meth:`release` it), else the first's row."""
        with self._lock:
            running = self._running.get(key)
            if running is None:
                self._running[key] = Future()
            return running

    def release(self, key: str, outcome: Future) -> None:
        with self._lock:
            waiting = self._running.pop(key)
        exc = outcome.exception()
        if exc is not None:
            waiting.set_exception(exc)
        else:
            waiting.set_result(outcome.result())


def run(
    sources: list[Source],
    job: OcrJob,
    client: Any,
    writer: ResultsWriter,
    *,
    cache: ResultCache | None = None,
    max_concurrency: int = 8,
    progress: Progress | None = None,
    drawer: Drawer | None = None,
) -> OcrSummary:
    """Recognise ``sources`` with at most ``max_concurrency`` calls in flight, writing rows as they finish."""
    summary = OcrSummary()
    workers = max(1, int(max_concurrency))
    window = 2 * workers
    stop = threading.Event()
    inflight = InFlight()

    def task(src: Source) -> tuple[OcrResult, bool]:
        if stop.is_set():
            raise _Cancelled()
        try:
            return process_one(src, job, client, cache, drawer, inflight)
        except (AccountError, ServiceUnavailableError):
            stop.set()  # here, not when the main thread gets to it: a queued image must not start meanwhile
            raise

    pending: set[Future] = set()
    it = iter(sources)
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="qwenocr")
    # The task process holds Airflow's whole heap (~1M objects); every full collection during the run walks it
    # again (0.14-0.43 s per run at full resolution, bench/fullres.py). Frozen, the collector sees only what
    # the run allocates; unfrozen at the end, nothing stays exempt.
    gc.freeze()
    try:
        while True:
            while len(pending) < window:
                src = next(it, None)
                if src is None:
                    break
                pending.add(pool.submit(task, src))
            if not pending:
                break
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                if isinstance(fut.exception(), _Cancelled):
                    continue  # skipped after a task-stopping error in a worker; that error surfaces from its future
                result, cached = fut.result()  # AccountError / ServiceUnavailableError propagate from here
                result = _write_row(writer, result)
                summary.add(result, cached=cached)
                if progress is not None:
                    progress.update(ok=result.ok, cached=cached)
    except BaseException:
        stop.set()
        for fut in pending:
            fut.cancel()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        gc.unfreeze()
    return summary


def _write_row(writer: ResultsWriter, result: OcrResult) -> OcrResult:
    """Write ``result``; if that one row cannot be written (an unserialisable field), write an error row for
    its image instead. A second failure means the results file itself is broken: that stops the task."""
    try:
        writer.write(result)
        return result
    except Exception as exc:
        log.warning("could not write the row of %s", result.source, exc_info=True)
        failed = OcrResult.failure(result.source, result.task, result.model, code="ResultWriteError",
                                   message=f"cannot write this image's row: {describe(exc)}", sha256=result.sha256,
                                   key=result.key, page=result.page)
        writer.write(failed)
        return failed


class _Cancelled(Exception):
    """Raised in workers that start after the run was stopped."""


def estimate_job_tokens(sources: Iterable[Source], job: OcrJob, cache: ResultCache | None,
                        max_concurrency: int = 8) -> tuple[int, int, int]:
    """(image tokens to be billed, images counted at the per-image maximum, images already cached).

    Each source as its plan (``ocr.plan``) says the run will send it, counted once per key (the run makes
    one call per key). Inline sources are read (header only is decoded); URLs the service fetches cannot
    be measured, so they count at the model's per-image maximum (the budget check stays on the safe side);
    presigned ``s3://`` objects are measured from one ranged GET of their header.
    """
    seen: set[str] = set()
    lock = threading.Lock()

    def one(src: Source) -> tuple[int, int, int]:
        plan = plan_source(src, job.request, presigner=job.presigner)
        if plan.error is not None:
            return 0, 0, 0  # becomes an error row; costs nothing
        with lock:
            if plan.identity.key in seen:
                return 0, 0, 0  # the same bytes under another name: one call
            seen.add(plan.identity.key)
        if find_cached(cache, plan) is not None:
            return 0, 0, 1
        head = plan.data
        if plan.send is Send.PRESIGNED:
            try:
                head = job.presigner.header(plan.reference)
            except Exception:  # unreadable (that becomes an error row later): counted safely meanwhile
                log.debug("no header for %s", plan.reference, exc_info=True)
        if head is None:
            return job.spec.max_image_tokens, 1, 0
        try:
            return estimate_tokens(head, job.spec, job.min_pixels, job.max_pixels), 0, 0
        except (ImageValidationError, ValueError):
            if plan.send is Send.PRESIGNED:  # the header was not in the range
                return job.spec.max_image_tokens, 1, 0
            return 0, 0, 0  # an inline image that does not decode becomes an error row

    total = unknown = cached = 0
    with ThreadPoolExecutor(max_workers=max(1, max_concurrency), thread_name_prefix="qwenocr-est") as pool:
        for t, u, c in pool.map(one, sources):
            total, unknown, cached = total + t, unknown + u, cached + c
    return total, unknown, cached


__all__ = ["MAX_FAILED_IN_SUMMARY", "MAX_FAILED_KEPT", "OcrJob", "OcrSummary", "RunSummary", "InFlight", "estimate_job_tokens", "process_one", "run"]


# Progress lines for long runs, throttled by time and not per image: a 50,000-image backlog logging every
# image buries the lines that matter (failures, the summary) and slows the task log viewer to a crawl.
class Progress:
    def __init__(
        self,
        total: int,
        log: logging.Logger | logging.LoggerAdapter,
        *,
        interval: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = total
        self.log = log
        self.interval = interval
        self.clock = clock
        self.done = self.failed = self.cached = 0
        self.started = clock()
        self._last = self.started

    def update(self, *, ok: bool, cached: bool = False) -> None:
        self.done += 1
        self.failed += 0 if ok else 1
        self.cached += 1 if cached else 0
        now = self.clock()
        if now - self._last >= self.interval or self.done == self.total:
            self._last = now
            self.log.info("%s", self.line(now))

    @property
    def rate(self) -> float:
        elapsed = self.clock() - self.started
        return self.done / elapsed if elapsed > 0 else 0.0

    def line(self, now: float | None = None) -> str:
        now = self.clock() if now is None else now
        elapsed = max(now - self.started, 1e-9)
        rate = self.done / elapsed
        remaining = self.total - self.done
        eta = f"{remaining / rate:,.0f}s" if rate > 0 and remaining else ("0s" if not remaining else "?")
        pct = 100.0 * self.done / self.total if self.total else 100.0
        return (
            f"OCR progress: {self.done}/{self.total} ({pct:.0f}%), {self.failed} failed, {self.cached} cached, "
            f"{rate:.2f} images/s, elapsed {elapsed:,.0f}s, ETA {eta}"
        )
