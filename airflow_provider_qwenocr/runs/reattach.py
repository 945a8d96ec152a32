"""Re-attach on retry: which batches a task instance already created for this very request, and what is left.

Why: submitting is billable and the service has no idempotency token. A task killed after its submit
(worker SIGKILLed, triggerer lost, ``execution_timeout``, a clear) runs ``execute`` again, and without
this it creates a second batch for the same images while the first keeps running — billed twice
(apache/airflow PR #72400 is the same bug in another provider). So every batch carries, in its
``metadata``, who created it and for what:

- ``ds_name`` = ``qwenocr-<sha256(task identity)[:24]>``: the documented list filter ``ds_name=`` finds every
  batch of one task instance (dag, task, run, map index) — on any Airflow version, with no state of ours;
- ``qwenocr_request``: the fingerprint of the whole request (the sorted line keys actually sent, model,
  endpoint); ``qwenocr_lines``: the fingerprint of that batch's own lines; ``qwenocr_part``: "i/n";
  ``qwenocr_task``: the identity, readable.

Before any upload the run gathers the batches found (the task state store's ids on Airflow ≥ 3.3, and the
list call) and :func:`decide` says, per input part: re-attach (in progress → wait, completed → land), or
land the completed lines of a failed/expired/cancelled batch and submit only the lines without a result,
or submit the part. A line key is the result-cache key (image bytes + request), so "the same lines" means
the same images asked the same way. Batches of the same task instance for *another* request that are still
running are orphans: named in the log, cancelled only on request.

:func:`decide` is pure; :func:`gather` and :func:`answered_ids` read the service through the ``api`` given
(a ``BatchClient`` or the hook); no Airflow import.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from airflow_provider_qwenocr.dashscope.batch import BatchStatus
from airflow_provider_qwenocr.dashscope.batch_results import iter_jsonl, line_error

log = logging.getLogger(__name__)

DS_NAME_PREFIX = "qwenocr-"
KEY_TASK, KEY_REQUEST, KEY_PART, KEY_LINES = "qwenocr_task", "qwenocr_request", "qwenocr_part", "qwenocr_lines"
#: the key under which the operator records its batch ids in Airflow's task state store (≥ 3.3)
STATE_KEY = "qwenocr_batches"
#: OpenAI's metadata contract, which the compatible Batch API follows: ≤ 16 pairs, keys ≤ 64, values ≤ 512.
MAX_PAIRS, MAX_KEY, MAX_VALUE = 16, 64, 512
OURS = ("ds_name", KEY_TASK, KEY_REQUEST, KEY_PART, KEY_LINES)


@dataclass(frozen=True)
class TaskIdentity:
    """One task instance: retries and clears of it share it; another run or map index does not."""

    dag_id: str
    task_id: str
    run_id: str
    map_index: int = -1

    @property
    def digest(self) -> str:
        return hashlib.sha256(json.dumps([self.dag_id, self.task_id, self.run_id, int(self.map_index)])
                              .encode("utf-8")).hexdigest()

    @property
    def ds_name(self) -> str:
        """What the documented ``ds_name=`` list filter looks for (a substring match, so it must be unique)."""
        return DS_NAME_PREFIX + self.digest[:24]

    @property
    def readable(self) -> str:
        return f"{self.dag_id}.{self.task_id}.{self.run_id}.{self.map_index}"[:MAX_VALUE]

    @classmethod
    def from_context(cls, context: Mapping[str, Any]) -> TaskIdentity | None:
        """From an Airflow context's task instance (2.10 and 3.x alike); None outside a task (no ``ti``)."""
        ti = context.get("ti") or context.get("task_instance")
        if ti is None or not getattr(ti, "task_id", None) or not getattr(ti, "run_id", None):
            return None
        map_index = getattr(ti, "map_index", -1)
        return cls(str(ti.dag_id), str(ti.task_id), str(ti.run_id), -1 if map_index is None else int(map_index))


def fingerprint(keys: Iterable[str], *salt: str) -> str:
    """sha256 over the sorted line keys (order-free: the same lines are the same work) and ``salt``."""
    h = hashlib.sha256()
    for part in (*salt, "\x00", *sorted(keys)):
        h.update(part.encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()


def request_fingerprint(parts: Sequence[Iterable[str]], model: str, endpoint: str) -> str:
    """The whole request: every line key sent (all parts), the model and the endpoint; 32 hex digits."""
    return fingerprint((k for p in parts for k in p), model, endpoint)[:32]


def lines_fingerprint(keys: Iterable[str]) -> str:
    return fingerprint(keys)[:32]


def batch_metadata(identity: TaskIdentity, request_fp: str, index: int, n_parts: int, keys: Iterable[str],
                   extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The ``metadata`` of the batch of part ``index`` (1-based) of ``n_parts``: the caller's pairs, then ours.

    Our keys win (a caller's ``ds_name`` would hide the batch from the retry's lookup). Refuses, before
    anything is uploaded, metadata the service would refuse (> 16 pairs, a key > 64 or a value > 512 chars).
    """
    meta = {str(k): str(v) for k, v in (extra or {}).items()}
    meta.update({"ds_name": identity.ds_name, KEY_TASK: identity.readable, KEY_REQUEST: request_fp,
                 KEY_PART: f"{index}/{n_parts}", KEY_LINES: lines_fingerprint(keys)})
    check_metadata(meta)
    return meta


def check_metadata(meta: Mapping[str, str]) -> None:
    if len(meta) > MAX_PAIRS:
        raise ValueError(f"metadata holds {len(meta)} pairs with the provider's {len(OURS)}; the Batch API accepts "
                         f"at most {MAX_PAIRS}: pass at most {MAX_PAIRS - len(OURS)} of your own")
    for k, v in meta.items():
        if len(k) > MAX_KEY or len(v) > MAX_VALUE:
            raise ValueError(f"metadata {k[:70]!r}: keys may hold {MAX_KEY} characters and values {MAX_VALUE}")


def request_of(batch: Mapping[str, Any]) -> str | None:
    return (batch.get("metadata") or {}).get(KEY_REQUEST)


def lines_of(batch: Mapping[str, Any]) -> str | None:
    return (batch.get("metadata") or {}).get(KEY_LINES)


def is_ours(batch: Mapping[str, Any], identity: TaskIdentity) -> bool:
    """Created by the provider for this task instance (the list filter is a substring match: check it whole)."""
    return (batch.get("metadata") or {}).get("ds_name") == identity.ds_name


# -- the decision -------------------------------------------------------------------------------------------

@dataclass
class PartDecision:
    """One input part: the found batches that cover (or partly cover) it, and the line keys still to send."""

    index: int  # 1-based
    keys: frozenset[str]
    attach: list[dict[str, Any]] = field(default_factory=list)
    submit: frozenset[str] = frozenset()
    done_elsewhere: int = 0  # lines answered by a failed/expired/cancelled batch attached here

    def describe(self) -> str:
        if not self.attach:
            return f"part {self.index}: no batch of this request found, submitting {len(self.submit)} line(s)"
        found = ", ".join(f"{b['id']} ({b.get('status')})" for b in self.attach)
        if self.submit:
            return (f"part {self.index}: re-attached to {found}; {self.done_elsewhere} line(s) already answered, "
                    f"submitting only the other {len(self.submit)}")
        return f"part {self.index}: re-attached to {found}; nothing to submit"


@dataclass
class Decision:
    parts: list[PartDecision]
    orphans: list[dict[str, Any]]  # this task instance's batches for another request, still running
    unused: list[dict[str, Any]]  # this request's batches that cover no part any more (ended, or split changed)

    @property
    def attached(self) -> list[dict[str, Any]]:
        seen: dict[str, dict[str, Any]] = {}
        for p in self.parts:
            for b in p.attach:
                seen.setdefault(b["id"], b)
        return list(seen.values())

    @property
    def to_submit(self) -> list[PartDecision]:
        return [p for p in self.parts if p.submit]

    def log_lines(self) -> list[str]:
        lines = [p.describe() for p in self.parts if p.attach]
        lines += [f"left batch {b['id']} ({b.get('status')}): it was created by this task instance for another "
                  f"request ({request_of(b)}); cancel it with QwenOcrHook.cancel_orphan_batches or cancel_orphans=True"
                  for b in self.orphans]
        lines += [f"left batch {b['id']} ({b.get('status')}): same request, but its lines match no part of this run"
                  for b in self.unused if not BatchStatus.of(b).is_terminal]
        return lines


def _newest_first(batches: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(batches, key=lambda b: (b.get("created_at") or 0), reverse=True)


def decide(parts: Sequence[Iterable[str]], request_fp: str, found: Iterable[dict[str, Any]],
           completed_ids: Callable[[dict[str, Any]], set[str]]) -> Decision:
    """Per part: the batches to re-attach to and the line keys still to submit.

    ``parts`` are the line keys of each input part, in order; ``found`` the batches of this task instance
    (duplicates by id are merged); ``completed_ids(batch)`` the keys a terminal, unsuccessful batch
    answered successfully (its output file), which are not sent again. A part is matched by its lines'
    fingerprint: a running or completed batch with exactly these lines covers it; a failed, expired or
    cancelled one covers the lines it answered and the rest is looked up again (a resubmit of that rest may
    itself be running, or have ended) until it is covered or nothing more is found.
    """
    unique = {b["id"]: b for b in found if b.get("id")}
    mine = [b for b in unique.values() if request_of(b) == request_fp]
    orphans = [b for b in unique.values() if request_of(b) != request_fp and not BatchStatus.of(b).is_terminal]
    by_lines: dict[str, list[dict[str, Any]]] = {}
    for b in _newest_first(mine):
        by_lines.setdefault(lines_of(b) or "", []).append(b)
    used: set[str] = set()
    decisions = []
    for i, keys in enumerate(parts, start=1):
        part = PartDecision(index=i, keys=frozenset(keys))
        remaining = set(part.keys)
        while remaining:
            candidates = by_lines.get(lines_fingerprint(remaining), [])
            live = [b for b in candidates if not BatchStatus.of(b).is_failure]
            if live:
                part.attach.append(live[0])
                remaining = set()
                break
            answered: set[str] = set()
            for b in candidates:  # failed / expired / cancelled, newest first
                got = set(completed_ids(b)) & (remaining - answered)
                if got:
                    part.attach.append(b)
                    answered |= got
            if not answered:
                break
            part.done_elsewhere += len(answered)
            remaining -= answered
        part.submit = frozenset(remaining)
        used.update(b["id"] for b in part.attach)
        decisions.append(part)
    unused = [b for b in mine if b["id"] not in used]
    return Decision(parts=decisions, orphans=_newest_first(orphans), unused=_newest_first(unused))


def stored_ids(value: Any) -> list[str]:
    """The batch ids of a task-state-store record (a list of ids; anything else reads as none)."""
    if isinstance(value, list):
        return [str(v) for v in value if isinstance(v, str) and v]
    return []


# -- reading the service ------------------------------------------------------------------------------------

def gather(api: Any, identity: TaskIdentity, recorded: Iterable[str] = ()) -> list[dict[str, Any]]:
    """This task instance's batches: the ids ``recorded`` (task state store) and what the documented
    ``ds_name=`` list filter finds, merged by id. A recorded id the service no longer knows is skipped."""
    found: dict[str, dict[str, Any]] = {}
    for bid in recorded:
        try:
            b = api.get_batch(bid)
        except Exception as exc:  # deleted, or another account: the list below still runs
            log.warning("recorded batch %s could not be read (%s); looking it up by metadata", bid, exc)
            continue
        found[b["id"]] = b
    for b in api.find_batches(ds_name=identity.ds_name):
        if is_ours(b, identity):
            found.setdefault(b["id"], b)
    return list(found.values())


def answered_ids(api: Any) -> Callable[[dict[str, Any]], set[str]]:
    """``completed_ids`` for :func:`decide`: the keys a batch's output file answered successfully."""
    def ids(batch: dict[str, Any]) -> set[str]:
        fid = batch.get("output_file_id")
        if not fid:
            return set()
        return {str(line.get("custom_id")) for line in iter_jsonl(api.file_content(fid)) if line_error(line) is None}

    return ids


def copy_lines(src: BinaryIO, dst: BinaryIO, keys: frozenset[str] | set[str]) -> int:
    """Copy the JSONL request lines of ``src`` whose ``custom_id`` is in ``keys`` (streamed); returns how many."""
    n = 0
    for raw in src:
        if raw.strip() and str(json.loads(raw).get("custom_id")) in keys:
            dst.write(raw if raw.endswith(b"\n") else raw + b"\n")
            n += 1
    return n
