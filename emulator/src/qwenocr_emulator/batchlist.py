"""``GET /compatible-mode/v1/batches``: the documented list filters, and nothing else.

Why strict: a client that re-attaches to its own batches (issue 19) must be tested against the filters the
service documents, not against whatever an emulator happens to tolerate. The Batch reference (reference §5,
S8) documents exactly: ``limit``, ``after``, ``status`` (comma list), ``create_after`` / ``create_before``
(``yyyyMMddHHmmss``), ``ds_name``, ``input_file_ids`` (comma list, at most 20). Anything else — e.g. the
OpenAI-style ``metadata[key]=value`` — is refused with 400, and so is a malformed value.

Behaviour taken from the recorded real traffic (``tests/data/recordings/list-batches-*``):
- newest first; ``after`` continues after that batch id (an unknown id gives an empty page);
- ``ds_name`` matches a part of ``metadata.ds_name`` ("任务" finds "测试任务");
- ``create_after``/``create_before`` are Beijing wall time (UTC+8), both ends inclusive;
- an empty page is ``data: null`` with null ``first_id``/``last_id``.
Not documented, chosen and stated here: ``limit`` is 1–100 (default 20, the OpenAI list contract the
compatible API follows); a parameter given twice is refused; the error body is the recorded control-plane
400 shape ``{"error": {"message", "type": "invalid_request_error", "param": <name>, "code": null}}``.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Any

FILTERS = ("limit", "after", "status", "create_after", "create_before", "ds_name", "input_file_ids")
STATUSES = ("validating", "failed", "in_progress", "finalizing", "completed", "expired", "cancelling", "cancelled")
MAX_FILE_IDS = 20
MAX_LIMIT = 100
DEFAULT_LIMIT = 20
BEIJING = timezone(timedelta(hours=8))
_STAMP = re.compile(r"\d{14}")


class ListQueryError(ValueError):
    """A list query the service would refuse: ``param`` names the offending parameter."""

    def __init__(self, param: str, message: str):
        super().__init__(message)
        self.param = param


def _stamp(param: str, value: str) -> int:
    if not _STAMP.fullmatch(value):
        raise ListQueryError(param, f"{param} must be yyyyMMddHHmmss (14 digits), not {value[:40]!r}")
    try:
        return int(datetime.strptime(value, "%Y%m%d%H%M%S").replace(tzinfo=BEIJING).timestamp())
    except ValueError:
        raise ListQueryError(param, f"{param} {value!r} is not a valid date and time") from None


def _comma_list(value: str) -> list[str]:
    return [x.strip() for x in value.split(",") if x.strip()]


def parse_query(items: list[tuple[str, str]]) -> dict[str, Any]:
    """The validated filters of a list query given as (name, value) pairs; raises ListQueryError."""
    seen: dict[str, str] = {}
    for name, value in items:
        if name not in FILTERS:
            raise ListQueryError(name, f"Unsupported query parameter {name[:60]!r}; the batch list accepts "
                                       + ", ".join(FILTERS))
        if name in seen:
            raise ListQueryError(name, f"Query parameter {name!r} was given more than once")
        seen[name] = value
    out: dict[str, Any] = {"limit": DEFAULT_LIMIT}
    if seen.get("limit", "") != "":
        raw = seen["limit"]
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
            raise ListQueryError("limit", f"limit must be an integer from 1 to {MAX_LIMIT}, not {raw[:20]!r}")
        out["limit"] = int(raw)
    if seen.get("after"):
        out["after"] = seen["after"]
    if seen.get("status"):
        wanted = _comma_list(seen["status"])
        unknown = [s for s in wanted if s not in STATUSES]
        if unknown or not wanted:
            raise ListQueryError("status", f"Unknown batch status {', '.join(unknown)[:80]!r}; expected a comma "
                                           "list of " + ", ".join(STATUSES))
        out["status"] = set(wanted)
    for key in ("create_after", "create_before"):
        if seen.get(key):
            out[key] = _stamp(key, seen[key])
    if seen.get("ds_name"):
        out["ds_name"] = seen["ds_name"]
    if seen.get("input_file_ids"):
        ids = _comma_list(seen["input_file_ids"])
        if len(ids) > MAX_FILE_IDS:
            raise ListQueryError("input_file_ids", f"input_file_ids takes at most {MAX_FILE_IDS} ids, not {len(ids)}")
        out["input_file_ids"] = set(ids)
    return out


def list_page(batches: list[dict[str, Any]], query: dict[str, Any]) -> dict[str, Any]:
    """One page of ``batches`` (in creation order) filtered by a ``parse_query`` result, newest first."""
    # newest first; within one second, later creations first (the input is in creation order, sort is stable)
    items = sorted(reversed(batches), key=lambda b: b["created_at"], reverse=True)
    position = {b["id"]: i for i, b in enumerate(items)}  # the cursor is a place in the whole list
    if "status" in query:
        items = [b for b in items if b["status"] in query["status"]]
    if "input_file_ids" in query:
        items = [b for b in items if b["input_file_id"] in query["input_file_ids"]]
    if "ds_name" in query:
        items = [b for b in items if query["ds_name"] in str((b.get("metadata") or {}).get("ds_name") or "")]
    if "create_after" in query:
        items = [b for b in items if b["created_at"] >= query["create_after"]]
    if "create_before" in query:
        items = [b for b in items if b["created_at"] <= query["create_before"]]
    if "after" in query:
        cursor = position.get(query["after"])
        items = [] if cursor is None else [b for b in items if position[b["id"]] > cursor]
    page, more = items[: query["limit"]], len(items) > query["limit"]
    if not page:
        return {"object": "list", "data": None, "first_id": None, "last_id": None, "has_more": False}
    return {"object": "list", "data": [dict(b) for b in page], "first_id": page[0]["id"],
            "last_id": page[-1]["id"], "has_more": more}
