"""Upload and create the batches of a built plan — after re-attaching to what this task instance already created.

Why apart from ``runs/batch.py``'s submit: preparing images and writing the manifest are not billable and are
redone on every try; this step is the billable one, and the only place a retry could pay twice. So, with a
task identity, it first asks the service what this task instance already created (``runs.reattach``) and
uploads only the parts — or the lines of a part — that no batch has answered or is answering. Every batch it
creates carries the identity and request fingerprints in its ``metadata`` so that the next try finds it.

If creating a batch fails, the batches created *by this call* are cancelled before the error propagates
(a half-submitted run must not keep billing behind a failed task); batches re-attached to are left alone:
they are what a retry of this task instance will re-attach to.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from airflow_provider_qwenocr.dashscope.batch import BATCH_ENDPOINT
from airflow_provider_qwenocr.runs import reattach as ra

log = logging.getLogger(__name__)


@dataclass
class Created:
    """What :func:`create_batches` left the run waiting for."""

    batch_ids: list[str]  # re-attached first, then created — everything to wait for and land
    input_file_ids: list[str]  # uploaded by this call
    created: list[str] = field(default_factory=list)  # created by this call
    credited: list[str] = field(default_factory=list)  # re-attached, ended without success (``reattach.credit``)
    decision: ra.Decision | None = None


def part_keys(manifest: Iterable[Any], n_parts: int) -> list[list[str]]:
    """The line keys (``custom_id``) sent in each part, from the manifest (cached and rejected images are not)."""
    keys: list[list[str]] = [[] for _ in range(n_parts)]
    for e in manifest:
        if e.part is not None and e.error is None and e.cached is None:
            keys[e.part].append(e.custom_id)
    return keys


def _lines_of(part: Any, send: frozenset[str], whole: bool) -> BinaryIO:
    if whole:
        return part.open()
    tmp = tempfile.TemporaryFile(prefix="qwenocr-rest-")  # a part may be 500 MB: streamed, never in memory
    with part.open() as src:
        ra.copy_lines(src, tmp, send)
    tmp.seek(0)
    return tmp


def create_batches(api: Any, plan: Any, *, identity: ra.TaskIdentity | None = None, recorded: Sequence[str] = (),
                   metadata: dict[str, str] | None = None, completion_window: str = "24h",
                   on_batch_created: Callable[[list[str]], None] | None = None,
                   cancel: Callable[[Any, list[str]], Any] | None = None,
                   endpoint: str = BATCH_ENDPOINT, lookup: bool = True) -> Created:
    """Create one batch per part of ``plan`` still to send; with ``identity``, re-attach first.

    ``recorded``: batch ids this task instance recorded before (Airflow's task state store), looked up with
    the ``ds_name=`` list filter's finds. ``on_batch_created(ids)`` gets every id to wait for as soon as it
    is known — the re-attached ones before any upload, then after each create. ``cancel(api, ids)`` cancels
    this call's batches when a later create fails (``dashscope.batch.cancel_batches``). ``lookup=False``
    (a task instance's first try, nothing recorded: it cannot have created anything) skips the list call —
    the service allows 100 a minute per account, and a wide mapped task starts many first tries at once —
    but still writes the identity into the metadata for the tries after it.
    """
    n = len(plan.parts)
    keys = part_keys(plan.manifest, n)
    request_fp = ra.request_fingerprint(keys, plan.model, endpoint)

    def meta_for(index: int, send: Iterable[str]) -> dict[str, str]:
        meta = {"ds_name": f"qwenocr {plan.task}", "ds_description": f"part {index}/{n}, model {plan.model}",
                **(metadata or {})}
        return ra.batch_metadata(identity, request_fp, index, n, send, meta) if identity is not None else meta

    todo = [(i, frozenset(k)) for i, k in enumerate(keys, start=1)]
    if n:
        meta_for(1, keys[0])  # refuse metadata the service would refuse before anything is uploaded
    decision = None
    batch_ids: list[str] = []
    if identity is not None and n and (lookup or recorded):
        decision = ra.decide(keys, ra.gather(api, identity, recorded), ra.answered_ids(api))
        for line in decision.log_lines():
            (log.warning if line.startswith("left") else log.info)("%s", line)
        batch_ids = [b["id"] for b in decision.attached]
        if batch_ids and on_batch_created:
            on_batch_created(list(batch_ids))
        todo = [(p.index, p.submit) for p in decision.to_submit]
    created: list[str] = []
    file_ids: list[str] = []
    try:
        for index, send in todo:
            with _lines_of(plan.parts[index - 1], send, whole=len(send) == len(keys[index - 1])) as fh:
                f = api.upload_file(fh, filename=f"qwenocr-{plan.task}-{index}of{n}.jsonl")
            file_ids.append(f["id"])
            batch = api.create_batch(f["id"], metadata=meta_for(index, send), completion_window=completion_window)
            created.append(batch["id"])
            batch_ids.append(batch["id"])
            log.info("created batch %s (part %d/%d, %d line(s), input file %s)", batch["id"], index, n, len(send),
                     f["id"])
            if on_batch_created:
                on_batch_created(list(batch_ids))
    except BaseException:
        if cancel is not None:
            cancel(api, created)
        raise
    return Created(batch_ids=batch_ids, input_file_ids=file_ids, created=created,
                   credited=decision.credited if decision else [], decision=decision)
