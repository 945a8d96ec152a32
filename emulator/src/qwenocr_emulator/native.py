"""Native DashScope API: POST /api/v1/services/aigc/multimodal-generation/generation (+ SSE).

Request handling follows the service: the last user message's content items are images (``image`` with
per-item ``min_pixels``/``max_pixels``/``enable_rotate``) and optional ``text``; the task comes from
``parameters.ocr_options`` (built-in tasks; ``task_config.result_schema`` for KIE) or, without it, from the
text (a fixed prompt is recognised with ``prompts.recognise``; anything else is a custom prompt). An unknown
model name is refused with 400 ``InvalidParameter`` ("Model not exist."), as the native API does.

Errors: auth (401), account states (400/403/429) and 500s are plain HTTP responses in both modes; request
and content errors (400) are plain JSON without SSE, and an ``event:error`` (``:HTTP_STATUS/400``) in an
HTTP 200 stream — as the real service does. Throttling (quota or ``--fail-rate-429``) of a streaming call is
an ``event:error`` frame with ``:HTTP_STATUS/429`` in an HTTP 200 stream (``--sse-throttling http``: a plain
429 instead). Streaming is on with ``X-DashScope-SSE: enable`` (the SDK) or
``Accept: text/event-stream`` (the recorded raw HTTP call). While streaming, ``finish_reason`` is the
string ``"null"``; with ``incremental_output`` each event carries only new text and the last event has empty
content and ``finish_reason: "stop"``; without it every event carries the whole text so far. Usage is
cumulative in every event. The ``ocr_result`` rides on the last event that carries content.

Other ``/api/v1/services/...`` paths (text-generation etc.) check the key and the message shape, then
answer 400: the emulator serves OCR models only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from starlette.responses import Response

from qwenocr_emulator import recognize
from qwenocr_emulator.faults import account_error
from qwenocr_emulator.imagesrc import ImageRef
from qwenocr_emulator.models import Model, lookup
from qwenocr_emulator.prompts import BUILTIN, Task, check_schema, recognise
from qwenocr_emulator.responses import NATIVE_HEADERS, json_response, sse_event, sse_response
from qwenocr_emulator.state import ApiError, EmulatorState, invalid_parameter

ROLE_MESSAGE = "Role must be user or assistant and Content length must be greater than 0"
GENERATION_PATH = "/api/v1/services/aigc/multimodal-generation/generation"


@dataclass
class NativeRequest:
    model: Model
    task: Task
    schema: dict | None
    prompt: str | None
    images: list[ImageRef] = field(default_factory=list)
    stream: bool = False
    incremental: bool = False
    max_tokens: int | None = None


def last_user_content(messages: Any) -> list:
    if not isinstance(messages, list) or not messages:
        raise invalid_parameter(ROLE_MESSAGE)
    users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    if not users or any(isinstance(m, dict) and m.get("role") not in ("user", "assistant", "system")
                        for m in messages):
        raise invalid_parameter(ROLE_MESSAGE)
    content = users[-1].get("content")
    if isinstance(content, str):
        content = [{"text": content}] if content else []
    if not isinstance(content, list) or not content:
        raise invalid_parameter(ROLE_MESSAGE)
    return content


def parse_native(body: Any, *, stream: bool) -> NativeRequest:
    if not isinstance(body, dict):
        raise invalid_parameter("The request body must be a JSON object.")
    model = body.get("model")
    if not model or not isinstance(model, str):
        raise ApiError(400, "BadRequest.EmptyModel", 'Required parameter "model" missing from request.')
    spec = lookup(model)
    if spec is None:
        raise invalid_parameter("Model not exist.")
    inp = body.get("input")
    if not isinstance(inp, dict):
        raise ApiError(400, "BadRequest.EmptyInput", 'Required parameter "input" missing from request.')
    content = last_user_content(inp.get("messages"))
    images, texts = [], []
    for item in content:
        if not isinstance(item, dict):
            raise invalid_parameter("Each content item must be an object with an image or a text.")
        if "image" in item:
            images.append(ImageRef(item["image"], item.get("min_pixels"), item.get("max_pixels"),
                                   bool(item.get("enable_rotate", False))))
        elif "text" in item:
            texts.append(str(item["text"]))
        else:
            raise invalid_parameter(f"Unsupported content item with keys {sorted(item)}.")
    if not images:
        raise invalid_parameter("The OCR model needs at least one image in the user message.")
    params = body.get("parameters") or {}
    if not isinstance(params, dict):
        raise invalid_parameter('"parameters" must be an object.')
    prompt = "\n".join(texts) or None
    options = params.get("ocr_options")
    task, schema = parse_ocr_options(options, spec, model) if options else recognise(prompt)
    return NativeRequest(model=spec, task=task, schema=schema, prompt=prompt, images=images,
                         stream=stream, incremental=bool(params.get("incremental_output", False)),
                         max_tokens=recognize.check_max_tokens(params.get("max_tokens"), spec))


def parse_ocr_options(options: Any, spec: Model, model: str) -> tuple[Task, dict | None]:
    """(task, schema) of an ``ocr_options`` object (native ``parameters``, Responses API extra body field)."""
    if not isinstance(options, dict) or "task" not in options:
        raise invalid_parameter("ocr_options must be an object with a task.")
    if options["task"] not in BUILTIN:
        raise invalid_parameter(f"Invalid ocr_options.task {options['task']!r}; expected one of: " + ", ".join(BUILTIN))
    task = Task(options["task"])
    if not spec.builtin_tasks:
        raise invalid_parameter(f"The model {model} does not support built-in OCR tasks (ocr_options).")
    config = options.get("task_config") or {}
    schema = None
    if task is Task.KEY_INFORMATION_EXTRACTION and isinstance(config, dict):
        try:
            schema = check_schema(config.get("result_schema"))
        except ValueError as exc:
            raise invalid_parameter(f"Invalid result_schema: {exc}") from exc
    return task, schema


def native_usage(ans: recognize.Answer, output_tokens: int | None = None) -> dict[str, Any]:
    out = ans.output_tokens if output_tokens is None else output_tokens
    return {
        "input_tokens": ans.input_tokens,
        "output_tokens": out,
        "total_tokens": ans.input_tokens + out,
        "image_tokens": ans.image_tokens,
        "input_tokens_details": {"text_tokens": ans.prompt_tokens, "image_tokens": ans.image_tokens},
        "output_tokens_details": {"text_tokens": out},
    }


def _body(content: list, finish: str, usage: dict, request_id: str) -> dict[str, Any]:
    return {"output": {"choices": [{"finish_reason": finish,
                                    "message": {"role": "assistant", "content": content}}]},
            "usage": usage, "request_id": request_id}


def _content(text: str, ocr_result: dict | None) -> list[dict]:
    item: dict[str, Any] = {}
    if ocr_result is not None:
        item["ocr_result"] = ocr_result
    item["text"] = text
    return [item]


_PIECE = re.compile(r"[\u3000-\u9fff\uff00-\uffef]|[^\s\u3000-\u9fff\uff00-\uffef]+\s*|\s+")


def chunks(text: str, size: int = 4) -> list[str]:
    """Split text into stream deltas of a few 'tokens' (a CJK char or a word each)."""
    pieces = _PIECE.findall(text)
    return ["".join(pieces[i:i + size]) for i in range(0, len(pieces), size)] or [""]


def stream_events(ans: recognize.Answer, req: NativeRequest, request_id: str) -> list[str]:
    parts = chunks(ans.text)
    total = len(parts)
    events, sent = [], ""
    for i, part in enumerate(parts, start=1):
        sent += part
        out_tokens = max(1, round(ans.output_tokens * i / total))
        last_full = not req.incremental and i == total
        content = _content(sent if not req.incremental else part, ans.ocr_result if last_full else None)
        events.append(sse_event(i, _body(content, ans.finish_reason if last_full else "null",
                                          native_usage(ans, out_tokens), request_id)))
    if req.incremental:
        final = [{"ocr_result": ans.ocr_result}] if ans.ocr_result is not None else []
        events.append(sse_event(total + 1, _body(final, ans.finish_reason, native_usage(ans), request_id)))
    return events


def error_stream(err: ApiError, request_id: str) -> Response:
    return sse_response([sse_event(1, err.native_body(request_id), event="error", status=err.status)],
                        request_id=request_id)


async def run_native(request: Request, state: EmulatorState) -> Response:
    rid = request.state.request_id
    state.check_auth(request)
    if (refused := account_error(state.account_state)) is not None:
        raise refused
    stream = (request.headers.get("x-dashscope-sse", "").lower() == "enable"
              or "text/event-stream" in request.headers.get("accept", "").lower())
    try:
        try:
            body = await request.json()
        except ValueError:
            raise invalid_parameter("The request body is not valid JSON.") from None
        req = parse_native(body, stream=stream)
        oss = request.headers.get("x-dashscope-ossresourceresolve", "").lower() == "enable"
        inline = recognize.can_inline(req.images, state)
        received = await recognize.offload(inline, recognize.receive, req.images, state, req.model,
                                           oss_resolve=oss)
    except ApiError as err:
        if stream and err.status == 400:
            return error_stream(err, rid)
        raise
    try:
        dropped = await recognize.gate(request, state, received, req.prompt)
    except ApiError as err:
        if stream and err.status == 429 and state.config.sse_throttling == "frame":
            return error_stream(err, rid)
        raise
    if dropped is not None:
        return dropped
    try:
        recognize.inspect(received, state)
        ans = await recognize.offload(inline, recognize.answer, received, state, req.task, schema=req.schema,
                                      prompt=req.prompt, combine_prompt=req.model.combines_prompt)
        recognize.truncate(ans, req.max_tokens)
    except ApiError as err:
        if stream and err.status == 400:
            return error_stream(err, rid)
        raise
    state.faults.charge_output(ans.output_tokens)
    state.add_usage(ans.input_tokens, ans.output_tokens, ans.image_tokens)
    await state.faults.delay(ans.ocr_seconds)
    if stream:
        return sse_response(stream_events(ans, req, rid), request_id=rid)
    body = _body(_content(ans.text, ans.ocr_result), ans.finish_reason, native_usage(ans), rid)
    return json_response(body, request_id=rid, headers={**NATIVE_HEADERS, "x-dashscope-finished": "true"})


async def other_service(request: Request, state: EmulatorState) -> Response:
    state.check_auth(request)
    try:
        body = await request.json()
    except ValueError:
        raise invalid_parameter("The request body is not valid JSON.") from None
    inp = body.get("input") if isinstance(body, dict) else None
    if isinstance(inp, dict) and "messages" in inp:
        last_user_content(inp["messages"])
    raise ApiError(400, "InvalidParameter",
                   f"The emulator serves Qwen-VL-OCR only; {request.url.path} is not emulated.")


def register_native_routes(app: FastAPI, state: EmulatorState) -> None:
    @app.post(GENERATION_PATH)
    async def generation(request: Request) -> Response:
        return await run_native(request, state)

    @app.post("/api/v1/services/{rest:path}")
    async def other(request: Request, rest: str) -> Response:
        return await other_service(request, state)
