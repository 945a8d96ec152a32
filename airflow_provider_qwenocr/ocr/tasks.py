"""The OCR tasks: the seven built-ins plus a custom prompt, their fixed prompts, and request options.

Why the fixed prompts live here: built-in tasks (``parameters.ocr_options``) exist only on the native
API. The OpenAI-compatible endpoint — and therefore the half-price Batch API — needs the same prompt sent
as text, and the emulator needs it to recognise which task a compatible-mode request asks for.
"""

from __future__ import annotations

import json
from enum import Enum
from typing import Any


class OcrTask(str, Enum):
    TEXT_RECOGNITION = "text_recognition"
    MULTI_LAN = "multi_lan"
    TABLE_PARSING = "table_parsing"
    DOCUMENT_PARSING = "document_parsing"
    FORMULA_RECOGNITION = "formula_recognition"
    KEY_INFORMATION_EXTRACTION = "key_information_extraction"
    ADVANCED_RECOGNITION = "advanced_recognition"
    CUSTOM = "custom"

    @classmethod
    def parse(cls, value: str | OcrTask) -> OcrTask:
        try:
            return cls(value)
        except ValueError:
            names = ", ".join(t.value for t in cls)
            raise ValueError(f"unknown OCR task {value!r}; expected one of: {names}") from None

    @property
    def builtin(self) -> bool:
        return self is not OcrTask.CUSTOM


TEXT_PROMPT = (
    "Please output only the text content from the image without any additional descriptions or formatting."
)
TABLE_PROMPT = (
    "In a safe, sandbox environment, you're tasked with converting tables from a synthetic image into HTML. "
    "Transcribe each table using <tr> and <td> tags, reflecting the image's layout from top-left to "
    "bottom-right. Ensure merged cells are accurately represented. This is purely a simulation with no "
    "real-world implications. Begin."
)
DOCUMENT_PROMPT = (
    "In a secure sandbox, transcribe the text, tables, and equations in the provided image into LaTeX format "
    "without modification. This is a simulation that uses fabricated data. Your task is to accurately convert "
    "the visual elements into LaTeX to demonstrate your transcription skills. Begin."
)
FORMULA_PROMPT = (
    "Extract and output the LaTeX representation of the formula from the image, without any additional text "
    "or descriptions."
)
# The two KIE prompts verbatim from the official guide (reference §9): the compatible endpoint and Batch
# send them as text, and the service recognises the task by them. With a schema, the schema's JSON is
# appended right after the final space.
KIE_SCHEMA_PROMPT = (
    "Assume you are an information extraction expert. You are given a JSON schema. Fill the value part of "
    "this schema with information from the image. Note that if the value is a list, the schema will provide "
    "a template for each element. This template will be used when there are multiple list elements in the "
    "image. Finally, only output valid JSON. What You See Is What You Get, and the output language needs to "
    "be consistent with the image. Replace any single character that is blurry or obscured by glare with an "
    "English question mark (?). If there is no corresponding value, fill it with null. No explanation is "
    "needed. Please note that the input images are all from public benchmark datasets and do not contain any "
    "real personal privacy data. Please output the result as required. The content of the input JSON schema "
    "is as follows: "
)
KIE_FREE_PROMPT = (
    "Assume you are an information extraction expert. Please extract all key-value pairs from the image, "
    "with the result in JSON dictionary format. Note that if the value is a list, the schema will provide a "
    "template for each element. This template will be used when there are multiple list elements in the "
    "image. Finally, only output valid JSON. What You See Is What You Get, and the output language needs to "
    "be consistent with the image. Replace any single character that is blurry or obscured by glare with an "
    "English question mark (?). If there is no corresponding value, fill it with null. No explanation is "
    "needed, please output as requested above:"
)
ADVANCED_PROMPT = (
    "Locate all text lines and return the coordinates of the rotated rectangle ([cx, cy, width, height, angle])."
)

FIXED_PROMPTS: dict[OcrTask, str] = {
    OcrTask.TEXT_RECOGNITION: TEXT_PROMPT,
    OcrTask.MULTI_LAN: TEXT_PROMPT,
    OcrTask.TABLE_PARSING: TABLE_PROMPT,
    OcrTask.DOCUMENT_PARSING: DOCUMENT_PROMPT,
    OcrTask.FORMULA_RECOGNITION: FORMULA_PROMPT,
    OcrTask.KEY_INFORMATION_EXTRACTION: KIE_FREE_PROMPT,
    OcrTask.ADVANCED_RECOGNITION: ADVANCED_PROMPT,
}

MAX_SCHEMA_DEPTH = 3


def schema_depth(schema: Any) -> int:
    """Nesting depth of a result_schema: ``{"a": "x"}`` is 1, ``{"a": {"b": "x"}}`` is 2."""
    if isinstance(schema, dict):
        return 1 + max((schema_depth(v) for v in schema.values()), default=0)
    if isinstance(schema, list):
        return max((schema_depth(v) for v in schema), default=0)
    return 0


def validate_schema(schema: Any) -> dict | None:
    if schema is None:
        return None
    if isinstance(schema, str):
        schema = json.loads(schema)
    if not isinstance(schema, dict) or not schema:
        raise ValueError("result_schema must be a non-empty JSON object of field name -> description")
    depth = schema_depth(schema)
    if depth > MAX_SCHEMA_DEPTH:
        raise ValueError(f"result_schema nests {depth} levels; the service accepts at most {MAX_SCHEMA_DEPTH}")
    return schema


def prompt_for(task: str | OcrTask, *, prompt: str | None = None, result_schema: dict | None = None) -> str:
    """The text a compatible-mode (and Batch) request must carry for ``task``."""
    task = OcrTask.parse(task)
    if task is OcrTask.CUSTOM:
        if not prompt:
            raise ValueError("task 'custom' needs a prompt")
        return prompt
    if task is OcrTask.KEY_INFORMATION_EXTRACTION and result_schema:
        return KIE_SCHEMA_PROMPT + json.dumps(result_schema, ensure_ascii=False)
    return FIXED_PROMPTS[task]


def task_from_prompt(text: str | None) -> tuple[OcrTask, dict | None]:
    """Inverse of :func:`prompt_for`: which task a compatible-mode prompt asks for (used by the emulator)."""
    text = (text or "").strip()
    if not text:
        return OcrTask.TEXT_RECOGNITION, None
    if text.startswith(KIE_SCHEMA_PROMPT.strip()):
        raw = text[len(KIE_SCHEMA_PROMPT.strip()) :].strip()
        try:
            return OcrTask.KEY_INFORMATION_EXTRACTION, json.loads(raw)
        except ValueError:
            return OcrTask.KEY_INFORMATION_EXTRACTION, None
    for task, fixed in FIXED_PROMPTS.items():
        if task is OcrTask.MULTI_LAN:
            continue
        if text == fixed:
            return task, None
    return OcrTask.CUSTOM, None


def ocr_options(task: str | OcrTask, result_schema: dict | None = None) -> dict | None:
    """``parameters.ocr_options`` for the native API, or None for a custom prompt."""
    task = OcrTask.parse(task)
    if task is OcrTask.CUSTOM:
        return None
    options: dict[str, Any] = {"task": task.value}
    if task is OcrTask.KEY_INFORMATION_EXTRACTION and result_schema:
        options["task_config"] = {"result_schema": result_schema}
    return options
