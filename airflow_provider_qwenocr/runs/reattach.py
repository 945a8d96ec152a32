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
        """``["dag", "task", "run", map_index]``: readable, and parsed back by :meth:`parse` (ids may hold dots)."""
        return json.dumps([self.dag_id, self.task_id, self.run_id, int(self.map_index)],
                          ensure_ascii=False)[:MAX_VALUE]

    @classmethod
    def parse(cls, value: Any) -> TaskIdentity | None:
        """The identity a batch's ``qwenocr_task`` names; None when absent or cut at the 512-character limit."""
        try:
            dag_id, task_id, run_id, map_index = json.loads(value)
            return cls(str(dag_id), str(task_id), str(run_id), int(map_index))
        except (TypeError, ValueError):
            return None

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
    done_elsewhere: int = 0  # lines answered by ended batches attached here

    def describe(self) -> str:
        if not self.attach:
            return f"part {self.index}: no batch of this task instance has these lines; submitting {len(self.submit)}"
        found = ", ".join(f"{b['id']} ({b.get('status')})" for b in self.attach)
        if self.submit:
            return (f"part {self.index}: re-attached to {found}; {self.done_elsewhere} line(s) already answered, "
                    f"submitting only the other {len(self.submit)}")
        return f"part {self.index}: re-attached to {found}; nothing to submit"


@dataclass
class Decision:
    parts: list[PartDecision]
    orphans: list[dict[str, Any]]  # this task instance's running batches that no part waits for
    unused: list[dict[str, Any]]  # its ended batches that answered none of this run's lines

    @property
    def attached(self) -> list[dict[str, Any]]:
        seen: dict[str, dict[str, Any]] = {}
        for p in self.parts:
            for b in p.attach:
                seen.setdefault(b["id"], b)
        return list(seen.values())

    @property
    def credited(self) -> list[str]:
        """Attached batches that ended without success: only the lines they answered are theirs (the rest
        was, or is being, sent again), so the batch policy counts them by those lines — see :func:`credit`."""
        return [b["id"] for b in self.attached if BatchStatus.of(b).is_failure]

    @property
    def to_submit(self) -> list[PartDecision]:
        return [p for p in self.parts if p.submit]

    def log_lines(self) -> list[str]:
        lines = [p.describe() for p in self.parts if p.attach]
        lines += [f"left batch {b['id']} ({b.get('status')}): this task instance created it for another request "
                  f"({request_of(b)}) and no longer waits for it; it is not cancelled (QwenOcrHook.find_orphan_batches "
                  "lists such batches, cancel_orphan_batches cancels them)" for b in self.orphans]
        return lines


def newest_first(batches: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(batches, key=lambda b: (b.get("created_at") or 0), reverse=True)


def decide(parts: Sequence[Iterable[str]], found: Iterable[dict[str, Any]],
           completed_ids: Callable[[dict[str, Any]], set[str]]) -> Decision:
    """Per part: the batches to re-attach to and the line keys still to submit.

    ``parts`` are the line keys of each input part, in order; ``found`` the batches of this task instance
    (duplicates by id are merged); ``completed_ids(batch)`` the keys an ended batch answered successfully
    (its output file; read only when needed). For each part, repeatedly:

    1. a running or completed batch whose lines are exactly the lines still open covers them all (its
       lines fingerprint matches: a resubmitted rest is found as well as a whole part);
    2. else ended batches (completed, failed, expired, cancelled — of any request of this task instance,
       e.g. a run whose landing was killed and whose rows are now partly cached) cover the lines they
       answered, and the rest is looked up again;

    until nothing more is found: what is left is submitted. A running batch is matched only as a whole (its
    lines are not known before it ends), so a running batch that no part matches is an orphan.
    """
    unique = {b["id"]: b for b in found if b.get("id")}
    newest = newest_first(unique.values())
    by_lines: dict[str, list[dict[str, Any]]] = {}
    for b in newest:
        if not BatchStatus.of(b).is_failure:
            by_lines.setdefault(lines_of(b) or "", []).append(b)
    ended = [b for b in newest if BatchStatus.of(b).is_terminal]
    answers: dict[str, set[str]] = {}

    def answered(b: dict[str, Any]) -> set[str]:
        if b["id"] not in answers:
            answers[b["id"]] = set(completed_ids(b))
        return answers[b["id"]]

    decisions = []
    for i, keys in enumerate(parts, start=1):
        part = PartDecision(index=i, keys=frozenset(keys))
        remaining = set(part.keys)
        while remaining:
            whole = by_lines.get(lines_fingerprint(remaining))
            if whole:
                part.attach.append(whole[0])
                remaining = set()
                break
            got_any: set[str] = set()
            for b in ended:
                if b in part.attach:
                    continue
                got = answered(b) & (remaining - got_any)
                if got:
                    part.attach.append(b)
                    got_any |= got
            if not got_any:
                break
            part.done_elsewhere += len(got_any)
            remaining -= got_any
        part.submit = frozenset(remaining)
        decisions.append(part)
    used = {b["id"] for p in decisions for b in p.attach}
    orphans = [b for b in newest if b["id"] not in used and not BatchStatus.of(b).is_terminal]
    unused = [b for b in newest if b["id"] not in used and BatchStatus.of(b).is_terminal]
    return Decision(parts=decisions, orphans=orphans, unused=unused)


def credit(batches: Iterable[dict[str, Any]], credited: Iterable[str]) -> list[dict[str, Any]]:
    """``batches`` as the batch policy should count them: a credited batch (see :attr:`Decision.credited`)
    counts only the requests it completed, as a completed batch — its other lines were sent again and are
    counted in the batch that got them, so they must not fail the task twice."""
    ids = set(credited)
    out = []
    for b in batches:
        if b.get("id") in ids:
            done = int((b.get("request_counts") or {}).get("completed") or 0)
            b = {**b, "status": "completed", "request_counts": {"total": done, "completed": done, "failed": 0}}
        out.append(b)
    return out


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
    return [b for b in found.values() if _results_kept(api, b)]


def _results_kept(api: Any, batch: dict[str, Any]) -> bool:
    """False for an ended batch whose output file is gone (``delete_files=True`` after its rows landed): it
    can no longer be landed, so its lines count as unanswered (with the result cache on, they are cached)."""
    fid = batch.get("output_file_id")
    if not fid or not BatchStatus.of(batch).is_terminal:
        return True
    try:
        api.get_file(fid)
        return True
    except Exception as exc:
        log.warning("batch %s ended but its output file %s cannot be read (%s; deleted with delete_files?): "
                    "its lines are not landed from it", batch["id"], fid, exc)
        return False


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

