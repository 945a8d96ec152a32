"""OpenAI-compatible API: POST /compatible-mode/v1/chat/completions, and the function batches reuse.

The task is recognised from the text with ``prompts.recognise`` (compatible mode has no ``ocr_options``:
built-in tasks are their fixed prompts sent as text, verbatim; a KIE prompt carries its schema's JSON after
the fixed text). An unknown model is refused with HTTP 404 ``model_not_found`` ("Model can not be found."),
as the compatible endpoint does. Images are ``image_url`` parts (``{"url": ...}`` or a bare string); ``min_pixels`` /
``max_pixels`` are read next to ``image_url`` (official examples) or inside it (seen in third-party guides).
``enable_rotate`` does not exist here and is ignored. There is no ``ocr_result``: the answer is text only,
with OpenAI usage (prompt/completion tokens + details). ``stream: true`` answers ``chat.completion.chunk``
SSE lines ending with ``data: [DONE]``.

``answer_chat_completion(state, body)`` is the same OCR path without the HTTP layer (no auth, quota or
random faults; content errors still apply), used by the batch plug-in to process each JSONL line.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from starlette.responses import Response, StreamingResponse

from qwenocr_emulator import recognize
from qwenocr_emulator.faults import account_error
from qwenocr_emulator.imagesrc import ImageRef
from qwenocr_emulator.models import Model, lookup
from qwenocr_emulator.prompts import Task, recognise
from qwenocr_emulator.responses import json_response
from qwenocr_emulator.state import ApiError, EmulatorState, invalid_parameter, new_request_id

CHAT_PATH = "/compatible-mode/v1/chat/completions"


@dataclass
class ChatRequest:
    model: Model
    name: str  # the model name as requested (an alias stays an alias in the answer)
    task: Task
    schema: dict | None
    prompt: str | None
    images: list[ImageRef] = field(default_factory=list)
    stream: bool = False
    max_tokens: int | None = None


def parse_chat(body: Any) -> ChatRequest:
    if not isinstance(body, dict):
        raise invalid_parameter("The request body must be a JSON object.")
    model = body.get("model")
    if not model or not isinstance(model, str):
        raise ApiError(400, "InvalidParameter", "you must provide a model parameter", param="model")
    spec = lookup(model)
    if spec is None:
        raise model_not_found()
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "InvalidParameter", "messages must be a non-empty list", param="messages")
    users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    if not users:
        raise ApiError(400, "InvalidParameter", "a user message is required", param="messages")
    content = users[-1].get("content")
    if isinstance(content, str):
        content = [{"type": "text", "text": content}]
    if not isinstance(content, list) or not content:
        raise ApiError(400, "InvalidParameter", "message content must not be empty", param="messages")
    images, texts = [], []
    for part in content:
        if not isinstance(part, dict):
            raise invalid_parameter("Each content part must be an object.")
        kind = part.get("type") or ("image_url" if "image_url" in part else "text")
        if kind == "image_url":
            iu = part.get("image_url")
            inner = iu if isinstance(iu, dict) else {}
            url = inner.get("url") if isinstance(iu, dict) else iu
            images.append(ImageRef(url, part.get("min_pixels", inner.get("min_pixels")),
                                   part.get("max_pixels", inner.get("max_pixels"))))
        elif kind == "text":
            texts.append(str(part.get("text", "")))
        else:
            raise invalid_parameter(f"Unsupported content part type {kind!r}.")
    if not images:
        raise invalid_parameter("The OCR model needs at least one image_url part in the user message.")
    prompt = "\n".join(t for t in texts if t) or None
    task, schema = recognise(prompt)
    return ChatRequest(model=spec, name=model, task=task, schema=schema, prompt=prompt, images=images,
                       stream=bool(body.get("stream", False)),
                       max_tokens=recognize.check_max_tokens(
                           body.get("max_tokens", body.get("max_completion_tokens")), spec))


def model_not_found() -> ApiError:
    return ApiError(404, "model_not_found", "Model can not be found.", compat_code="model_not_found")


def chat_usage(ans: recognize.Answer) -> dict[str, Any]:
    return {
        "prompt_tokens": ans.input_tokens,
        "completion_tokens": ans.output_tokens,
        "total_tokens": ans.input_tokens + ans.output_tokens,
        "prompt_tokens_details": {"image_tokens": ans.image_tokens, "text_tokens": ans.prompt_tokens},
        "completion_tokens_details": {"text_tokens": ans.output_tokens},
    }


def completion_body(ans: recognize.Answer, model: str, completion_id: str | None = None) -> dict[str, Any]:
    return {
        "id": completion_id or f"chatcmpl-{uuid.uuid4()}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": None,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": ans.text},
                     "finish_reason": ans.finish_reason, "logprobs": None}],
        "usage": chat_usage(ans),
    }


def answer_chat_completion(state: EmulatorState, body: dict) -> tuple[int, dict]:
    """(status, OpenAI-shaped body) for one chat-completions request body; blocking (runs OCR inline).

    Counts OCR calls and usage in the stats, but applies no auth, quota, latency or random faults:
    the caller (the batch plug-in) decides those. oss:// images resolve without the header.
    """
    rid = new_request_id()
    try:
        req = parse_chat(body)
        received = recognize.receive(req.images, state, req.model, oss_resolve=True)
        recognize.inspect(received, state)
        ans = recognize.truncate(recognize.answer(received, state, req.task, schema=req.schema,
                                                  prompt=req.prompt, with_ocr_result=False), req.max_tokens)
    except ApiError as err:
        return err.status, err.compatible_body(rid)
    state.add_usage(ans.input_tokens, ans.output_tokens, ans.image_tokens)
    return 200, completion_body(ans, req.name)


def _stream(ans: recognize.Answer, model: str):
    from qwenocr_emulator.native import chunks

    cid, created = f"chatcmpl-{uuid.uuid4()}", int(time.time())

    def chunk(delta: dict, finish: str | None, usage: dict | None = None) -> str:
        body = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                "system_fingerprint": None,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]}
        if usage is not None:
            body["usage"] = usage
        return "data: " + json.dumps(body, ensure_ascii=False) + "\n\n"

    parts = chunks(ans.text)
    events = [chunk({"role": "assistant", "content": parts[0]}, None)]
    events += [chunk({"content": p}, None) for p in parts[1:]]
    events.append(chunk({}, ans.finish_reason, chat_usage(ans)))
    events.append("data: [DONE]\n\n")
    return events


async def run_chat(request: Request, state: EmulatorState) -> Response:
    rid = request.state.request_id
    state.check_auth(request)
    if (refused := account_error(state.account_state)) is not None:
        raise refused
    try:
        body = await request.json()
    except ValueError:
        raise invalid_parameter("The request body is not valid JSON.") from None
    req = parse_chat(body)
    inline = recognize.can_inline(req.images, state)
    received = await recognize.offload(inline, recognize.receive, req.images, state, req.model,
                                       oss_resolve=True)
    dropped = await recognize.gate(request, state, received, req.prompt)
    if dropped is not None:
        return dropped
    recognize.inspect(received, state)
    ans = await recognize.offload(inline, recognize.answer, received, state, req.task, schema=req.schema,
                                  prompt=req.prompt, with_ocr_result=False)
    recognize.truncate(ans, req.max_tokens)
    state.faults.charge_output(ans.output_tokens)
    state.add_usage(ans.input_tokens, ans.output_tokens, ans.image_tokens)
    await state.faults.delay(ans.ocr_seconds)
    if req.stream:
        return StreamingResponse(_stream(ans, req.name), media_type="text/event-stream",
                                 headers={"x-request-id": rid})
    return json_response(completion_body(ans, req.name), request_id=rid)


def register_compatible_routes(app: FastAPI, state: EmulatorState) -> None:
    @app.post(CHAT_PATH)
    async def chat_completions(request: Request) -> Response:
        return await run_chat(request, state)
