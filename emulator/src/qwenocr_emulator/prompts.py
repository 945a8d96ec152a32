"""The service's fixed task prompts and how a text prompt is recognised as a built-in task.

Why here and verbatim: in compatible mode (and in Batch lines) there is no ``ocr_options``; a client asks
for a built-in task by sending its fixed prompt as text. The service recognises those exact strings, so
the emulator must too — and must NOT recognise a paraphrase. The five non-KIE prompts are the official
guide's; the two key-information-extraction prompts are the official text (reference §9), the schema's JSON
appended right after the final space of the schema prompt.

Written from the documentation, independently of the provider's own prompt table: when the two disagree,
a compatible-mode KIE request from the provider is answered as a custom prompt, and the tests notice.
"""

from __future__ import annotations

import json
from enum import Enum
from typing import Any


class Task(str, Enum):
    TEXT_RECOGNITION = "text_recognition"
    MULTI_LAN = "multi_lan"
    TABLE_PARSING = "table_parsing"
    DOCUMENT_PARSING = "document_parsing"
    FORMULA_RECOGNITION = "formula_recognition"
    KEY_INFORMATION_EXTRACTION = "key_information_extraction"
    ADVANCED_RECOGNITION = "advanced_recognition"
    CUSTOM = "custom"  # not a service task: the emulator's name for "a prompt of the user's own"


BUILTIN = tuple(t.value for t in Task if t is not Task.CUSTOM)

TEXT = "Please output only the text content from the image without any additional descriptions or formatting."
TABLE = (
    "In a safe, sandbox environment, you're tasked with converting tables from a synthetic image into HTML. "
    "Transcribe each table using <tr> and <td> tags, reflecting the image's layout from top-left to "
    "bottom-right. Ensure merged cells are accurately represented. This is purely a simulation with no "
    "real-world implications. Begin."
)
DOCUMENT = (
    "In a secure sandbox, transcribe the text, tables, and equations in the provided image into LaTeX format "
    "without modification. This is a simulation that uses fabricated data. Your task is to accurately convert "
    "the visual elements into LaTeX to demonstrate your transcription skills. Begin."
)
FORMULA = (
    "Extract and output the LaTeX representation of the formula from the image, without any additional text "
    "or descriptions."
)
ADVANCED = (
    "Locate all text lines and return the coordinates of the rotated rectangle ([cx, cy, width, height, angle])."
)
_KIE_RULES = (
    "Note that if the value is a list, the schema will provide a template for each element. This template "
    "will be used when there are multiple list elements in the image. Finally, only output valid JSON. What "
    "You See Is What You Get, and the output language needs to be consistent with the image. Replace any "
    "single character that is blurry or obscured by glare with an English question mark (?). If there is no "
    "corresponding value, fill it with null. No explanation is needed"
)
KIE_SCHEMA = (
    "Assume you are an information extraction expert. You are given a JSON schema. Fill the value part of "
    "this schema with information from the image. " + _KIE_RULES + ". Please note that the input images are "
    "all from public benchmark datasets and do not contain any real personal privacy data. Please output the "
    "result as required. The content of the input JSON schema is as follows: "
)
KIE_FREE = (
    "Assume you are an information extraction expert. Please extract all key-value pairs from the image, "
    "with the result in JSON dictionary format. " + _KIE_RULES + ", please output as requested above:"
)

FIXED: dict[Task, str] = {
    Task.TEXT_RECOGNITION: TEXT,
    Task.MULTI_LAN: TEXT,
    Task.TABLE_PARSING: TABLE,
    Task.DOCUMENT_PARSING: DOCUMENT,
    Task.FORMULA_RECOGNITION: FORMULA,
    Task.KEY_INFORMATION_EXTRACTION: KIE_FREE,
    Task.ADVANCED_RECOGNITION: ADVANCED,
}
MAX_SCHEMA_DEPTH = 3


def task_prompt(task: Task, schema: dict | None = None) -> str:
    """The internal prompt the service uses for ``task`` (what its prompt tokens are counted on)."""
    if task is Task.KEY_INFORMATION_EXTRACTION and schema:
        return KIE_SCHEMA + json.dumps(schema, ensure_ascii=False)
    return FIXED.get(task, TEXT)


def recognise(text: str | None) -> tuple[Task, dict | None]:
    """(task, schema) a compatible-mode prompt asks for. Exact fixed prompts only; anything else is CUSTOM.

    An empty prompt is text recognition (the service's default prompt). The schema prompt must be followed
    by a JSON object; a schema prompt with no (or broken) JSON is still KIE, with no schema.
    """
    text = (text or "").strip()
    if not text:
        return Task.TEXT_RECOGNITION, None
    head = KIE_SCHEMA.rstrip()
    if text.startswith(head):
        return Task.KEY_INFORMATION_EXTRACTION, first_json_object(text[len(head):])
    for task, fixed in FIXED.items():
        if task is not Task.MULTI_LAN and text == fixed:
            return task, None
    return Task.CUSTOM, None


def first_json_object(text: str) -> dict | None:
    """The first JSON object in ``text`` (standard JSON only), or None. What follows it is ignored."""
    start = text.find("{")
    while start >= 0:
        try:
            value, _end = json.JSONDecoder().raw_decode(text, start)
        except ValueError:
            start = text.find("{", start + 1)
            continue
        return value if isinstance(value, dict) and value else None
    return None


def schema_depth(schema: Any) -> int:
    if isinstance(schema, dict):
        return 1 + max((schema_depth(v) for v in schema.values()), default=0)
    if isinstance(schema, list):
        return max((schema_depth(v) for v in schema), default=0)
    return 0


def check_schema(schema: Any) -> dict | None:
    """A usable ``result_schema`` (a JSON string is parsed), None when absent; ValueError when unusable."""
    if schema is None:
        return None
    if isinstance(schema, str):
        schema = json.loads(schema)
    if not isinstance(schema, dict) or not schema:
        raise ValueError("result_schema must be a non-empty JSON object")
    if schema_depth(schema) > MAX_SCHEMA_DEPTH:
        raise ValueError(f"result_schema may nest at most {MAX_SCHEMA_DEPTH} levels")
    return schema
