"""Where results, manifests and the result cache go — one rule for both operators and the sensor.

Why here (the hook package, not ``operators/``): the sensor applies the same rule and must not import the
operators. Every location a task writes goes through :func:`check_location`, so a mistyped URI fails
before anything is read or billed instead of writing somewhere surprising: ``s3:/bucket/x`` (one slash)
or ``s3:bucket/x`` would otherwise be a *relative local folder* named ``s3:`` in the worker's current
directory, and so would any relative path.

Results: ``output_uri`` when given — ending in ``/`` it is a folder and the file is
``<task_id>[_<map_index>].jsonl`` in it — else ``$AIRFLOW_HOME/qwenocr/<dag_id>/<run_id>/<task_id>[_<map_index>].jsonl``,
so each mapped instance writes its own file. The batch manifest defaults to beside the results.

Why the cache does not sit beside ``output_uri``: outputs are usually templated per run (``{{ run_id }}``),
and a cache beside a per-run output is a fresh, empty cache every run — a new run over the same documents
would pay again. The default cache is therefore per deployment and DAG, never per run:

1. the task's ``cache_uri``, when given;
2. else the Airflow option ``[qwenocr] cache_uri`` (env ``AIRFLOW__QWENOCR__CACHE_URI``), a directory or
   object-storage prefix; ``{dag_id}`` in it is replaced by the DAG id (without it, every DAG shares one
   cache, which is safe: the key covers the image bytes, model, task, prompt, schema and pixel bounds);
3. else ``$AIRFLOW_HOME/qwenocr/<dag_id>/_cache`` on the worker.

With several worker machines, set (2) to a shared location (``s3://…``), or each machine keeps its own.
"""

from __future__ import annotations

import os
import re
from typing import Any

from airflow_provider_qwenocr.exceptions import QwenOcrConfigError

_UNSAFE = re.compile(r"[^A-Za-z0-9._=-]+")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):(.*)$", re.DOTALL)


def safe_part(part: Any) -> str:
    """A path segment from an id (run ids hold ``:`` and ``+``)."""
    return _UNSAFE.sub("_", str(part)).strip("_") or "none"


def is_template(value: Any) -> bool:
    """A value Airflow renders later (checked once rendered, at run time)."""
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def check_location(name: str, uri: Any) -> str | None:
    """``uri`` as a string, or :class:`QwenOcrConfigError` naming the argument when it cannot be meant.

    Refused: a scheme without ``//`` (``s3:/bucket``, ``s3:bucket``, ``gs:/b``) and a relative local path.
    A one-letter "scheme" is a Windows drive (``C:\\data``), judged as a path. Templates are let through
    (call again once rendered)."""
    if uri is None or uri == "":
        return None
    text = os.fspath(uri) if isinstance(uri, os.PathLike) else str(uri)
    if is_template(text):
        return text
    match = _SCHEME.match(text)
    if match and len(match.group(1)) > 1:
        if not match.group(2).startswith("//"):
            scheme, rest = match.group(1), match.group(2).lstrip("/")
            raise QwenOcrConfigError(f"{name}={text!r} looks like a mistyped URI (a scheme needs '//'): did you "
                                     f"mean {scheme}://{rest}? Nothing was read or sent")
        return text
    if not os.path.isabs(text):
        raise QwenOcrConfigError(f"{name}={text!r} is a relative local path, which would land in the worker's "
                                 "current directory: give an absolute path or a URI such as s3://bucket/prefix/. "
                                 "Nothing was read or sent")
    return text


def output_location(output_uri: Any, *, dag_id: str, task_id: str, run_id: str, map_index: int | None) -> str:
    """The results file of one task instance (see the module docstring); checked."""
    from airflow_provider_qwenocr.runs import storage
    from airflow_provider_qwenocr.runs.results_store import default_base_dir

    suffix = f"_{map_index}" if map_index is not None and map_index >= 0 else ""
    output = check_location("output_uri", output_uri)
    if output and output.endswith("/"):  # a folder/prefix: one file per instance
        return storage.join(output, f"{safe_part(task_id)}{suffix}.jsonl")
    if output:
        return output
    return str(default_base_dir() / safe_part(dag_id) / safe_part(run_id) / f"{safe_part(task_id)}{suffix}.jsonl")


def manifest_location(manifest_uri: Any, output_uri: str) -> str:
    """The batch manifest: ``manifest_uri``, else beside the results (``r.jsonl`` → ``r.manifest.jsonl``)."""
    from airflow_provider_qwenocr.hooks.batch import default_manifest_uri

    return check_location("manifest_uri", manifest_uri) or default_manifest_uri(output_uri)


def cache_location(cache_uri: Any, *, use_cache: bool, dag_id: str | None) -> str | None:
    """The result cache (rules 1–3 above), or None with ``use_cache=False``; checked."""
    if not use_cache:
        return None
    return check_location("cache_uri", cache_uri) or default_cache_uri(dag_id or "adhoc")


def default_cache_uri(dag_id: str) -> str:
    """The cache location for ``dag_id`` when the task names none (rules 2 and 3 above)."""
    from airflow_provider_qwenocr._compat import conf
    from airflow_provider_qwenocr.runs.results_store import default_base_dir

    configured = (conf.get("qwenocr", "cache_uri", fallback=None) or "").strip()
    if configured:
        return check_location("[qwenocr] cache_uri", configured.replace("{dag_id}", safe_part(dag_id)))
    return str(default_base_dir() / safe_part(dag_id) / "_cache")


def task_ids(task: Any, context: Any) -> dict[str, Any]:
    """dag_id, task_id, run_id, map_index of the running instance (also from a minimal dict in tests)."""
    ctx = context or {}
    ti = ctx.get("ti") or ctx.get("task_instance")
    dag_id = getattr(ti, "dag_id", None) or getattr(task, "dag_id", None) or "adhoc"
    run_id = ctx.get("run_id") or getattr(ti, "run_id", None) or getattr(ctx.get("dag_run"), "run_id", None) or "manual"
    map_index = getattr(ti, "map_index", None)
    return {"dag_id": str(dag_id), "task_id": str(getattr(ti, "task_id", None) or task.task_id),
            "run_id": str(run_id), "map_index": map_index if isinstance(map_index, int) else None}
