"""One OCR request spec: what every image of a run is asked, built once from the user's arguments.

Why one spec: the realtime runner, the batch builder and ``hook.recognize`` each used to read the same
arguments (task, prompt, schema, model, pixel bounds, rotation) with their own copy of the rules — "a
prompt with the default task means custom", "custom needs a prompt", the schema and pixel checks — and
each computed the idempotency key its own way. A drift between two copies silently splits the result
cache (realtime and batch share it) or sends a different prompt than the key says. Here each rule is
written once: :func:`build_ocr_request` applies them and returns a frozen :class:`OcrRequest`, whose
:meth:`~OcrRequest.key` is the one keying formula (which bytes or URI a source is keyed on, and which
keys find it, is ``ocr/plan.py``). Errors are ``ValueError``; the Airflow edge turns them
into ``QwenOcrConfigError`` (``operators/base.py``), the client into ``PermanentError``.

No Airflow imports: the core is tested and used (bench, emulator tests) without it.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from typing import Any

from .images import PreparedImage, pixel_bounds, prepare_image
from .models import ModelSpec, get_model
from .results import idempotency_key
from .tasks import OcrTask, prompt_for, validate_schema

log = logging.getLogger(__name__)

#: What a model name may look like (a typo such as "qwen vl ocr" fails before any image is read).
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
#: Image references passed to the service untouched (the service, not the worker, fetches them).
REMOTE_PREFIXES = ("http://", "https://", "oss://", "data:")
DEFAULT_MODEL = "qwen-vl-ocr"


def request_key(sha256: str, task: str | OcrTask, model: str, *, prompt: str | None = None,
                result_schema: dict | None = None, min_pixels: int | None = None,
                max_pixels: int | None = None, enable_rotate: bool = False) -> str:
    """The idempotency key of one request (image bytes + task + model + knobs), computed BEFORE a call to
    skip cached results. Its value is part of every existing cache: never change the formula."""
    task = OcrTask.parse(task).value
    params = {
        "prompt": prompt if task == OcrTask.CUSTOM.value else None,
        "result_schema": result_schema,
        "min_pixels": min_pixels,
        "max_pixels": max_pixels,
        "enable_rotate": bool(enable_rotate),
    }
    return idempotency_key(sha256, task, model, params)


@dataclass(frozen=True)
class OcrRequest:
    """The effective request for every image of a run (``task`` already resolved, ``prompt`` only for custom).

    Build it with :func:`build_ocr_request`; the constructor trusts its arguments.
    """

    task: OcrTask
    spec: ModelSpec
    prompt: str | None = None
    result_schema: dict | None = None
    min_pixels: int | None = None
    max_pixels: int | None = None
    enable_rotate: bool = False
    fetch: bool = False

    @property
    def model(self) -> str:
        return self.spec.name

    @property
    def text(self) -> str:
        """The prompt text a compatible-mode / Batch request carries (and the realtime token estimate counts)."""
        return prompt_for(self.task, prompt=self.prompt, result_schema=self.result_schema)

    @property
    def bounds(self) -> tuple[int, int]:
        """The effective (min, max) pixels of the model's resize."""
        return pixel_bounds(self.spec, self.min_pixels, self.max_pixels)

    def key(self, sha256: str) -> str:
        """The idempotency key of this request for an image whose bytes hash to ``sha256``."""
        return request_key(sha256, self.task, self.model, prompt=self.prompt, result_schema=self.result_schema,
                           min_pixels=self.min_pixels, max_pixels=self.max_pixels, enable_rotate=self.enable_rotate)

    def prepare(self, data: bytes, *, sha256: str | None = None) -> PreparedImage:
        """``data`` resized to the model's grid under this request's pixel bounds (raises ImageValidationError)."""
        return prepare_image(data, self.spec, min_pixels=self.min_pixels, max_pixels=self.max_pixels, sha256=sha256)

    def payload(self, image: bytes | str | os.PathLike) -> tuple[PreparedImage | str, str | None]:
        """(what to send, its source name) for bytes, a local path (read and prepared here — never the SDK's
        ``file://`` upload, which reads a process-global base URL and uploads full size) or a URL
        (``http(s)://``, ``oss://``, ``data:``) passed untouched. The one place such an input becomes a payload."""
        if isinstance(image, (bytes, bytearray, memoryview)):
            return self.prepare(bytes(image)), None
        image = os.fspath(image)
        if image.startswith(REMOTE_PREFIXES):
            return image, (None if image.startswith("data:") else image)
        path = image[len("file://"):] if image.startswith("file://") else image
        with open(path, "rb") as fh:
            return self.prepare(fh.read()), path


def _opt_int(name: str, value: Any) -> int | None:
    """Templated numbers arrive as strings ("3072"); empty means "not set"."""
    if value in (None, ""):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a whole number of pixels, not {value!r}") from None


def build_ocr_request(task: str | OcrTask = OcrTask.TEXT_RECOGNITION, prompt: str | None = None,
                      result_schema: dict | str | None = None, model: str | None = None,
                      min_pixels: int | str | None = None, max_pixels: int | str | None = None,
                      enable_rotate: bool = False, fetch: bool = False, *,
                      default_model: str | None = None) -> OcrRequest:
    """Every check and reading of the request arguments, once (raises ``ValueError`` with the reason).

    - ``task``: one of :class:`OcrTask`; a ``prompt`` with the default task means ``custom`` (the user wrote
      their own prompt); with another built-in task the prompt is ignored (logged) — the task's wins;
    - ``custom`` needs a prompt; ``result_schema`` is a dict or its JSON, ≤ 3 levels;
    - ``model`` (else ``default_model``, else ``qwen-vl-ocr``) must look like a model name; one the
      catalogue does not know is accepted with one warning per process (``ocr.models``);
    - ``min_pixels``/``max_pixels`` (ints or their text) must leave a non-empty range for the model.
    """
    parsed = OcrTask.parse(task)
    prompt = prompt or None
    if parsed is OcrTask.CUSTOM and not prompt:
        raise ValueError("task 'custom' needs a prompt")
    if prompt and parsed is OcrTask.TEXT_RECOGNITION:
        parsed = OcrTask.CUSTOM
    elif prompt and parsed is not OcrTask.CUSTOM:
        log.warning("prompt ignored: task %r uses its built-in prompt (use task='custom')", parsed.value)
        prompt = None
    schema = validate_schema(json.loads(result_schema) if isinstance(result_schema, str) else result_schema)
    name = model or default_model or DEFAULT_MODEL
    if not isinstance(name, str) or not MODEL_NAME.match(name):
        raise ValueError(f"model {name!r} is not a model name (e.g. 'qwen-vl-ocr')")
    spec = get_model(name)
    lo, hi = _opt_int("min_pixels", min_pixels), _opt_int("max_pixels", max_pixels)
    try:
        pixel_bounds(spec, lo, hi)
    except ValueError as exc:
        raise ValueError(f"{exc}: no image could be sent; fix the pixel bounds") from None
    return OcrRequest(task=parsed, spec=spec, prompt=prompt, result_schema=schema, min_pixels=lo, max_pixels=hi,
                      enable_rotate=bool(enable_rotate), fetch=bool(fetch))
