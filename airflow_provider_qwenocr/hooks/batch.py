"""Batch API methods of the hook, and the batch policy shared by the batch operator, sensor and trigger.

``BatchHookMixin`` is mixed into ``QwenOcrHook`` and reads ``self.config`` (a
:class:`~airflow_provider_qwenocr.dashscope.config.ClientConfig`), so files and batches use the same
``dashscope`` connection as realtime calls. Its methods are thin: the Batch API calls (files, batches,
cancel) over :mod:`..dashscope.batch`. The run itself — preparing images, the cache, the manifest, upload
and create, landing rows, deleting files — is :class:`airflow_provider_qwenocr.runs.batch.BatchRunner`,
which works on the batch client; :meth:`BatchHookMixin.batch_runner` only builds it.

Nothing here imports ``runs/`` at module level: the triggerer imports this module (through the trigger and
the hook) and must not load the run loops, OpenCV or numpy.

The shared policy (``evaluate_batch_counts``, ``validate_execute_complete_event`` …) is defined in
:mod:`.batch_policy` and re-exported here, so operator, sensor and trigger import it from the hook
module without importing each other.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cached_property
from typing import Any, BinaryIO

from airflow_provider_qwenocr.dashscope.batch import BatchClient, cancel_batches, delete_batch_files
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


def default_manifest_uri(output_uri: str) -> str:
    """Where the manifest goes unless told: beside the results (``r.jsonl`` → ``r.manifest.jsonl``).

    Operator and sensor both derive it this way, so a sensor given only ``output_uri`` finds it.
    """
    base = output_uri[: -len(".jsonl")] if output_uri.endswith(".jsonl") else output_uri
    return base + ".manifest.jsonl"


# -- the hook mixin -----------------------------------------------------------------------------------------

class BatchHookMixin:
    """Files, batches, their best-effort clean-up, and the batch runner of ``QwenOcrHook``."""

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

    def find_batches(self, **filters: Any) -> list[dict]:
        """Every batch matching the documented list filters (``ds_name``, ``statuses``, ``create_after``), all pages."""
        return self.batch_client.find_batches(**filters)

    def find_orphan_batches(self, *, dag_id: str | None = None, gone_runs: Iterable[str] | None = None,
                            gone: Any = None) -> list[dict]:
        """Running batches this provider created for a task instance that no longer waits for them.

        Found by their metadata with the documented list filters (the last 15 days: older batches have
        ended): a batch whose task instance has since submitted another request (cleared and re-run with
        other images or settings), or whose DAG run is in ``gone_runs`` (run ids, e.g. deleted runs — the
        service cannot see Airflow's runs, so only the caller can say), or for which ``gone(identity, batch)``
        is true. ``dag_id`` limits the search to one DAG. Nothing is cancelled: see
        :meth:`cancel_orphan_batches`.
        """
        from airflow_provider_qwenocr.runs.orphans import find_orphans

        runs = set(gone_runs or ())

        def is_gone(identity: Any, batch: dict) -> bool:
            return (identity is not None and identity.run_id in runs) or bool(gone and gone(identity, batch))

        return find_orphans(self.batch_client, dag_id=dag_id, gone=is_gone)

    def cancel_orphan_batches(self, *, dag_id: str | None = None, gone_runs: Iterable[str] | None = None,
                              gone: Any = None) -> list[str]:
        """Cancel what :meth:`find_orphan_batches` finds; returns the ids a cancel was sent for (best effort)."""
        orphans = self.find_orphan_batches(dag_id=dag_id, gone_runs=gone_runs, gone=gone)
        return self.cancel_batches(b["id"] for b in orphans)

    def cancel_batches(self, batch_ids: Iterable[str]) -> list[str]:
        """Best-effort cancel of every non-terminal batch; returns the ids a cancel was sent for (never raises)."""
        return cancel_batches(self.batch_client, batch_ids)

    def delete_batch_files(self, batches: Iterable[dict[str, Any]]) -> list[str]:
        """Best-effort delete of every file a batch used or produced; returns the ids deleted."""
        return delete_batch_files(self.batch_client, batches)

    # -- the run ---------------------------------------------------------------------------------------
    def batch_runner(self, *, aws_conn_id: str | None = "aws_default", cache_uri: str | None = None,
                     prepare_workers: int = 4) -> Any:
        """A :class:`~airflow_provider_qwenocr.runs.batch.BatchRunner` on this connection's batch client.

        Refuses (``BatchRegionError``) a region without OCR batch before anything is prepared.
        """
        from airflow_provider_qwenocr.runs.batch import BatchRunner

        return BatchRunner(self.batch_client, aws_conn_id=aws_conn_id, cache_uri=cache_uri,
                           prepare_workers=prepare_workers)
