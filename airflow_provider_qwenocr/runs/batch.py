"""The batch OCR run, beside the realtime runner: prepare → manifest → upload + create → … → land rows.

Why not in the hook: preparing images in a thread pool, cache lookups, writing the manifest and the rows
and deleting files are the *run*, not the connection. Here they are plain Python over a batch ``client``
(a :class:`~airflow_provider_qwenocr.dashscope.batch.BatchClient`, or anything with its calls —
``upload_file``, ``create_batch``, ``get_batch``, ``cancel_batch``, ``file_content``, ``delete_file`` —
and its ``config``, whose region and prices price the rows), so they are tested without Airflow. The hook
only builds the runner (``QwenOcrHook.batch_runner``); the run never calls the hook back.

Cost safety: the manifest is written *before* anything billable starts (results can always be rebuilt),
and if creating a later part fails, the batches already created are cancelled before the error
propagates — a half-submitted run must not keep billing behind a failed task.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_qwenocr.dashscope.batch import cancel_batches, delete_batch_files, normalize_completion_window
from airflow_provider_qwenocr.dashscope.batch_jsonl import (
    BatchBuilder,
    BatchLimits,
    ManifestEntry,
    dump_manifest,
    load_manifest,
)
from airflow_provider_qwenocr.dashscope.batch_results import index_lines, results_for
from airflow_provider_qwenocr.ocr.plan import plan_bytes, plan_source
from airflow_provider_qwenocr.ocr.request import OcrRequest
from airflow_provider_qwenocr.runs import storage
from airflow_provider_qwenocr.runs.batch_parts import create_batches
from airflow_provider_qwenocr.runs.reattach import TaskIdentity
from airflow_provider_qwenocr.runs.results_store import ResultCache, ResultsWriter
from airflow_provider_qwenocr.runs.summary import OcrSummary

log = logging.getLogger(__name__)


@dataclass
class Submission:
    """What a submit created: the batches and files, and the manifest's counts (nothing landed yet)."""

    batch_ids: list[str]
    input_file_ids: list[str]
    manifest_uri: str
    model: str
    task: str
    n_images: int
    n_requests: int
    n_rejected: int
    n_cached: int
    image_tokens: int
    manifest: list[ManifestEntry] = field(default_factory=list, repr=False)
    created: list[str] = field(default_factory=list)  # by this submit; the others in batch_ids were re-attached
    credited: list[str] = field(default_factory=list)  # re-attached, ended unsuccessfully (reattach.credit)

    def summary(self, results_uri: str) -> dict[str, Any]:
        """The XCom summary of ``wait_for_completion=False`` (``state="submitted"``): cache hits are ok,
        images rejected before submission failed, and the bill of the requests sent is not known yet."""
        s = OcrSummary()
        for entry in self.manifest:
            for source in (entry.source, *entry.duplicates):
                s.n_images += 1
                if entry.error is not None:
                    s.add_failure(source, entry.error.get("code", "?"), entry.error.get("message", ""))
                elif entry.cached is not None:
                    s.n_ok, s.n_cached = s.n_ok + 1, s.n_cached + 1
        s.cost_pending(self.n_requests)
        return s.to_xcom(results_uri, batch_ids=self.batch_ids, manifest_uri=self.manifest_uri, state="submitted")


class SubmitRefused(ValueError):
    """The submit was refused before anything was uploaded (token budget, budget with URL transport).

    A ``ValueError`` in the core; the batch operator raises it as ``QwenOcrConfigError``."""


def presigner_for(image_transport: str, token_budget: int | None, aws_conn_id: str | None,
                  completion_window: str = "24h") -> Any:
    """None for "inline" and "fetch"; for "url" a Presigner whose URLs outlive ``completion_window`` (refused, before
    anything is read or uploaded, when S3 cannot sign that long)."""
    from airflow_provider_qwenocr.runs.presign import Presigner, check_transport, expiry_seconds

    if check_transport(image_transport) != "url":
        return None
    if token_budget is not None:
        raise SubmitRefused("token_budget cannot be checked with image_transport='url': the images are not read")
    return Presigner(aws_conn_id=aws_conn_id, expires_in=expiry_seconds(completion_window))


def prepared_steps(builder: BatchBuilder, sources: Iterable[Any], cache: Any, workers: int, *,
                   presigner: Any = None) -> Iterator[Callable[[], Any]]:
    """Plan (``ocr.plan``: read, hash, sign) + cache-check + resize/encode sources in a small thread pool;
    yield in-order "add" steps. ``sources`` are ``runs.sources.Source`` objects or ``(name, bytes)`` pairs.

    Pillow and hashlib release the GIL, so a few threads prepare several images at once; a bounded window
    of futures keeps memory flat however many sources there are. Adding to the builder stays on this thread.
    """
    request = builder.request

    def work(src: Any) -> Callable[[], Any]:
        if isinstance(src, tuple):
            plan = plan_bytes(str(src[0]), src[1], request)
        else:
            plan = plan_source(src, request, presigner=presigner)
        item = builder.prepare(plan, cache=cache)
        return lambda: builder.add(item)

    window = max(1, workers) * 4
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="qwenocr-batch-prep") as pool:
        pending: list = []
        for src in sources:
            pending.append(pool.submit(work, src))
            if len(pending) >= window:
                yield pending.pop(0).result()
        for future in pending:
            yield future.result()


def _entry_from_line(custom_id: str, line: dict[str, Any]) -> ManifestEntry:
    body = ((line.get("response") or {}).get("body") or {})
    return ManifestEntry(custom_id=custom_id, source=custom_id, task="custom", model=body.get("model") or "unknown")


class BatchRunner:
    """Submit and land batch OCR runs through a batch ``client`` (see the module docstring).

    :param client: the Batch API calls and the connection's ``config`` (landed rows are priced at
        ``config.price_of(model)``: the connection's prices, else the region's batch list price).
    :param aws_conn_id: for ``s3://`` manifests, results, caches and presigning.
    :param cache_uri: the result cache shared with realtime (same keys); None = no cache.
    :param prepare_workers: threads preparing images (decode, resize, encode) while the input file is built.
    """

    def __init__(self, client: Any, *, aws_conn_id: str | None = None, cache_uri: str | None = None,
                 prepare_workers: int = 4) -> None:
        self.client = client
        self.aws_conn_id = aws_conn_id
        self.cache = ResultCache(cache_uri, aws_conn_id=aws_conn_id) if cache_uri else None
        self.prepare_workers = max(1, int(prepare_workers))

    def submit(self, sources: Iterable[Any], request: OcrRequest, *, manifest_uri: str,
               metadata: dict[str, str] | None = None, limits: BatchLimits | None = None,
               on_batch_created: Callable[[list[str]], None] | None = None, token_budget: int | None = None,
               completion_window: Any = "24h", image_transport: str = "inline",
               identity: TaskIdentity | None = None, recorded: Sequence[str] = (), lookup: bool = True) -> Submission:
        """Prepare every source, write the manifest, upload the JSONL part(s) and create one batch per part.

        ``sources`` are ``runs.sources.Source`` objects or ``(name, bytes)`` pairs. ``on_batch_created``
        receives the ids so far after every creation (the operator pushes them to XCom at once). Cached
        images are not sent. http(s) sources go to the service as URLs unless ``request.fetch``.
        ``token_budget`` refuses (``SubmitRefused``, a ValueError; nothing uploaded) when the estimated image tokens exceed it;
        ``completion_window`` ("24h"–"336h") is checked before anything is prepared;
        ``image_transport="url"`` sends object-store sources as presigned URLs valid past the window.
        ``identity`` (the task instance) turns on re-attach: the batches it already created for these lines
        (found by metadata, and ``recorded`` ids) are waited for instead of paid again
        (:mod:`.batch_parts`, :mod:`.reattach`); ``lookup=False`` skips the list call on a first try.
        """
        completion_window = normalize_completion_window(completion_window)  # refuse before any upload
        presigner = presigner_for(image_transport, token_budget, self.aws_conn_id, completion_window)
        builder = BatchBuilder(request=request, limits=limits)
        try:
            for add in prepared_steps(builder, sources, self.cache, self.prepare_workers, presigner=presigner):
                add()
            plan = builder.build()
            if token_budget is not None and plan.image_tokens > token_budget:
                raise SubmitRefused(f"estimated {plan.image_tokens:,} image tokens for {plan.n_requests} request(s) "
                                 f"exceed token_budget={token_budget:,}; nothing was submitted")
            storage.write_bytes(manifest_uri, dump_manifest(plan.manifest).encode("utf-8"),
                                aws_conn_id=self.aws_conn_id)
            created = create_batches(self.client, plan, identity=identity, recorded=recorded, metadata=metadata,
                                     completion_window=completion_window, on_batch_created=on_batch_created,
                                     cancel=cancel_batches, lookup=lookup)
        finally:
            builder.cleanup()  # the spooled parts (base64 images) never outlive the submit
        return Submission(batch_ids=created.batch_ids, input_file_ids=created.input_file_ids,
                          manifest_uri=manifest_uri, model=plan.model, task=plan.task, n_images=plan.n_images,
                          n_requests=plan.n_requests, n_rejected=len(plan.rejected), n_cached=plan.n_cached,
                          image_tokens=plan.image_tokens, manifest=plan.manifest, created=created.created,
                          credited=created.credited)

    def land(self, batch_ids: list[str], *, output_uri: str, manifest_uri: str | None = None,
             batches: list[dict] | None = None, delete_files: bool = False) -> OcrSummary:
        """Download output + error files of terminal batches and write one result row per image at ``output_uri``.

        Rows are the realtime rows with batch prices in ``cost``. Without a manifest, rows are keyed by
        ``custom_id`` only (no source name, no box rescaling). Rows served from the cache count in
        ``n_cached`` and add no usage/cost (they were paid before); new ``ok`` rows are cached for the next
        run. ``delete_files`` removes the input, output and error files from the account once the rows are
        safely written (the input files hold the base64 images; account file storage is limited).
        """
        batches = batches if batches is not None else [self.client.get_batch(b) for b in batch_ids]
        contents = [self.client.file_content(fid) for b in batches
                    for fid in (b.get("output_file_id"), b.get("error_file_id")) if fid]
        lines = index_lines(*contents)
        manifest: list[ManifestEntry] | None = None
        if manifest_uri:
            raw = storage.read_bytes(manifest_uri, aws_conn_id=self.aws_conn_id)
            manifest = load_manifest(raw.decode("utf-8")) if raw is not None else None
            if manifest is None:
                log.warning("manifest %s not found: rows will be keyed by custom_id only", manifest_uri)
        if manifest is None:
            manifest = [_entry_from_line(cid, line) for cid, line in lines.items()]
        ended = ", ".join(f"{b.get('id')}={b.get('status')}" for b in batches)
        summary = OcrSummary()
        cached = {e.custom_id for e in manifest if e.cached is not None}
        landed: set[str | None] = set()
        with ResultsWriter(output_uri, aws_conn_id=self.aws_conn_id) as writer:
            for result in results_for(manifest, lines, price_of=self.client.config.price_of,
                                      missing_reason=f"no output for this request (batches: {ended})"):
                writer.write(result)
                duplicate = result.key in landed  # the same key under another name: one request, billed once
                landed.add(result.key)
                from_cache = result.key in cached or (duplicate and result.ok)
                summary.add(result, cached=from_cache)
                if self.cache is not None and result.ok and not from_cache:
                    self.cache.put(result)
        if delete_files:  # only after the writer published the rows
            delete_batch_files(self.client, batches)
        return summary
