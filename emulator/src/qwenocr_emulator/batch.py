"""The emulator's files and batches endpoints (OpenAI-compatible, DashScope shapes as recorded).

Why a real lifecycle and not canned answers: the operator, sensor and trigger decide on ``status``,
``request_counts`` and the output/error file ids, and they must be exercised through every path the
service takes — validating → in_progress → finalizing → completed, cancel → cancelling → cancelled,
validation failures (``url_not_found``, ``mismatched_model``, ``duplicate_custom_id``) as ``failed`` with
``errors``, and (for tests) ``fail`` / ``expire`` outcomes. Each line is answered by the same OCR path as
realtime compatible-mode calls (``answer_chat_completion``), in a worker thread so the event loop keeps
serving polls while a batch is in progress. ``--batch-seconds`` sets how long a batch stays busy.

``completion_window`` accepts ``24h`` … ``336h`` (whole hours); anything else is refused with the
OpenAI-style validation error (``param: completion_window``). Lines naming a model the emulator's table
does not know fail validation with ``model_not_found``. While the account is in a refused state
(``--account-state``), creating a batch is refused with that state's error.

``metadata`` (``ds_name``, ``ds_description``, ``ds_batch_finish_callback`` and any other key) is stored as
given and returned on get and list; it must be an object of string values (the documented examples; the
OpenAI contract), else 400 on ``param: metadata``. The list filters are ``batchlist.py``.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse, Response

from qwenocr_emulator.batchcheck import MAX_WINDOW_H, MIN_WINDOW_H, TEST_ENDPOINT, validate_input, window_ok
from qwenocr_emulator.batchlist import ListQueryError, list_page, parse_query

PREFIX = "/compatible-mode/v1"
ENDPOINTS = {"/v1/chat/completions", TEST_ENDPOINT}
PURPOSES = {"batch", "file-extract", "fine-tune"}
Answer = Callable[[Any, dict], "tuple[int, dict]"]


@dataclass
class BatchStore:
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    content: dict[str, bytes] = field(default_factory=dict)
    batches: dict[str, dict[str, Any]] = field(default_factory=dict)
    tasks: dict[str, asyncio.Task] = field(default_factory=dict)
    cancel_requested: set[str] = field(default_factory=set)


def _knob(state: Any, name: str, default: Any) -> Any:
    config = getattr(state, "config", None)
    if isinstance(config, dict):
        value = config.get(name, default)
    else:
        value = getattr(config, name, default)
    return default if value is None else value


def _error(status: int, message: str, *, param: str | None = None, code: str | None = None,
           type_: str = "invalid_request_error") -> JSONResponse:
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers={"x-request-id": str(uuid.uuid4())})


def _now() -> int:
    return int(time.time())


def _default_answer(state: Any, body: dict) -> tuple[int, dict]:
    from qwenocr_emulator.compatible import answer_chat_completion  # the shared OCR path

    return answer_chat_completion(state, body)


def register_batch_routes(app: FastAPI, state: Any, *, answer: Answer | None = None) -> BatchStore:
    """Add /files and /batches to ``app``. ``answer(state, body) -> (status, body)`` answers one line."""
    store: BatchStore = getattr(state, "batch_store", None) or BatchStore()
    try:
        state.batch_store = store
    except AttributeError:  # pragma: no cover - a frozen state object
        pass
    answer_fn: Answer = answer or _default_answer

    def guard(request: Request, kind: str) -> Response | None:
        check = getattr(state, "check_auth", None)
        denied = check(request) if check else None
        if denied is not None:
            _count(kind, getattr(denied, "status_code", 401))
        return denied

    def _count(kind: str, status: int) -> None:
        counter = getattr(state, "count", None)
        if counter:
            counter(kind, status)

    def reply(kind: str, body: Any, status: int = 200) -> JSONResponse:
        _count(kind, status)
        return JSONResponse(body, status_code=status, headers={"x-request-id": str(uuid.uuid4())})

    def missing(kind: str, what: str, ident: str) -> JSONResponse:
        _count(kind, 404)
        return _error(404, f"{what} {ident!r} not found", code="NotFound", type_="not_found_error")

    # -- files ---------------------------------------------------------------------------------------------
    def new_file(data: bytes, filename: str, purpose: str, prefix: str) -> dict[str, Any]:
        fid = f"{prefix}-{uuid.uuid4().hex[:24]}"
        obj = {"id": fid, "object": "file", "bytes": len(data), "filename": filename, "purpose": purpose,
               "status": "processed", "created_at": _now()}
        store.files[fid], store.content[fid] = obj, data
        return obj

    @app.post(PREFIX + "/files")
    async def upload_file(request: Request, file: UploadFile = File(...), purpose: str = Form(...)):
        if (denied := guard(request, "files")) is not None:
            return denied
        if purpose not in PURPOSES:
            _count("files", 400)
            return _error(400, f"'purpose' must be one of {', '.join(sorted(PURPOSES))}", param="purpose")
        data = await file.read()
        prefix = {"batch": "file-batch", "file-extract": "file-fe"}.get(purpose, "file-ft")
        return reply("files", new_file(data, file.filename or "upload", purpose, prefix))

    @app.get(PREFIX + "/files")
    async def list_files(request: Request):
        if (denied := guard(request, "files")) is not None:
            return denied
        data = sorted(store.files.values(), key=lambda f: f["created_at"], reverse=True)
        return reply("files", {"object": "list", "data": data, "has_more": False})

    @app.get(PREFIX + "/files/{file_id}")
    async def get_file(request: Request, file_id: str):
        if (denied := guard(request, "files")) is not None:
            return denied
        obj = store.files.get(file_id)
        return reply("files", obj) if obj else missing("files", "file", file_id)

    @app.get(PREFIX + "/files/{file_id}/content")
    async def file_content(request: Request, file_id: str):
        if (denied := guard(request, "files")) is not None:
            return denied
        if file_id not in store.content:
            return missing("files", "file", file_id)
        _count("files", 200)
        return Response(store.content[file_id], media_type="application/octet-stream",
                        headers={"x-request-id": str(uuid.uuid4())})

    @app.delete(PREFIX + "/files/{file_id}")
    async def delete_file(request: Request, file_id: str):
        if (denied := guard(request, "files")) is not None:
            return denied
        if store.files.pop(file_id, None) is None:
            return missing("files", "file", file_id)
        store.content.pop(file_id, None)
        return reply("files", {"id": file_id, "object": "file", "deleted": True})

    # -- batches -------------------------------------------------------------------------------------------
    @app.post(PREFIX + "/batches")
    async def create_batch(request: Request):
        if (denied := guard(request, "batches")) is not None:
            return denied
        try:
            body = await request.json()
        except ValueError:
            _count("batches", 400)
            return _error(400, "request body is not JSON")
        file_id = body.get("input_file_id")
        if file_id not in store.files:
            _count("batches", 400)
            return _error(400, f"input_file_id {file_id!r} not found", param="input_file_id")
        if body.get("endpoint") not in ENDPOINTS:
            _count("batches", 400)
            return _error(400, f"endpoint {body.get('endpoint')!r} is not supported", param="endpoint")
        window = body.get("completion_window", "24h")
        if not window_ok(window):
            _count("batches", 400)
            return _error(400, f"Invalid completion_window {window!r}: it must be between "
                               f"'{MIN_WINDOW_H}h' and '{MAX_WINDOW_H}h' in whole hours.",
                          param="completion_window", code="invalid_value")
        metadata = body.get("metadata")
        if metadata is not None and (not isinstance(metadata, dict)
                                     or not all(isinstance(v, str) for v in metadata.values())):
            _count("batches", 400)
            return _error(400, "metadata must be an object of string keys and values", param="metadata")
        refused = _account_refusal()
        if refused is not None:
            _count("batches", refused.status)
            return _error(refused.status, refused.message, code=refused.code,
                          type_="invalid_request_error" if refused.status == 400 else "requests")
        batch = _new_batch(file_id, body)
        store.batches[batch["id"]] = batch
        store.tasks[batch["id"]] = asyncio.get_running_loop().create_task(_run(batch))
        return reply("batches", dict(batch))

    @app.get(PREFIX + "/batches")
    async def list_batches(request: Request):
        if (denied := guard(request, "batches")) is not None:
            return denied
        try:
            query = parse_query(request.query_params.multi_items())
        except ListQueryError as exc:
            _count("batches", 400)
            return _error(400, str(exc), param=exc.param)
        return reply("batches", list_page(list(store.batches.values()), query))

    @app.get(PREFIX + "/batches/{batch_id}")
    async def get_batch(request: Request, batch_id: str):
        if (denied := guard(request, "batches")) is not None:
            return denied
        batch = store.batches.get(batch_id)
        return reply("batches", dict(batch)) if batch else missing("batches", "batch", batch_id)

    @app.post(PREFIX + "/batches/{batch_id}/cancel")
    async def cancel_batch(request: Request, batch_id: str):
        if (denied := guard(request, "batches")) is not None:
            return denied
        batch = store.batches.get(batch_id)
        if batch is None:
            return missing("batches", "batch", batch_id)
        if batch["status"] in ("validating", "in_progress", "finalizing"):
            batch["status"] = "cancelling"
            batch["cancelling_at"] = _now()
            store.cancel_requested.add(batch_id)
        return reply("batches", dict(batch))

    def _account_refusal():
        from qwenocr_emulator.faults import account_error

        config = getattr(state, "config", None)
        return account_error(getattr(config, "account_state", "ok") or "ok")

    # -- lifecycle -----------------------------------------------------------------------------------------
    def _new_batch(file_id: str, body: dict) -> dict[str, Any]:
        return {
            "id": f"batch_{uuid.uuid4()}", "object": "batch", "endpoint": body["endpoint"], "errors": None,
            "input_file_id": file_id, "completion_window": body.get("completion_window", "24h"),
            "status": "validating",
            "output_file_id": None, "error_file_id": None, "created_at": _now(), "in_progress_at": None,
            "expires_at": None, "finalizing_at": None, "completed_at": None, "failed_at": None,
            "expired_at": None, "cancelling_at": None, "cancelled_at": None,
            "request_counts": {"total": 0, "completed": 0, "failed": 0},
            "metadata": dict(body["metadata"]) if body.get("metadata") else None,  # every key, as given
        }

    async def _run(batch: dict[str, Any]) -> None:
        seconds = float(_knob(state, "batch_seconds", 2.0))
        outcome = str(_knob(state, "batch_outcome", "complete"))
        bid = batch["id"]
        lines, errors = validate_input(store.content[batch["input_file_id"]], batch["endpoint"])
        await _pause(bid, seconds * 0.1)
        if bid in store.cancel_requested:
            return _finish_cancel(batch, [], [], lines)
        if errors:
            batch.update(status="failed", failed_at=_now(), errors={"object": "list", "data": errors})
            return
        batch.update(status="in_progress", in_progress_at=_now())
        batch["request_counts"]["total"] = len(lines)
        started = time.monotonic()
        if outcome == "fail":
            await _pause(bid, seconds * 0.4)
            if bid in store.cancel_requested:
                return _finish_cancel(batch, [], [], lines)
            batch.update(status="failed", failed_at=_now(), errors={"object": "list", "data": [
                {"code": "internal_error", "message": "the batch failed (emulated --batch-outcome fail)",
                 "param": None, "line": None}]})
            return
        todo = lines[: len(lines) // 2] if outcome == "expire" else lines
        done: list[dict] = []
        failed: list[dict] = []
        for line in todo:
            if bid in store.cancel_requested:
                break
            out = await asyncio.to_thread(_answer_line, line)
            (failed if out["error"] else done).append(out)
            batch["request_counts"]["completed" if not out["error"] else "failed"] += 1
        await _pause(bid, seconds * 0.8 - (time.monotonic() - started))
        if bid in store.cancel_requested:
            return _finish_cancel(batch, done, failed, lines)
        if outcome == "expire":
            unfinished = [_error_line(x, "batch_expired", "the batch expired before this request ran")
                          for x in lines[len(todo):]]
            _write_outputs(batch, done, failed + unfinished)
            batch["request_counts"]["failed"] += len(unfinished)
            batch.update(status="expired", expired_at=_now())
            return
        batch.update(status="finalizing", finalizing_at=_now())
        await asyncio.sleep(seconds * 0.1)
        _write_outputs(batch, done, failed)
        if bid in store.cancel_requested:  # a cancel during finalizing is too late: it completes
            store.cancel_requested.discard(bid)
        batch.update(status="completed", completed_at=_now())

    async def _pause(bid: str, seconds: float) -> None:
        """Sleep, but wake up within 50 ms of a cancel request (a cancel should not wait out the stage)."""
        end = time.monotonic() + seconds
        while bid not in store.cancel_requested and (left := end - time.monotonic()) > 0:
            await asyncio.sleep(min(left, 0.05))

    def _finish_cancel(batch: dict, done: list[dict], failed: list[dict], lines: list[dict]) -> None:
        finished = {x["custom_id"] for x in done + failed}
        unfinished = [_error_line(x, "batch_cancelled", "the batch was cancelled before this request ran")
                      for x in lines if x.get("custom_id") not in finished]
        _write_outputs(batch, done, failed + unfinished)
        batch["request_counts"]["failed"] = len(failed) + len(unfinished)
        batch["request_counts"]["total"] = max(batch["request_counts"]["total"], len(lines))
        batch.update(status="cancelled", cancelled_at=_now())

    def _write_outputs(batch: dict, done: list[dict], failed: list[dict]) -> None:
        if done:
            batch["output_file_id"] = new_file(_jsonl(done), f"{batch['id']}_output.jsonl", "batch_output",
                                               "file-batch_output")["id"]
        if failed:
            batch["error_file_id"] = new_file(_jsonl(failed), f"{batch['id']}_error.jsonl", "batch_output",
                                              "file-batch_output")["id"]

    def _answer_line(line: dict) -> dict[str, Any]:
        rid = str(uuid.uuid4())
        try:
            if line.get("url") == TEST_ENDPOINT:
                status, body = 200, _test_reply(line["body"], rid)
            else:
                status, body = answer_fn(state, line["body"])
                if status == 200 and isinstance(body, dict):
                    body["id"] = f"chatcmpl-{rid}"  # as recorded: the line's id, request_id and body id agree
        except Exception as exc:  # the engine crashing on one line fails that line, not the batch
            status, body = 500, {"error": {"code": "InternalError", "message": str(exc)}}
        if status == 200:
            return {"id": rid, "custom_id": line["custom_id"],
                    "response": {"status_code": 200, "request_id": rid, "body": body}, "error": None}
        body = body or {}
        err = body.get("error") or {}
        code = err.get("code") or body.get("code") or f"HTTP{status}"
        message = err.get("message") or body.get("message") or ""
        return {"id": rid, "custom_id": line["custom_id"],
                "response": {"status_code": status, "request_id": rid, "body": body},
                "error": {"code": code, "message": message}}

    return store


def _test_reply(body: dict, rid: str) -> dict[str, Any]:
    """What the test endpoint answers: a fixed completion, no inference, no billing."""
    return {"id": f"chatcmpl-{rid}", "object": "chat.completion", "created": _now(), "model": body.get("model"),
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": "This is a test result."}}],
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}}


def _error_line(line: dict, code: str, message: str) -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "custom_id": line.get("custom_id"), "response": None,
            "error": {"code": code, "message": message}}


def _jsonl(items: list[dict]) -> bytes:
    return "".join(json.dumps(x, ensure_ascii=False) + "\n" for x in items).encode("utf-8")
