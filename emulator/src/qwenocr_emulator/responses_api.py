"""The OpenAI-compatible Responses API: ``POST /compatible-mode/v1/responses`` (qwen3.5-ocr and later).

What the documentation says (reference §10), and what the emulator does with it:
- only ``qwen3.5-ocr`` and later models ("仅 qwen3.5-ocr 及以后版本支持"). An older OCR model is a known
  model on an endpoint that does not serve it: refused with 400 ``invalid_parameter_error`` (the code the
  compatible endpoints put on content errors in public error bodies); the precise wording the service uses
  is not published. An unknown name is 404 ``model_not_found``, as on chat completions (§9).
- a built-in task (``ocr_options``) is **combined** with the user's ``input_text`` prompt: the text answers
  the prompt (custom-prompt rules, ``layout.py``) and the task's result is in ``ocr_result``; without a prompt
  the text is the task's own output. Without ``ocr_options`` the text decides the task, as in compatible mode.
- whole PDFs through ``input_file`` (``pdfdoc.py``: ≤ 50 pages, ≤ 100 MB; images ≤ 20 MB for qwen3.5-ocr).
  ``oss://`` URLs from the temporary upload need the header ``X-DashScope-OssResourceResolve: enable``.
- the answer: the Responses envelope (``id``, ``object: "response"``, ``status``, ``model``, ``output[0]`` an
  assistant message whose ``content[0]`` is ``output_text`` with ``ocr_result``), usage in input/output
  tokens with ``input_tokens_details.image_tokens``. ``ocr_result.layouts`` lists every page's blocks
  (``pagelayout.py``); key information extraction gives ONE ``kv_result`` read over all pages at once.
- ``max_output_tokens`` cuts the text like ``max_tokens`` elsewhere: ``status: "incomplete"``,
  ``incomplete_details.reason: "max_output_tokens"``, no ``ocr_result``.
Every request counts under ``responses`` in ``/emulator/stats``; PDF pages read under ``pdf_pages``.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from fastapi import FastAPI, Request
from starlette.responses import Response

from qwenocr_emulator import pagelayout, pdfdoc, recognize
from qwenocr_emulator.faults import account_error, inspection_error
from qwenocr_emulator.imagesrc import load_document
from qwenocr_emulator.prompts import Task
from qwenocr_emulator.responses import json_response
from qwenocr_emulator.respparse import RESPONSES_PATH, ResponsesRequest, bad_request, parse_responses
from qwenocr_emulator.state import ApiError, EmulatorState


def receive_all(req: ResponsesRequest, state: EmulatorState, *, oss: bool) -> tuple[list[recognize.Received], int]:
    """Every input as received images, in order (a PDF adds its pages), and how many were PDF pages."""
    out: list[recognize.Received] = []
    pdf_pages = 0
    for part in req.parts:
        if part.ref is not None:
            out.extend(recognize.receive([part.ref], state, req.model, oss_resolve=oss))
            continue
        data, name = load_document(part.file_url, state, oss_resolve=oss, limit=pdfdoc.MAX_PDF_BYTES)
        if not pdfdoc.is_pdf(data):
            raise bad_request(f"input_file {name[:200]} is not a PDF; send images as input_image.", "input")
        pages = pdfdoc.pages(data, name, state, req.model)
        pdf_pages += len(pages)
        out.extend(pages)
    return out, pdf_pages


def inspect(received: list[recognize.Received], state: EmulatorState) -> None:
    """Content inspection: images as elsewhere; a PDF page by its name only (its payload is the PDF)."""
    marker = state.config.inspection_marker
    for rec in received:
        if isinstance(rec.data, pdfdoc.PagePayload):
            if marker and marker in rec.name:
                raise inspection_error()
        else:
            recognize.inspect([rec], state)


def answer(req: ResponsesRequest, received: list[recognize.Received], state: EmulatorState) -> recognize.Answer:
    """Read every page once; derive the task's result and, when a prompt is combined with it, the prompt's text."""
    started = time.perf_counter()
    pages = recognize.read_pages(received, state)
    ans = recognize.answer(received, state, req.task, schema=req.schema, prompt=req.prompt, pages=pages,
                           combine_prompt=req.model.combines_prompt)
    if req.with_options and req.prompt and req.task is not Task.CUSTOM:
        said = recognize.answer(received, state, Task.CUSTOM, prompt=req.prompt, pages=pages, with_ocr_result=False)
        ans.text, ans.output_tokens = said.text, said.output_tokens
    ans.ocr_result = {**(ans.ocr_result or {}), "layouts": pagelayout.layouts(pages)}
    ans.ocr_seconds = time.perf_counter() - started
    return recognize.truncate(ans, req.max_tokens)


def response_body(ans: recognize.Answer, model: str) -> dict[str, Any]:
    done = ans.finish_reason == "stop"
    status = "completed" if done else "incomplete"
    content: dict[str, Any] = {"type": "output_text", "text": ans.text, "annotations": []}
    if ans.ocr_result is not None:
        content["ocr_result"] = ans.ocr_result
    return {
        "id": f"resp_{uuid.uuid4().hex}",
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "model": model,
        "output": [{"type": "message", "id": f"msg_{uuid.uuid4().hex}", "status": status, "role": "assistant",
                    "content": [content]}],
        "usage": {"input_tokens": ans.input_tokens, "output_tokens": ans.output_tokens,
                  "total_tokens": ans.input_tokens + ans.output_tokens,
                  "input_tokens_details": {"image_tokens": ans.image_tokens, "text_tokens": ans.prompt_tokens}},
        "error": None,
        "incomplete_details": None if done else {"reason": "max_output_tokens"},
    }


async def run_responses(request: Request, state: EmulatorState) -> Response:
    rid = request.state.request_id
    state.check_auth(request)
    if (refused := account_error(state.account_state)) is not None:
        raise refused
    try:
        try:
            body = await request.json()
        except ValueError:
            raise bad_request("The request body is not valid JSON.") from None
        req = parse_responses(body)
        oss = request.headers.get("x-dashscope-ossresourceresolve", "").lower() == "enable"
        received, pdf_pages = await recognize.offload(False, receive_all, req, state, oss=oss)
        dropped = await recognize.gate(request, state, received, req.prompt)
        if dropped is not None:
            return dropped
        inspect(received, state)
        ans = await recognize.offload(False, answer, req, received, state)
    except ApiError as err:
        if err.status == 400 and err.compat_code is None and err.code == "InvalidParameter":
            err.compat_code = "invalid_parameter_error"  # the compatible endpoints' code for content errors
        raise
    state.count_pdf_pages(pdf_pages)
    state.faults.charge_output(ans.output_tokens)
    state.add_usage(ans.input_tokens, ans.output_tokens, ans.image_tokens)
    await state.faults.delay(ans.ocr_seconds)
    return json_response(response_body(ans, req.name), request_id=rid)


def register_responses_routes(app: FastAPI, state: EmulatorState) -> None:
    @app.post(RESPONSES_PATH)
    async def responses(request: Request) -> Response:
        return await run_responses(request, state)
