"""Where results and the result cache go by default — one rule for the realtime and batch operators.

Why the cache does not sit beside ``output_uri``: outputs are usually templated per run (``{{ run_id }}``,
``{{ dag_run.run_after | ds }}``), and a cache beside a per-run output is a fresh, empty cache every run —
a new run over the same documents would pay again. The default cache is therefore per deployment and DAG,
never per run:

1. the operator's ``cache_uri``, when given;
2. else the Airflow option ``[qwenocr] cache_uri`` (env ``AIRFLOW__QWENOCR__CACHE_URI``), a directory or
   object-storage prefix; ``{dag_id}`` in it is replaced by the DAG id (without it, every DAG shares one
   cache, which is safe: the key covers the image bytes, model, task, prompt, schema and pixel bounds);
3. else ``$AIRFLOW_HOME/qwenocr/<dag_id>/_cache`` on the worker.

With several worker machines, set (2) to a shared location (``s3://…``), or each machine keeps its own.
"""

from __future__ import annotations

import re
from typing import Any

_UNSAFE = re.compile(r"[^A-Za-z0-9._=-]+")


def safe_part(part: Any) -> str:
    """A path segment from an id (run ids hold ``:`` and ``+``)."""
    return _UNSAFE.sub("_", str(part)).strip("_") or "none"


def default_cache_uri(dag_id: str) -> str:
    """The cache location for ``dag_id`` when the operator names none (rules 2 and 3 above)."""
    from airflow_provider_qwenocr._compat import conf
    from airflow_provider_qwenocr.runs.results_store import default_base_dir

    configured = (conf.get("qwenocr", "cache_uri", fallback=None) or "").strip()
    if configured:
        return configured.replace("{dag_id}", safe_part(dag_id))
    return str(default_base_dir() / safe_part(dag_id) / "_cache")
