"""Assets and OpenLineage facets for OCR work.

**Assets** (Datasets on Airflow 2.x): every OCR operator that lands result rows declares one outlet,
``qwenocr://<dag_id>/<task_id>`` (:func:`ocr_asset`). The name is stable across runs on purpose: outputs
are templated per run, so an asset named after the results file could never be scheduled on. A downstream
DAG schedules on ``ocr_asset("<dag_id>", "<task_id>")`` and finds the run's file in the event's extra
(``results_uri``, counts), e.g. ``triggering_asset_events`` / ``inlet_events``.

**OpenLineage** facets for OCR work: inputs = the document sources, outputs = the results file / warehouse table.

Why lazy: the openlineage provider is optional. Operators call :func:`operator_lineage` from their
``get_openlineage_facets_on_complete``; when the provider (or its client library) is missing it returns
``None`` and nothing else is imported, so the provider works the same without it.

Why inputs are collapsed: a run over 50,000 scans would otherwise emit 50,000 input datasets per event.
Past :data:`MAX_INPUT_DATASETS` sources, inputs are reported per directory / S3 prefix instead of per file
(the OpenLineage naming spec allows a directory as a dataset name).

Names follow the OpenLineage naming spec: ``s3://bucket`` + key, ``file`` + absolute path,
``https://host`` + path, ``sqlite:<abs path of the db>`` / ``postgres://host:port`` + ``db.schema.table``.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

MAX_INPUT_DATASETS = 100


def dataset_id(uri: str) -> tuple[str, str]:
    """(namespace, name) of a file-like URI or local path."""
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme in ("", "file") or (len(scheme) == 1 and os.name == "nt"):
        path = parts.path if scheme == "file" else uri
        return "file", os.path.abspath(path)
    if scheme in ("s3", "s3a", "s3n"):
        return f"s3://{parts.netloc}", parts.path.lstrip("/")
    if scheme in ("gs", "gcs"):
        return f"gs://{parts.netloc}", parts.path.lstrip("/")
    if scheme in ("http", "https"):
        return f"{scheme}://{parts.netloc}", parts.path or "/"
    return f"{scheme}://{parts.netloc}", parts.path.lstrip("/")


def table_id(conn_type: str, *, host: str | None = None, port: int | None = None, database: str | None = None,
             schema: str | None = None, table: str) -> tuple[str, str]:
    """(namespace, name) of a warehouse table. SQLite: ``host`` is the database file path."""
    conn_type = (conn_type or "").lower()
    if conn_type == "sqlite":
        return f"sqlite:{os.path.abspath(host or ':memory:')}", table
    namespace = f"{conn_type}://{host or 'localhost'}" + (f":{port}" if port else "")
    name = ".".join(p for p in (database, schema, table) if p)
    return namespace, name


def collapse(ids: Iterable[tuple[str, str]], limit: int = MAX_INPUT_DATASETS) -> list[tuple[str, str]]:
    """Distinct ids; when more than ``limit``, one per parent directory / prefix instead."""
    unique = list(dict.fromkeys(ids))
    if len(unique) <= limit:
        return unique
    return list(dict.fromkeys((ns, posixpath.dirname(name) or "/") for ns, name in unique))


def operator_lineage(inputs: Iterable[str], outputs: Iterable[str | tuple[str, str]] = (),
                     *, output_fields: Iterable[tuple[str, str]] = ()) -> Any:
    """An ``OperatorLineage`` (or None without the openlineage provider).

    ``inputs``: source URIs/paths. ``outputs``: URIs, or ``(namespace, name)`` pairs from :func:`table_id`.
    ``output_fields``: ``(column, type)`` pairs added as a schema facet on table outputs.
    """
    try:
        from airflow.providers.common.compat.openlineage.facet import (
            Dataset,
            SchemaDatasetFacet,
            SchemaDatasetFacetFields,
        )
        from airflow.providers.openlineage.extractors import OperatorLineage
    except ImportError:
        return None
    fields = list(output_fields)
    in_ds = [Dataset(namespace=ns, name=name) for ns, name in collapse(dataset_id(u) for u in inputs)]
    out_ds = []
    for out in outputs:
        ns, name = out if isinstance(out, tuple) else dataset_id(out)
        facets = {}
        if fields and isinstance(out, tuple):
            facets["schema"] = SchemaDatasetFacet(
                fields=[SchemaDatasetFacetFields(name=c, type=t) for c, t in fields])
        out_ds.append(Dataset(namespace=ns, name=name, facets=facets))
    return OperatorLineage(inputs=in_ds, outputs=out_ds)


def _entries(images: Any) -> list[str]:
    if images is None:
        return []
    if isinstance(images, (str, os.PathLike)):
        return [os.fspath(images)]
    return [os.fspath(i) if isinstance(i, os.PathLike) else str(i) for i in images]


def ocr_operator_lineage(operator: Any, task_instance: Any = None) -> Any:
    """Lineage of an OCR operator after it ran: its ``images`` entries (as given: files, directories, S3
    prefixes — not re-listed, which could be slow) → its results file (``results_uri`` or ``output_uri``)."""
    outputs = [u for u in (getattr(operator, "results_uri", None) or getattr(operator, "output_uri", None),) if u]
    return operator_lineage(_entries(getattr(operator, "images", None)), outputs)


def ocr_asset(dag_id: str, task_id: str) -> Any:
    """The Asset (Dataset on 2.x) announcing new results of one OCR task; see the module docstring."""
    from airflow.providers.common.compat.sdk import Asset

    return Asset(uri=f"qwenocr://{dag_id}/{task_id}")


def declare_results_asset(operator: Any) -> Any:
    """Add the task's results asset to ``operator.outlets`` (once); None when the task has no DAG yet.

    Called from the operators' ``__init__``: outlets must be known when the DAG is parsed, so that the
    scheduler links the producing task to the DAGs scheduled on the asset.
    """
    if not operator.has_dag():
        return None
    asset = ocr_asset(operator.dag_id, operator.task_id)
    outlets = list(operator.outlets or [])
    if asset not in outlets:
        operator.outlets = [*outlets, asset]
    return asset


def publish_results_event(operator: Any, context: Any, summary: dict[str, Any]) -> None:
    """Put where this run's rows are (and the counts) in the extra of the results asset's event."""
    asset = getattr(operator, "results_asset", None)
    events = (context or {}).get("outlet_events") if asset is not None else None
    if events is None:
        return
    keep = ("results_uri", "n_images", "n_ok", "n_failed", "n_cached")
    events[asset].extra = {k: summary[k] for k in keep if k in summary}


class OcrLineageMixin:
    """``get_openlineage_facets_on_complete`` for the OCR operators (realtime and batch): sources → results.

    Lineage must never fail a task: any error is logged at debug level and the facets are skipped.
    """

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        try:
            return ocr_operator_lineage(self, task_instance)
        except Exception:
            import logging

            logging.getLogger(__name__).debug("OpenLineage facets failed", exc_info=True)
            return None
