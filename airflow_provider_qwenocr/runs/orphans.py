"""Orphans: batches the provider created for a task instance that no longer waits for them.

Why apart from re-attach: re-attach decides for *one* task instance while it runs; this looks across all of
the provider's batches (the hook's ``find_orphan_batches`` / ``cancel_orphan_batches``), for the operator of
the account who wants to stop paying for work nobody will land. Only the batches' own metadata (written
by ``runs.reattach.batch_metadata``) and the documented list filters are used. No Airflow import.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta, timezone
from typing import Any

from airflow_provider_qwenocr.dashscope.batch import BatchStatus
from airflow_provider_qwenocr.runs.reattach import DS_NAME_PREFIX, KEY_TASK, TaskIdentity, newest_first, request_of

#: a batch older than the longest completion window (336 h) plus a day has ended: orphans are younger
ORPHAN_HORIZON_S = (336 + 24) * 3600


def orphans_among(batches: Iterable[dict[str, Any]],
                  gone: Callable[[TaskIdentity | None, dict[str, Any]], bool] | None = None) -> list[dict[str, Any]]:
    """The provider's running batches that no task instance waits for any more, newest first:

    - *superseded*: a newer batch of the same task instance carries another request (the task was cleared
      and re-run with other images or settings; the new try left the old batch running);
    - *gone*: ``gone(identity, batch)`` says so — e.g. the caller's set of deleted DAG runs. The provider
      cannot see Airflow's runs from the service, so only the caller can say a run is gone.
    Batches without the provider's metadata are never returned.
    """
    ours = [b for b in batches if request_of(b) and str((b.get("metadata") or {}).get("ds_name", "")).startswith(
        DS_NAME_PREFIX)]
    current: dict[str, str | None] = {}
    for b in newest_first(ours):
        current.setdefault(b["metadata"]["ds_name"], request_of(b))
    out = []
    for b in newest_first(ours):
        if BatchStatus.of(b).is_terminal:
            continue
        identity = TaskIdentity.parse(b["metadata"].get(KEY_TASK))
        if request_of(b) != current[b["metadata"]["ds_name"]] or (gone is not None and gone(identity, b)):
            out.append(b)
    return out


def find_orphans(api: Any, *, dag_id: str | None = None,
                 gone: Callable[[TaskIdentity | None, dict[str, Any]], bool] | None = None,
                 now: float | None = None) -> list[dict[str, Any]]:
    """:func:`orphans_among` the provider's batches of the last 15 days (``dag_id``: of that DAG only), found
    with the documented filters (``ds_name`` prefix, ``create_after``)."""
    since = (now if now is not None else time.time()) - ORPHAN_HORIZON_S
    create_after = datetime.fromtimestamp(since, timezone(timedelta(hours=8))).strftime("%Y%m%d%H%M%S")
    batches = api.find_batches(ds_name=DS_NAME_PREFIX, create_after=create_after)
    if dag_id is not None:
        batches = [b for b in batches if (TaskIdentity.parse((b.get("metadata") or {}).get(KEY_TASK))
                                          or TaskIdentity("", "", "")).dag_id == dag_id]
    return orphans_among(batches, gone)
