"""Tasks, prompts and answer parsing: what compatible mode must send, and how answers become typed fields."""

import json

import pytest

from airflow_provider_qwenocr.ocr.parsing import (
    content_text,
    extract_table_html,
    parse_answer,
    parse_json_loose,
    strip_fence,
)
from airflow_provider_qwenocr.ocr.tasks import (
    FIXED_PROMPTS,
    OcrTask,
    ocr_options,
    prompt_for,
    task_from_prompt,
    validate_schema,
)
from tests.conftest_paths import PUBLIC, RECORDINGS


def test_seven_builtin_tasks_and_custom():
    assert {t.value for t in OcrTask if t.builtin} == {
        "text_recognition", "multi_lan", "table_parsing", "document_parsing", "formula_recognition",
        "key_information_extraction", "advanced_recognition",
    }
    with pytest.raises(ValueError, match="unknown OCR task 'ocr_everything'"):
        OcrTask.parse("ocr_everything")


@pytest.mark.parametrize("task", [t for t in OcrTask if t.builtin and t is not OcrTask.MULTI_LAN])
def test_prompt_roundtrip(task):
    assert task_from_prompt(prompt_for(task)) == (task, None)


def test_kie_schema_prompt_roundtrip_and_options():
    schema = {"乘车日期": "年-月-日", "发票": {"发票代码": "", "发票号码": ""}}
    text = prompt_for("key_information_extraction", result_schema=schema)
    assert text.endswith(json.dumps(schema, ensure_ascii=False))
    assert task_from_prompt(text) == (OcrTask.KEY_INFORMATION_EXTRACTION, schema)
    assert ocr_options("key_information_extraction", schema) == {
        "task": "key_information_extraction", "task_config": {"result_schema": schema}}
    assert ocr_options("custom") is None
    assert task_from_prompt("Read all the text in the image.") == (OcrTask.CUSTOM, None)


OFFICIAL = json.loads((PUBLIC / "official_prompts.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("task", [t for t in OcrTask if t.builtin])
def test_fixed_prompts_are_the_official_text_verbatim(task):
    assert prompt_for(task) == OFFICIAL[task.value]


def test_kie_schema_prompt_is_official_text_then_schema_json():
    schema = {"invoice_number": "", "items": [{"name": "", "price": ""}]}
    text = prompt_for("key_information_extraction", result_schema=schema)
    assert text == OFFICIAL["key_information_extraction_with_schema"] + json.dumps(schema, ensure_ascii=False)
    assert OFFICIAL["key_information_extraction_with_schema"].endswith("as follows: ")
    assert task_from_prompt(text) == (OcrTask.KEY_INFORMATION_EXTRACTION, schema)
    assert task_from_prompt(OFFICIAL["key_information_extraction"]) == (OcrTask.KEY_INFORMATION_EXTRACTION, None)
    # The old reconstructed wording is no longer recognised as the built-in task.
    assert task_from_prompt("Assume you are an information extraction expert. Output only the JSON.")[0] is OcrTask.CUSTOM


def test_ocr_options_match_the_recorded_request():
    body = json.loads((RECORDINGS / "multimodal-generation-vl-ocr-key-information-extraction-nosse.request.body.json").read_text())
    recorded = body["parameters"]["ocr_options"]
    assert ocr_options(recorded["task"], recorded["task_config"]["result_schema"]) == recorded


def test_custom_needs_prompt_and_text_prompt_is_the_documented_one():
    with pytest.raises(ValueError):
        prompt_for("custom")
    assert FIXED_PROMPTS[OcrTask.MULTI_LAN] == FIXED_PROMPTS[OcrTask.TEXT_RECOGNITION]
    assert prompt_for("text_recognition").startswith("Please output only the text content")


def test_schema_depth_limit():
    assert validate_schema({"a": {"b": {"c": "x"}}}) == {"a": {"b": {"c": "x"}}}
    assert validate_schema('{"a": "x"}') == {"a": "x"}
    with pytest.raises(ValueError, match="4 levels"):
        validate_schema({"a": {"b": {"c": {"d": "x"}}}})
    with pytest.raises(ValueError):
        validate_schema({})


@pytest.mark.parametrize(
    "text,expected",
    [
        ('```json\n{"a": 1, "b": null}\n```', {"a": 1, "b": None}),
        ("{'invoice_number': 'xxx', 'seat': '07A'}", {"invoice_number": "xxx", "seat": "07A"}),
        ("结果：｛“票号”：“E123”，“座位”：“07A”｝", {"票号": "E123", "座位": "07A"}),
        ("Here it is: {\"a\": [1, 2]} hope it helps", {"a": [1, 2]}),
        ('```json\n{"a": "trunc', None),
        ("no json at all", None),
    ],
)
def test_parse_json_loose(text, expected):
    assert parse_json_loose(text) == expected


def test_strip_fence_handles_unterminated_blocks():
    assert strip_fence("```html\n<table><tr><td>1</td>") == "<table><tr><td>1</td>"
    assert strip_fence("plain") == "plain"
    assert extract_table_html("```html\n<table><tr><td>a</td></tr></table>\n```") == "<table><tr><td>a</td></tr></table>"


def _recorded_content(name):
    body = json.loads((RECORDINGS / f"{name}.response.body.txt").read_text())
    return body["output"]["choices"][0]["message"]["content"]


def test_advanced_recognition_reads_ocr_result_not_text():
    text, ocr = content_text(_recorded_content("multimodal-generation-vl-ocr-advanced-recognition-nosse"))
    parsed = parse_answer("advanced_recognition", text, ocr)
    assert parsed.words and all(len(w.location) == 8 and len(w.rotate_rect) == 5 for w in parsed.words)
    # boxes come from words_info on the original image, not from the 0-1000 coordinates inside `text`
    assert parsed.words[0].location == ocr["words_info"][0]["location"]
    assert max(max(w.location) for w in parsed.words) > 1000


def test_boxes_scale_back_to_the_original_image():
    item = {"text": "x", "location": [10, 20, 110, 20, 110, 40, 10, 40], "rotate_rect": [60, 30, 20, 100, 90]}
    parsed = parse_answer("advanced_recognition", "", {"words_info": [item]}, scale_x=2.0, scale_y=3.0)
    w = parsed.words[0]
    assert w.location == [20, 60, 220, 60, 220, 120, 20, 120]
    # angle 90: the rect's width runs along y, so it scales with scale_y
    assert w.rotate_rect == [120, 90, 60, 200, 90]


def test_kie_prefers_kv_result_and_falls_back_to_text():
    text, ocr = content_text(_recorded_content("multimodal-generation-vl-ocr-key-information-extraction-nosse"))
    assert parse_answer("key_information_extraction", text, ocr).kv == ocr["kv_result"]
    assert parse_answer("key_information_extraction", text, None).kv == ocr["kv_result"]


def test_table_and_latex_and_custom():
    assert parse_answer("table_parsing", "```html\n<table><tr><td>1</td></tr></table>\n```").html.startswith("<table>")
    assert parse_answer("formula_recognition", "$$ E = mc^2 $$").latex == "$$ E = mc^2 $$"
    assert parse_answer("document_parsing", "```latex\n\\section*{A}\n```").latex == "\\section*{A}"
    assert parse_answer("custom", "{'seat': '07A'}").kv == {"seat": "07A"}
    assert parse_answer("custom", "just words").kv is None


def test_content_text_accepts_both_api_shapes():
    assert content_text("compat text") == ("compat text", None)
    assert content_text([{"text": "a"}, {"text": "b"}]) == ("ab", None)
    text, ocr = content_text([{"text": "a", "ocr_result": {"kv_result": {"k": 1}}}])
    assert (text, ocr) == ("a", {"kv_result": {"k": 1}})
    assert content_text([]) == (None, None)
