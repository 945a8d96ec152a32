"""Batch API methods of the hook, and the batch policy shared by the batch operator, sensor and trigger.

``BatchHookMixin`` is mixed into ``QwenOcrHook`` and reads ``self.config`` (a
:class:`~airflow_provider_qwenocr.dashscope.config.ClientConfig`), so files and batches use the same
``dashscope`` connection as realtime calls. It holds no HTTP (:mod:`..dashscope.batch`) and no parsing
(:mod:`..dashscope.batch_jsonl`, :mod:`..dashscope.batch_results`): it wires sources, storage and client.

The shared policy (``evaluate_batch_counts``, ``validate_execute_complete_event`` …) is defined in
:mod:`.batch_policy` and re-exported here, so operator, sensor and trigger import it from the hook
module without importing each other.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import cached_property
from typing import Any, BinaryIO

from airflow_provider_qwenocr.dashscope.batch import BatchClient, BatchStatus, normalize_completion_window
from airflow_provider_qwenocr.dashscope.batch_jsonl import (
    BatchBuilder,
    BatchLimits,
    ManifestEntry,
    Prepared,
    dump_manifest,
    load_manifest,
)
from airflow_provider_qwenocr.dashscope.batch_results import index_lines, results_for
from airflow_provider_qwenocr.hooks.batch_policy import (  # noqa: F401 - the shared policy, importable from here
    EVENT_REASONS,
    EVENT_STATUSES,
    BatchVerdict,
    compact_batch,
    evaluate_batch_counts,
    failed_ratio_exceeded,
    resolve_max_failed_ratio,
    skip_exception,
    validate_execute_complete_event,
)
from airflow_provider_qwenocr.ocr.results import Usage, add_cost, new_cost_total

log = logging.getLogger(__name__)

MAX_FAILED_LISTED = 20  # sources of failed rows named in the XCom summary; the rest are in the results file


def default_manifest_uri(output_uri: str) -> str:
    """Where the manifest goes unless told: beside the results (``r.jsonl`` → ``r.manifest.jsonl``).

    Operator and sensor both derive it this way, so a sensor given only ``output_uri`` finds it.
    """
    base = output_uri[: -len(".jsonl")] if output_uri.endswith(".jsonl") else output_uri
    return base + ".manifest.jsonl"


# -- the hook mixin -----------------------------------------------------------------------------------------

class BatchHookMixin:
    """Files, batches and the submit/land helpers of ``QwenOcrHook``."""

    config: Any  # ClientConfig, provided by QwenOcrHook

    @cached_property
    def batch_client(self) -> BatchClient:
        """Refuses (``BatchRegionError``) when the connection's region has no OCR batch and no custom URL."""
        return BatchClient(self.config)

    # files
    def upload_file(self, content: bytes | BinaryIO, filename: str = "requests.jsonl", purpose: str = "batch") -> dict:
        return self.batch_client.upload_file(content, filename, purpose)

    def get_file(self, file_id: str) -> dict:
        return self.batch_client.get_file(file_id)

    def file_content(self, file_id: str) -> bytes:
        return self.batch_client.file_content(file_id)

    def delete_file(self, file_id: str) -> dict:
        return self.batch_client.delete_file(file_id)

    # batches
    def create_batch(self, input_file_id: str, *, metadata: dict[str, str] | None = None,
                     completion_window: Any = "24h") -> dict:
        return self.batch_client.create_batch(input_file_id, metadata=metadata, completion_window=completion_window)

    def get_batch(self, batch_id: str) -> dict:
        return self.batch_client.get_batch(batch_id)

    def get_batches(self, batch_ids: Iterable[str]) -> list[dict]:
        return [self.batch_client.get_batch(b) for b in batch_ids]

    def list_batches(self, **filters: Any) -> dict:
        return self.batch_client.list_batches(**filters)

    def cancel_batch(self, batch_id: str) -> dict:
        return self.batch_client.cancel_batch(batch_id)

    def cancel_batches(self, batch_ids: Iterable[str]) -> list[str]:
        """Best-effort cancel of every non-terminal batch; returns the ids a cancel was sent for.

        Never raises: it runs on timeout, error and kill paths where the original problem must surface.
        """
        sent = []
        for bid in batch_ids:
            try:
                if BatchStatus.of(self.get_batch(bid)).is_terminal:
                    continue
                self.cancel_batch(bid)
                sent.append(bid)
            except Exception as exc:  # keep cancelling the others
                log.warning("could not cancel batch %s: %s", bid, exc)
        if sent:
            log.warning("cancelled batch(es) %s (requests that already completed are still billed)", sent)
        return sent

    # submit / land
    def submit_ocr_batch(
        self,
        sources: Iterable[Any],
        *,
        task: str = "text_recognition",
        prompt: str | None = None,
        result_schema: dict | str | None = None,
        model: str | None = None,
        min_pixels: int | None = None,
        max_pixels: int | None = None,
        manifest_uri: str,
        metadata: dict[str, str] | None = None,
        limits: BatchLimits | None = None,
        aws_conn_id: str | None = "aws_default",
        on_batch_created: Callable[[list[str]], None] | None = None,
        cache_uri: str | None = None,
        prepare_workers: int = 4,
        fetch: bool = False,
        token_budget: int | None = None,
        completion_window: Any = "24h",
        image_transport: str = "inline",
    ) -> dict[str, Any]:
        """Prepare every source, write the manifest, upload the JSONL part(s) and create one batch per part.

        ``sources`` are ``io.sources.Source`` objects or ``(name, bytes)`` pairs. The manifest is written
        *before* anything billable starts, so results can always be rebuilt. If creating a later part
        fails, the batches already created are cancelled before the error propagates: a half-submitted
        run must not keep billing behind a failed task. ``on_batch_created`` receives the ids so far
        after every creation (the operator pushes them to XCom at once). With ``cache_uri``, images whose
        result is already cached (same key as realtime) are not sent: a re-run pays only for what is new.
        http(s) sources go to the service as URLs unless ``fetch`` (then they are downloaded and prepared).
        ``token_budget`` refuses (``ValueError``, nothing uploaded) when the estimated image tokens exceed it.
        ``completion_window`` ("24h"–"336h", int hours or timedelta) is checked before anything is prepared.
        ``image_transport="url"`` sends object-store sources (``s3://`` …) as presigned URLs valid past the
        completion window instead of base64 images (``io/presign.py`` says what that trades).
        """
        from airflow_provider_qwenocr.io import storage

        cache = None
        if cache_uri:
            from airflow_provider_qwenocr.io.results_store import ResultCache

            cache = ResultCache(cache_uri, aws_conn_id=aws_conn_id)

        completion_window = normalize_completion_window(completion_window)  # refuse before any upload
        presigner = _presigner(image_transport, token_budget, aws_conn_id, completion_window)
        self.batch_client  # noqa: B018 - refuse a region without OCR batch before preparing anything
        model = model or self.config.default_model
        builder = BatchBuilder(task=task, model=model, prompt=prompt, result_schema=result_schema,
                               min_pixels=min_pixels, max_pixels=max_pixels, limits=limits)
        batch_ids: list[str] = []
        file_ids: list[str] = []
        try:
            for add in _prepared(builder, sources, cache, prepare_workers, fetch=fetch, presigner=presigner):
                add()
            plan = builder.build()
            if token_budget is not None and plan.image_tokens > token_budget:
                raise ValueError(f"estimated {plan.image_tokens:,} image tokens for {plan.n_requests} request(s) "
                                 f"exceed token_budget={token_budget:,}; nothing was submitted")
            storage.write_bytes(manifest_uri, dump_manifest(plan.manifest).encode("utf-8"), aws_conn_id=aws_conn_id)
            n = len(plan.parts)
            try:
                for i, part in enumerate(plan.parts, start=1):
                    with part.open() as fh:
                        f = self.upload_file(fh, filename=f"qwenocr-{plan.task}-{i}of{n}.jsonl")
                    file_ids.append(f["id"])
                    meta = {"ds_name": f"qwenocr {plan.task}",
                            "ds_description": f"part {i}/{n}, model {plan.model}", **(metadata or {})}
                    batch = self.create_batch(f["id"], metadata=meta, completion_window=completion_window)
                    batch_ids.append(batch["id"])
                    log.info("created batch %s (part %d/%d, input file %s)", batch["id"], i, n, f["id"])
                    if on_batch_created:
                        on_batch_created(list(batch_ids))
            except BaseException:
                self.cancel_batches(batch_ids)
                raise
        finally:
            builder.cleanup()  # the spooled parts (base64 images) never outlive the submit
        return {
            "batch_ids": batch_ids, "input_file_ids": file_ids, "manifest_uri": manifest_uri,
            "model": plan.model, "task": plan.task, "n_images": plan.n_images, "n_requests": plan.n_requests,
            "n_rejected": len(plan.rejected), "n_cached": plan.n_cached, "image_tokens": plan.image_tokens,
        }

    def download_batch_results(
        self,
        batch_ids: list[str],
        *,
        output_uri: str,
        manifest_uri: str | None = None,
        batches: list[dict] | None = None,
        aws_conn_id: str | None = "aws_default",
        cache_uri: str | None = None,
        delete_files: bool = False,
    ) -> dict[str, Any]:
        """Download output + error files of terminal batches and write result rows at ``output_uri``.

        Rows are the realtime rows (``source, sha256, task, model, status, text, kv, words, usage, error``
        …) with batch prices in ``cost``. Without a manifest, rows are keyed by ``custom_id`` only (no
        source name, no box rescaling). Returns the XCom summary: URI, counts, usage, cost — never rows.
        Rows served from the cache count in ``n_cached`` and add no usage/cost (they were paid before);
        with ``cache_uri`` new ``ok`` rows are cached for the next run. ``delete_files`` removes the input,
        output and error files from the account once the rows are safely written (the input files hold the
        base64 images; account file storage is limited).
        """
        from airflow_provider_qwenocr.io import storage
        from airflow_provider_qwenocr.io.results_store import ResultCache, ResultsWriter

        cache = ResultCache(cache_uri, aws_conn_id=aws_conn_id) if cache_uri else None

        batches = batches if batches is not None else self.get_batches(batch_ids)
        contents = [self.file_content(fid) for b in batches
                    for fid in (b.get("output_file_id"), b.get("error_file_id")) if fid]
        lines = index_lines(*contents)
        manifest: list[ManifestEntry] | None = None
        if manifest_uri:
            raw = storage.read_bytes(manifest_uri, aws_conn_id=aws_conn_id)
            manifest = load_manifest(raw.decode("utf-8")) if raw is not None else None
            if manifest is None:
                log.warning("manifest %s not found: rows will be keyed by custom_id only", manifest_uri)
        if manifest is None:
            manifest = [_entry_from_line(cid, line) for cid, line in lines.items()]
        ended = ", ".join(f"{b.get('id')}={b.get('status')}" for b in batches)
        summary = _Summary()
        cached = {e.custom_id for e in manifest if e.cached is not None}
        with ResultsWriter(output_uri, aws_conn_id=aws_conn_id) as writer:
            for result in results_for(manifest, lines, region=self.config.region,
                                      missing_reason=f"no output for this request (batches: {ended})"):
                writer.write(result)
                from_cache = result.key in cached
                summary.add(result, cached=from_cache)
                if cache is not None and result.ok and not from_cache:
                    cache.put(result)
        if delete_files:  # only after the writer published the rows
            self.delete_batch_files(batches)
        return summary.to_xcom(output_uri, batch_ids, manifest_uri)

    def delete_batch_files(self, batches: Iterable[dict[str, Any]]) -> list[str]:
        """Best-effort delete of every file a batch used or produced; returns the ids deleted."""
        deleted = []
        for b in batches:
            for fid in (b.get("input_file_id"), b.get("output_file_id"), b.get("error_file_id")):
                if not fid:
                    continue
                try:
                    self.delete_file(fid)
                    deleted.append(fid)
                except Exception as exc:  # rows are landed; a leftover file is not fatal
                    log.warning("could not delete file %s: %s", fid, exc)
        return deleted


def _presigner(image_transport: str, token_budget: int | None, aws_conn_id: str | None,
               completion_window: str = "24h"):
    """None for inline; for "url" a Presigner whose URLs outlive ``completion_window`` (refused, before
    anything is read or uploaded, when S3 cannot sign that long)."""
    from airflow_provider_qwenocr.io.presign import Presigner, check_transport, expiry_seconds

    if check_transport(image_transport) == "inline":
        return None
    if token_budget is not None:
        raise ValueError("token_budget cannot be checked with image_transport='url': the images are not read")
    return Presigner(aws_conn_id=aws_conn_id, expires_in=expiry_seconds(completion_window))


def _prepared(builder: BatchBuilder, sources: Iterable[Any], cache: Any, workers: int, *,
              fetch: bool = False, presigner: Any = None) -> Iterator[Callable[[], Any]]:
    """Read + hash + cache-check + resize/encode sources in a small thread pool; yield in-order "add" steps.

    Pillow and hashlib release the GIL, so a few threads prepare several images at once; a bounded window
    of futures keeps memory flat however many sources there are. Adding to the builder stays on this thread.
    """
    def work(src: Any) -> Callable[[], Any]:
        if isinstance(src, tuple):
            name, data = src
            item = builder.prepare(data, cache=cache)
            return lambda: builder.add_prepared(str(name), item)
        name = getattr(src, "name", None) or src.uri
        page = getattr(src, "page", None)
        if getattr(src, "error", None):
            return lambda: builder.reject(name, "InvalidSource", str(src.error), page=page)
        if getattr(src, "is_remote_url", False) and not fetch:
            return lambda: builder.add_url(src.uri, page=page)
        if presigner is not None and page is None and presigner.supports(src.uri):  # a PDF page goes inline
            key = builder.url_key(src.uri)
            hit = cache.get(key) if cache is not None else None
            if hit and hit.get("status") == "ok":
                return lambda: builder.add_prepared(name, Prepared(None, key, cached=hit))
            url = presigner.url(src.uri)
            if url is not None:
                return lambda: builder.add_url(url, source=name, key_uri=src.uri)
        try:
            data = src.read()
        except Exception as exc:  # an unreadable source is an error row, not a crash
            message = f"{type(exc).__name__}: {exc}"
            return lambda: builder.reject(name, "SourceReadError", message, page=page)
        item = builder.prepare(data, cache=cache)
        return lambda: builder.add_prepared(name, item, page=page)

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


class _Summary:
    def __init__(self) -> None:
        self.n_images = self.n_ok = self.n_failed = self.n_cached = 0
        self.usage = Usage()
        self.cost: dict[str, Any] = new_cost_total()
        self.failed: list[dict[str, str]] = []

    def add(self, result: Any, *, cached: bool = False) -> None:
        self.n_images += 1
        if cached:
            self.n_ok += 1
            self.n_cached += 1
            return
        self.usage = self.usage + result.usage
        add_cost(self.cost, result.cost)  # an unknown price stays None, never a wrong 0
        if result.ok:
            self.n_ok += 1
        else:
            self.n_failed += 1
            if len(self.failed) < MAX_FAILED_LISTED:
                self.failed.append({"source": result.source, "code": result.error.code if result.error else "?"})

    def to_xcom(self, uri: str, batch_ids: list[str], manifest_uri: str | None) -> dict[str, Any]:
        return json.loads(json.dumps({
            "results_uri": uri, "manifest_uri": manifest_uri, "batch_ids": list(batch_ids),
            "n_images": self.n_images, "n_ok": self.n_ok, "n_failed": self.n_failed, "n_cached": self.n_cached,
            "usage": self.usage.to_dict(), "cost": self.cost, "failed": self.failed,
        }))
