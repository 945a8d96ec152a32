"""Reading a Responses API request (``POST /compatible-mode/v1/responses``) the way the service documents it.

Body (reference §10): ``model``; ``input`` = a string, or a list of messages whose ``content`` is a string
or a list of parts — ``input_text`` (``text``), ``input_image`` (``image_url``: a URL or a data URL; an
object ``{"url": ...}`` is accepted too; ``min_pixels``/``max_pixels`` next to it as in chat), ``input_file``
(``file_url``: an http(s) URL or an ``oss://`` temporary upload); ``ocr_options`` as an extra body field
(``task`` + ``task_config.result_schema``, as on the native API); ``max_output_tokens``.

Choices where the documentation is silent, stated so nobody takes them for facts:
- multi-turn: the prompt is the last user message's text; its images/files, or — for a follow-up question
  without any — those of the latest earlier user message that has some.
- ``input_file`` with ``file_data`` (inline) or a ``file_id``, and ``input_image`` with a ``file_id``, are
  refused: only URLs are documented. ``stream: true`` is refused: the emulator does not stream this API.
- order matters: inputs are pages in the order they appear (``pagelayout`` numbers them so).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from qwenocr_emulator import recognize
from qwenocr_emulator.imagesrc import ImageRef
from qwenocr_emulator.models import Model, lookup
from qwenocr_emulator.native import parse_ocr_options
from qwenocr_emulator.prompts import Task, recognise
from qwenocr_emulator.state import ApiError

RESPONSES_PATH = "/compatible-mode/v1/responses"


def bad_request(message: str, param: str | None = None) -> ApiError:
    """400 as the compatible endpoints write content errors: ``{"error": {"code": "invalid_parameter_error",
    "type": "invalid_request_error", ...}}`` (the code and type seen in public error bodies of the service)."""
    return ApiError(400, "InvalidParameter", message, param=param, compat_code="invalid_parameter_error")


@dataclass
class Part:
    """One input in order: an image (``ref``) or a document URL (``file_url``)."""

    ref: ImageRef | None = None
    file_url: str | None = None


@dataclass
class ResponsesRequest:
    model: Model
    name: str
    task: Task
    schema: dict | None
    prompt: str | None
    with_options: bool  # a built-in task was asked for through ocr_options
    parts: list[Part] = field(default_factory=list)
    max_tokens: int | None = None


def _messages(inp: Any) -> list[dict]:
    if isinstance(inp, str):
        return [{"role": "user", "content": [{"type": "input_text", "text": inp}]}]
    if not isinstance(inp, list) or not inp:
        raise bad_request("input must be a string or a non-empty list of messages", "input")
    out = []
    for item in inp:
        if not isinstance(item, dict) or item.get("type", "message") != "message":
            raise bad_request("each input item must be a message with a role and content", "input")
        if item.get("role") not in ("user", "assistant", "system", "developer"):
            raise bad_request(f"unsupported role {item.get('role')!r}", "input")
        out.append(item)
    return out


def _parts(content: Any) -> tuple[list[Part], list[str]]:
    if isinstance(content, str):
        return [], [content]
    if not isinstance(content, list):
        raise bad_request("message content must be a string or a list of parts", "input")
    parts, texts = [], []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text"):
            texts.append(str(part.get("text", "")))
        elif kind == "input_image":
            iu = part.get("image_url")
            url = iu.get("url") if isinstance(iu, dict) else iu
            if not url:
                raise bad_request("input_image needs an image_url (a URL or a data URL); file_id is not "
                                  "supported", "input")
            parts.append(Part(ref=ImageRef(url, part.get("min_pixels"), part.get("max_pixels"))))
        elif kind == "input_file":
            if not part.get("file_url"):
                raise bad_request("input_file needs a file_url (an http(s) URL or an oss:// temporary upload); "
                                  "file_data and file_id are not supported", "input")
            parts.append(Part(file_url=part["file_url"]))
        else:
            raise bad_request(f"unsupported content part type {kind!r}", "input")
    return parts, texts


def parse_responses(body: Any) -> ResponsesRequest:
    from qwenocr_emulator.compatible import model_not_found

    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.")
    name = body.get("model")
    if not name or not isinstance(name, str):
        raise bad_request("you must provide a model parameter", "model")
    spec = lookup(name)
    if spec is None:
        raise model_not_found()
    if not spec.responses_api:
        raise bad_request(f"The model {name} is not supported by the Responses API: only qwen3.5-ocr and later "
                          "models are. Use /compatible-mode/v1/chat/completions or the native API.", "model")
    if body.get("stream"):
        raise bad_request("stream is not supported by this emulator's Responses API", "stream")
    users = [m for m in _messages(body.get("input")) if m.get("role") == "user"]
    if not users:
        raise bad_request("a user message is required", "input")
    parts, texts = _parts(users[-1].get("content"))
    for earlier in reversed(users[:-1]):
        if parts:
            break
        parts = _parts(earlier.get("content"))[0]
    if not parts:
        raise bad_request("The OCR model needs at least one input_image or input_file.", "input")
    prompt = "\n".join(t for t in texts if t) or None
    options = body.get("ocr_options")
    # no ocr_options: as in compatible mode, a fixed task prompt sent as text is that task; any other text
    # is a prompt of the user's own; no text is the default text-recognition prompt
    task, schema = parse_ocr_options(options, spec, name) if options else recognise(prompt)
    limit = body.get("max_output_tokens")
    try:
        max_tokens = recognize.check_max_tokens(limit, spec)
    except ApiError:
        raise bad_request(f"Range of max_output_tokens should be [1, {spec.max_output}]",
                          "max_output_tokens") from None
    return ResponsesRequest(model=spec, name=name, task=task, schema=schema, prompt=prompt,
                            with_options=bool(options), parts=parts, max_tokens=max_tokens)
