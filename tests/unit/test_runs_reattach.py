"""runs/reattach.py: the task identity, the metadata written at create, and the per-part re-attach decision."""

from __future__ import annotations

import types

import pytest

from airflow_provider_qwenocr.runs import orphans
from airflow_provider_qwenocr.runs import reattach as ra

ID = ra.TaskIdentity("dag", "ocr", "manual__2026-12-03", -1)
P1, P2 = [f"k{i:02d}" for i in range(10)], [f"k{i:02d}" for i in range(10, 16)]
REQ = ra.request_fingerprint([P1, P2], "qwen-vl-ocr", "/v1/chat/completions")


def batch(bid, status, keys, *, request=REQ, index=1, n=2, created=0, identity=ID):
    return {"id": bid, "status": status, "created_at": created,
            "metadata": ra.batch_metadata(identity, request, index, n, keys)}


def nothing_done(b):
    raise AssertionError(f"output of {b['id']} should not be read")


def test_identity_digest_is_stable_and_separates_runs_and_map_indexes():
    assert ID.ds_name == ra.TaskIdentity("dag", "ocr", "manual__2026-12-03", -1).ds_name
    assert ID.ds_name.startswith("qwenocr-") and len(ID.ds_name) == len("qwenocr-") + 24
    others = {ra.TaskIdentity("dag", "ocr", "manual__2026-12-04", -1).ds_name,
              ra.TaskIdentity("dag", "ocr", "manual__2026-12-03", 0).ds_name,
              ra.TaskIdentity("dag", "ocr2", "manual__2026-12-03", -1).ds_name}
    assert ID.ds_name not in others and len(others) == 3
    ti = types.SimpleNamespace(dag_id="dag", task_id="ocr", run_id="manual__2026-12-03", map_index=None)
    assert ra.TaskIdentity.from_context({"ti": ti}) == ID
    assert ra.TaskIdentity.from_context({}) is None


def test_fingerprints_ignore_order_but_not_model_or_lines():
    assert ra.request_fingerprint([P2, P1], "qwen-vl-ocr", "/v1/chat/completions") == REQ
    assert ra.request_fingerprint([P1, P2], "qwen-vl-ocr-latest", "/v1/chat/completions") != REQ
    assert ra.request_fingerprint([P1], "qwen-vl-ocr", "/v1/chat/completions") != REQ
    assert ra.lines_fingerprint(reversed(P1)) == ra.lines_fingerprint(P1) != ra.lines_fingerprint(P2)


def test_metadata_ours_win_and_service_limits_are_checked():
    meta = ra.batch_metadata(ID, REQ, 2, 3, P2, {"ds_name": "mine", "team": "ops"})
    assert meta["ds_name"] == ID.ds_name and meta["team"] == "ops"
    assert meta[ra.KEY_PART] == "2/3" and meta[ra.KEY_REQUEST] == REQ
    assert meta[ra.KEY_TASK] == '["dag", "ocr", "manual__2026-12-03", -1]'
    assert ra.TaskIdentity.parse(meta[ra.KEY_TASK]) == ID
    dotted = ra.TaskIdentity("a.b", "c.d", "e.f", 2)
    assert ra.TaskIdentity.parse(dotted.readable) == dotted
    long_run = ra.TaskIdentity("d", "t", "r" * 900)
    assert len(ra.batch_metadata(long_run, REQ, 1, 1, P1)[ra.KEY_TASK]) == 512
    assert ra.TaskIdentity.parse(long_run.readable) is None and ra.TaskIdentity.parse(None) is None
    with pytest.raises(ValueError, match="at most 16"):
        ra.batch_metadata(ID, REQ, 1, 1, P1, {f"k{i}": "v" for i in range(12)})
    with pytest.raises(ValueError, match="512"):
        ra.batch_metadata(ID, REQ, 1, 1, P1, {"note": "x" * 513})
    assert len(ra.batch_metadata(ID, REQ, 1, 1, P1, {f"k{i}": "v" for i in range(11)})) == 16


def test_nothing_found_submits_every_part_whole():
    d = ra.decide([P1, P2], [], nothing_done)
    assert [set(p.submit) for p in d.to_submit] == [set(P1), set(P2)]
    assert d.attached == [] and d.orphans == [] and d.log_lines() == []


@pytest.mark.parametrize("status", ["validating", "in_progress", "finalizing", "completed"])
def test_running_or_completed_batches_are_reattached_not_resubmitted(status):
    b1, b2 = batch("b1", status, P1, index=1), batch("b2", status, P2, index=2)
    d = ra.decide([P1, P2], [b1, b2, dict(b1)], nothing_done)  # b1 found twice (store + list)
    assert d.to_submit == [] and [b["id"] for b in d.attached] == ["b1", "b2"]
    assert "re-attached to b1" in d.log_lines()[0] and "nothing to submit" in d.log_lines()[0]


def test_killed_between_two_creates_submits_only_the_missing_part():
    d = ra.decide([P1, P2], [batch("b1", "in_progress", P1, index=1)], nothing_done)
    assert [b["id"] for b in d.attached] == ["b1"]
    assert [(p.index, set(p.submit)) for p in d.to_submit] == [(2, set(P2))]


@pytest.mark.parametrize("status", ["expired", "failed", "cancelled"])
def test_ended_batch_lands_its_answered_lines_and_only_the_rest_is_submitted(status):
    b1 = batch("b1", status, P1, index=1)
    done = set(P1[:5])
    d = ra.decide([P1], [b1], lambda b: done)
    (part,) = d.parts
    assert part.attach == [b1] and part.submit == frozenset(P1[5:]) and part.done_elsewhere == 5
    assert "submitting only the other 5" in part.describe()


def test_the_resubmitted_rest_is_found_on_the_next_retry():
    b1 = batch("b1", "expired", P1, index=1, created=1)
    rest = batch("b1r", "in_progress", P1[5:], index=1, created=2)
    d = ra.decide([P1], [rest, b1], lambda b: set(P1[:5]) if b["id"] == "b1" else set())
    assert d.to_submit == [] and {b["id"] for b in d.attached} == {"b1", "b1r"}
    # the rest expired too, having answered 3 more: only the last 2 go out
    rest_expired = dict(rest, status="expired")
    d = ra.decide([P1], [rest_expired, b1],
                  lambda b: set(P1[:5]) if b["id"] == "b1" else set(P1[5:8]))
    assert d.parts[0].submit == frozenset(P1[8:]) and d.parts[0].done_elsewhere == 8


def test_an_ended_batch_that_answered_nothing_resubmits_the_part_and_a_live_copy_wins():
    failed = batch("b1", "failed", P1, index=1, created=1)
    assert ra.decide([P1], [failed], lambda b: set()).parts[0].submit == frozenset(P1)
    again = batch("b2", "in_progress", P1, index=1, created=2)
    d = ra.decide([P1], [failed, again], nothing_done)
    assert [b["id"] for b in d.attached] == ["b2"] and d.to_submit == [] and d.credited == []


def test_a_running_batch_of_another_request_is_an_orphan_not_reattached():
    old_req = ra.request_fingerprint([P1[:3]], "qwen-vl-ocr", "/v1/chat/completions")
    running = batch("old", "in_progress", P1[:3], request=old_req)
    d = ra.decide([P1, P2], [running], nothing_done)
    assert [set(p.submit) for p in d.to_submit] == [set(P1), set(P2)] and d.attached == []
    assert [b["id"] for b in d.orphans] == ["old"]
    assert any("left batch old" in line and "not cancelled" in line for line in d.log_lines())


def test_lines_answered_by_an_ended_batch_of_another_request_are_not_sent_again():
    """A run killed while landing: half its rows are cached, so the plan (and request) shrank — the
    completed batch still answers the rest, nothing is sent."""
    old_req = ra.request_fingerprint([P1 + P2], "qwen-vl-ocr", "/v1/chat/completions")
    whole = batch("whole", "completed", P1 + P2, request=old_req, index=1, n=1)
    d = ra.decide([P1[5:]], [whole], lambda b: set(P1 + P2))
    assert d.to_submit == [] and [b["id"] for b in d.attached] == ["whole"] and d.credited == []
    unrelated = batch("other", "completed", ["zz"], request=old_req)
    d = ra.decide([P1], [unrelated], lambda b: {"zz"})
    assert d.to_submit[0].submit == frozenset(P1) and [b["id"] for b in d.unused] == ["other"]


def test_credit_counts_only_what_a_superseded_batch_answered():
    expired = {"id": "b1", "status": "expired", "request_counts": {"total": 6, "completed": 3, "failed": 3}}
    rest = {"id": "b2", "status": "completed", "request_counts": {"total": 3, "completed": 3, "failed": 0}}
    d = ra.decide([P1], [dict(expired, metadata=batch("b1", "expired", P1)["metadata"])], lambda b: set(P1[:5]))
    assert d.credited == ["b1"]
    counted = ra.credit([expired, rest], ["b1"])
    assert counted[0]["status"] == "completed" and counted[0]["request_counts"] == {"total": 3, "completed": 3,
                                                                                   "failed": 0}
    assert counted[1] is rest and expired["status"] == "expired"  # the input is not changed


def test_ownership_is_checked_on_the_whole_ds_name():
    other = ra.TaskIdentity("dag", "ocr", "other-run")
    assert ra.is_ours(batch("b", "completed", P1), ID)
    assert not ra.is_ours(batch("b", "completed", P1, identity=other), ID)
    assert not ra.is_ours({"id": "x", "metadata": {"ds_name": ID.ds_name + "-extra"}}, ID)


def test_stored_ids_reads_only_a_list_of_ids():
    assert ra.stored_ids(["a", "", 3, "b"]) == ["a", "b"]
    assert ra.stored_ids(None) == [] and ra.stored_ids("a") == []


def test_orphans_are_superseded_or_gone_running_batches_of_the_provider():
    old_req = ra.request_fingerprint([P1[:3]], "qwen-vl-ocr", "/v1/chat/completions")
    other = ra.TaskIdentity("dag", "ocr", "deleted-run")
    batches = [
        batch("superseded", "in_progress", P1[:3], request=old_req, created=1),
        batch("current", "in_progress", P1, created=2),
        batch("old-ended", "completed", P1[:3], request=old_req, created=0),
        batch("gone", "validating", P1, identity=other, created=3),
        {"id": "not-ours", "status": "in_progress", "created_at": 4, "metadata": {"ds_name": "qwenocr-x"}},
        {"id": "no-metadata", "status": "in_progress", "created_at": 5, "metadata": None},
    ]
    assert [b["id"] for b in orphans.orphans_among(batches)] == ["superseded"]
    deleted = {"deleted-run"}
    got = orphans.orphans_among(batches, gone=lambda ident, b: ident is not None and ident.run_id in deleted)
    assert [b["id"] for b in got] == ["gone", "superseded"]
    # when the newest batch of a task instance is the one for the old request, the new one is the orphan
    newer_old = batch("superseded", "in_progress", P1[:3], request=old_req, created=9)
    assert [b["id"] for b in orphans.orphans_among([newer_old, batches[1]])] == ["current"]
