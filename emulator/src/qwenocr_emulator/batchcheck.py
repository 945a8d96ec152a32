"""What the Batch API checks before it runs anything: the input file's lines and the completion window.

Why apart from the lifecycle (batch.py): these are the service's documented validation rules (reference §5,
§9) — one line per request, ``url`` = the batch's endpoint, unique ``custom_id``, one known model for the
whole file (``model_not_found`` / ``mismatched_model``), ``completion_window`` from ``24h`` to ``336h`` — and
they are tested on their own terms.
"""

from __future__ import annotations

import json
import re
from typing import Any

TEST_ENDPOINT = "/v1/chat/ds-test"  # DashScope's free test endpoint: model batch-test-model, no inference
TEST_MODEL = "batch-test-model"
WINDOW = re.compile(r"^([1-9][0-9]{0,3})h$")
MIN_WINDOW_H, MAX_WINDOW_H = 24, 336


def validate_input(content: bytes, endpoint: str) -> tuple[list[dict], list[dict]]:
    """(lines, errors) for a batch input file, with the service's error codes and 1-based line numbers."""
    lines: list[dict] = []
    errors: list[dict] = []
    seen: set[str] = set()
    model: str | None = None

    def err(code: str, message: str, param: str | None, n: int) -> None:
        errors.append({"code": code, "message": message, "param": param, "line": n})

    for n, raw in enumerate(content.decode("utf-8", errors="replace").splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            line = json.loads(raw)
        except ValueError:
            err("invalid_json_line", f"line {n} is not valid JSON", None, n)
            continue
        url = line.get("url")
        if url != endpoint:
            err("url_not_found", f"The provided url '{url}' is not supported by the Batch API.", "url", n)
            continue
        cid = line.get("custom_id")
        if cid in seen:
            err("duplicate_custom_id", f"The custom_id '{cid}' is duplicated.", "custom_id", n)
            continue
        seen.add(cid)
        line_model = (line.get("body") or {}).get("model")
        if not _known_model(line_model, endpoint):
            err("model_not_found", f"The model '{line_model}' is not supported by the Batch API.", "body.model", n)
            continue
        if model is None:
            model = line_model
        elif line_model != model:
            err("mismatched_model", f"The model '{line_model}' differs from '{model}' used by earlier lines.",
                "body.model", n)
            continue
        lines.append(line)
    if not lines and not errors:
        err("empty_file", "The input file has no requests.", None, 0)
    return lines, errors


def window_ok(window: Any) -> bool:
    """Whether ``completion_window`` is one the service accepts: whole hours from 24h to 336h."""
    m = WINDOW.match(window) if isinstance(window, str) else None
    return bool(m) and MIN_WINDOW_H <= int(m.group(1)) <= MAX_WINDOW_H


def _known_model(model: Any, endpoint: str) -> bool:
    """OCR models of the emulator's table (and their aliases); only ``batch-test-model`` on the test endpoint."""
    from qwenocr_emulator.models import is_known

    if endpoint == TEST_ENDPOINT:
        return model == TEST_MODEL
    return is_known(model)


