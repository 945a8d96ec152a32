"""QwenOcrOperator: OCR a folder, a glob, a list of URLs or an S3 prefix in realtime, results to JSONL.

Airflow glue only: templating, the task context, the output location, the XCom summary and the
failure policy. The per-image loop (read → hash → cache → prepare → recognise → row) is
:mod:`airflow_provider_qwenocr.runs.realtime`; HTTP and retries live in the client behind the hook.

Results never go through XCom: rows go to ``output_uri`` (one JSON line per image); XCom gets a small
dict (URI, counts, usage, cost, the first failures).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow_provider_qwenocr.exceptions import (
    QwenOcrAccountError,
    QwenOcrConfigError,
    QwenOcrFailedImagesError,
    QwenOcrNoSourcesError,
    QwenOcrServiceUnavailableError,
)
from airflow_provider_qwenocr.hooks.locations import cache_location, check_location, output_location, task_ids
from airflow_provider_qwenocr.lineage import publish_results_event
from airflow_provider_qwenocr.operators.base import QwenOcrBaseOperator

#: Seconds between progress lines in the task log.
PROGRESS_INTERVAL = 10.0

if TYPE_CHECKING:
    from airflow_provider_qwenocr.hooks.qwenocr import QwenOcrHook
    from airflow_provider_qwenocr.runs.realtime import OcrJob
    from airflow_provider_qwenocr.runs.sources import Source
    from airflow_provider_qwenocr.runs.summary import OcrSummary


class QwenOcrOperator(QwenOcrBaseOperator):
    """Recognise every image of ``images`` with Qwen-VL-OCR; write one JSON line per image to ``output_uri``.

    The arguments both OCR operators share (``images``, ``task``, ``prompt``, ``result_schema``, ``model``,
    ``min_pixels``, ``max_pixels``, ``output_uri``, ``cache_uri``, ``use_cache``, ``conn_id``,
    ``aws_conn_id``, ``token_budget``, ``image_transport``, ``max_failed_ratio``, ``emit_asset``) are
    documented on :class:`~airflow_provider_qwenocr.operators.base.QwenOcrBaseOperator`. A fixed
    ``output_uri`` file name shared by mapped instances would be overwritten: template it with
    ``{{ ti.map_index }}`` or give a folder. Here:

    :param enable_rotate: let the service correct rotated images (the Batch API cannot).
    :param max_concurrency: calls in flight at once (the connection's RPM/TPM limiter still applies).
    :param draw_boxes_uri: for ``advanced_recognition``, write ``<name>.boxes.png`` per image there.
    :param unit: ``"document"``: each file (a PDF, a multi-frame TIFF, an image) or each list of images inside
        ``images`` is one document — sent whole (``qwen3.5-ocr``: a PDF per request, split into ≤ 50-page
        parts) or several pages per request (older models), with one row per page AND one document row
        (``page`` null, ``pages`` = N, one key-information answer); ``"page"``: one request and one row per
        page. Default: ``"document"`` for models that read whole PDFs (``qwen3.5-ocr``), else ``"page"``
        (``runs/documents.py``).

    The circuit breaker (``circuit_breaker_failures`` / ``circuit_breaker_seconds``), retries and timeouts
    are connection extras; progress is logged every :data:`PROGRESS_INTERVAL` seconds.

    :return: the XCom summary of :class:`~airflow_provider_qwenocr.runs.summary.OcrSummary` (README "What the
        tasks return") — never the rows.

    With ``image_transport="url"`` the presigned URLs are valid for an hour and signed just before each
    call; PDF pages, TIFF frames and local files still go inline.

    Before the first call the operator validates everything that would fail for every image: the pixel
    bounds, the task and schema, the model name, that ``output_uri`` is a file (not an existing folder)
    and that ``output_uri``'s folder and ``cache_uri`` are writable (a probe object written and deleted).
    Leftover ``.part`` temp files of a killed run beside ``output_uri`` (and, older than an hour, in a local
    ``cache_uri``) are removed at the start.
    When the breaker opens, the task fails with :class:`QwenOcrServiceUnavailableError`; images not yet
    done get no row and no call, so the re-run sends exactly those (finished ones come from the cache).
    """

    template_fields: Sequence[str] = (*QwenOcrBaseOperator.template_fields, "draw_boxes_uri", "unit")
    ui_color = "#ff6a00"

    def __init__(
        self,
        *,
        enable_rotate: bool = False,
        max_concurrency: int = 8,
        draw_boxes_uri: str | None = None,
        unit: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if int(max_concurrency) < 1:
            raise QwenOcrConfigError(f"max_concurrency must be at least 1, not {max_concurrency!r}")
        self.enable_rotate = enable_rotate
        self.max_concurrency = max_concurrency
        self.draw_boxes_uri = check_location("draw_boxes_uri", draw_boxes_uri)
        self.unit = unit

    @cached_property
    def hook(self) -> QwenOcrHook:
        from airflow_provider_qwenocr.hooks.qwenocr import QwenOcrHook

        return QwenOcrHook(conn_id=self.conn_id, max_concurrency=max(1, int(self.max_concurrency)))

    # -- execution --------------------------------------------------------------------------------

    def execute(self, context: Any) -> dict[str, Any]:
        from airflow_provider_qwenocr.dashscope.errors import AccountError, ServiceUnavailableError, redact
        from airflow_provider_qwenocr.runs import realtime as runner
        from airflow_provider_qwenocr.runs.realtime import Progress
        from airflow_provider_qwenocr.runs.results_store import ResultCache, ResultsWriter
        from airflow_provider_qwenocr.runs.sources import NoSourcesError, expand_sources
        ids = task_ids(self, context)
        output_uri = output_location(self.output_uri, **ids)  # the rendered locations, before any connection
        cache_uri = cache_location(self.cache_uri, use_cache=self.use_cache, dag_id=ids["dag_id"])
        check_location("draw_boxes_uri", self.draw_boxes_uri)
        job = self._job()
        unit = self._unit(job)
        self._check_writable(output_uri, cache_uri)
        try:
            options = dict(aws_conn_id=self.aws_conn_id, fetch=self.fetch, max_pixels=job.request.bounds[1],
                           model=job.model, fetch_timeout=self.hook.config.timeout,
                           exclude=[output_uri, cache_uri, self.draw_boxes_uri])  # never our own outputs
            sources = expand_sources(_flat(self.images), **options)
        except NoSourcesError as exc:
            raise QwenOcrNoSourcesError(str(exc)) from exc
        self.results_uri = output_uri
        cache = ResultCache(cache_uri, aws_conn_id=self.aws_conn_id) if cache_uri else None
        if cache is not None and cache.remove_stale_parts():
            self.log.info("removed temp files a killed run left in the cache %s", cache_uri)
        self.log.info(
            "OCR of %d image(s): task=%s model=%s concurrency=%d -> %s (cache: %s)",
            len(sources), job.task, job.model, self.max_concurrency, output_uri, cache_uri if cache else "off",
        )
        if self.token_budget is not None:
            self._check_budget(sources, job, cache)

        client = self.hook.get_client()
        progress = Progress(len(sources), self.log, interval=PROGRESS_INTERVAL)
        documents: list[dict[str, Any]] | None = None
        try:
            with ResultsWriter(output_uri, aws_conn_id=self.aws_conn_id) as writer:
                if unit == "document":
                    summary, documents = self._run_documents(job, client, writer, cache, progress, options)
                else:
                    from airflow_provider_qwenocr.runs.documents import page_client

                    summary = runner.run(
                        sources, job, page_client(client, job.request), writer, cache=cache,
                        max_concurrency=self.max_concurrency, progress=progress, drawer=self._drawer(job),
                    )
        except AccountError as exc:
            raise QwenOcrAccountError(
                f"DashScope refused the account of connection {self.conn_id!r} ({exc.code}: {redact(exc.message, job.secret)}); "
                f"stopping the task, images not yet done stay unbilled for the re-run. To fix: {exc.hint}."
            ) from None
        except ServiceUnavailableError as exc:
            raise QwenOcrServiceUnavailableError(
                f"stopped after {progress.done} of {len(sources)} image(s): {redact(exc.message, job.secret)}. "
                f"Finished images are in the cache; nothing was published to {output_uri}. Re-run when "
                f"DashScope ({self.hook.config.root}) answers again."
            ) from None
        self._log_summary(summary, progress, output_uri)
        result = summary.to_xcom(output_uri, state="done")
        if documents is not None:  # a token/cost figure per document (None = unknown price, never 0)
            from airflow_provider_qwenocr.runs.documents import MAX_DOCUMENTS_IN_SUMMARY

            result["documents"] = documents[:MAX_DOCUMENTS_IN_SUMMARY]
        publish_results_event(self, context, result)
        from airflow_provider_qwenocr.runs.summary import failed_ratio_exceeded

        too_many = failed_ratio_exceeded(summary.n_failed, summary.n_images, float(self.max_failed_ratio))
        if too_many:
            raise QwenOcrFailedImagesError(f"{too_many}; results (incl. error rows) are in {output_uri}")
        return result

    def _job(self) -> OcrJob:
        from airflow_provider_qwenocr.runs.realtime import OcrJob

        config = self.hook.config
        return OcrJob(self.ocr_request(), secret=config.api_key, presigner=self._presigner())

    def _unit(self, job: OcrJob) -> str:
        from airflow_provider_qwenocr.runs.documents import resolve_unit

        try:
            return resolve_unit(self.unit, job.spec)
        except ValueError as exc:
            raise QwenOcrConfigError(str(exc)) from None

    def _run_documents(self, job: OcrJob, client: Any, writer: Any, cache: Any, progress: Any,
                       options: dict[str, Any]) -> tuple[Any, list]:
        """``unit="document"``: each document's pages and one document row (``runs/documents.py``)."""
        from airflow_provider_qwenocr.runs.documents import DocumentRun, expand_documents, run_documents

        if self.draw_boxes_uri:
            self.log.warning("draw_boxes_uri: box pictures are drawn per page image, with unit='page' only")
        docs = expand_documents(self.images, **options)
        run = DocumentRun(job.request, client, cache=cache, secret=job.secret)
        return run_documents(docs, run, writer, max_concurrency=self.max_concurrency, progress=progress)

    def _presigner(self) -> Any:
        """None inline; in URL mode a signer of short-lived URLs (realtime signs just before each call)."""
        if self.image_transport != "url":
            return None
        from airflow_provider_qwenocr.runs.presign import REALTIME_EXPIRY_SECONDS, Presigner

        return Presigner(aws_conn_id=self.aws_conn_id, expires_in=REALTIME_EXPIRY_SECONDS)

    def _check_writable(self, output_uri: str, cache_uri: str | None) -> None:
        """Fail before the first call when results or the cache could not be written (a probe write)."""
        import uuid

        from airflow_provider_qwenocr.runs import storage

        if storage.is_local(output_uri):
            target = storage.local_path(output_uri)
            if target.is_dir():
                raise QwenOcrConfigError(f"output_uri {output_uri!r} is an existing directory; give a file name, "
                                         "or end it with '/' to write <task_id>.jsonl inside it")
            for stale in storage.remove_stale_parts(output_uri):
                self.log.info("removed a temp file left by an earlier run: %s", stale)
        probes = [("output_uri", storage.join(storage.parent(output_uri), f".qwenocr-probe-{uuid.uuid4().hex}"))]
        if cache_uri:
            probes.append(("cache_uri", storage.join(cache_uri, f".qwenocr-probe-{uuid.uuid4().hex}")))
        for what, probe in probes:
            try:
                storage.probe_write(probe, aws_conn_id=self.aws_conn_id)
            except Exception as exc:
                from airflow_provider_qwenocr.dashscope.errors import describe

                where = output_uri if what == "output_uri" else cache_uri
                raise QwenOcrConfigError(f"{what} {where!r} is not writable ({describe(exc)}); nothing was "
                                         "sent" + ("; or set use_cache=False" if what == "cache_uri" else "")) from None

    def _check_budget(self, sources: list[Source], job: OcrJob, cache: Any) -> None:
        from airflow_provider_qwenocr.runs.realtime import estimate_job_tokens

        tokens, unknown, cached = estimate_job_tokens(sources, job, cache, self.max_concurrency)
        budget = int(self.token_budget)
        note = f" ({unknown} URL(s) counted at {job.spec.max_image_tokens} tokens each)" if unknown else ""
        self.log.info("Estimated image tokens: %d for %d uncached image(s)%s, %d cached; budget %d",
                      tokens, len(sources) - cached, note, cached, budget)
        if tokens > budget:
            raise QwenOcrConfigError(
                f"token_budget exceeded before any call: the {len(sources) - cached} uncached image(s) need "
                f"about {tokens:,} image tokens{note}, the budget is {budget:,}. Raise token_budget, lower "
                "max_pixels, or split the input."
            )

    def _drawer(self, job: OcrJob):
        if not self.draw_boxes_uri or job.task != "advanced_recognition":
            return None
        try:
            from airflow_provider_qwenocr.ocr import draw
        except ImportError:
            self.log.warning("draw_boxes_uri is set but box drawing is unavailable; no pictures written")
            return None
        from airflow_provider_qwenocr.runs import storage

        target, aws_conn_id = str(self.draw_boxes_uri), self.aws_conn_id

        def drawer(data: bytes, result: Any, src: Any) -> None:
            png = draw.draw_words(data, result.words or [])
            uri = storage.join(target, draw.boxed_name(src.uri, src.page))
            storage.write_bytes(uri, png, aws_conn_id=aws_conn_id)
            result.boxes_uri = uri  # the row says where its picture is

        return drawer

    def _log_summary(self, summary: OcrSummary, progress: Any, output_uri: str) -> None:
        from airflow_provider_qwenocr.runs.summary import cost_text

        usage = summary.usage
        self.log.info(
            "OCR done: %d image(s), %d ok, %d failed, %d from cache (not billed again) in %.1fs -> %s",
            summary.n_images, summary.n_ok, summary.n_failed, summary.n_cached,
            progress.clock() - progress.started, output_uri,
        )
        self.log.info("Usage this run: input %d, output %d, image %d tokens; %s", usage.input_tokens,
                      usage.output_tokens, usage.image_tokens, cost_text(summary.cost))
        if summary.failed:
            self.log.warning("%d image(s) failed:", summary.n_failed)
            for f in summary.failed:
                self.log.warning("  %s: %s: %s", f["source"], f["code"], f["error"])
            if summary.n_failed > len(summary.failed):
                self.log.warning("  ... and %d more (see error rows in %s)", summary.n_failed - len(summary.failed),
                                 output_uri)


def _flat(images: Any) -> Any:
    """``images`` with document groups (lists inside the list) flattened, for the page-by-page view."""
    if isinstance(images, (list, tuple)):
        return [i for entry in images for i in (entry if isinstance(entry, (list, tuple)) else [entry])]
    return images
