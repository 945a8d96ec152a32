"""The result_schema → column rule and the kv → typed value rule (ocr/flatten.py)."""

import json
import pathlib

import pytest

from airflow_provider_qwenocr.ocr.flatten import MAX_IDENTIFIER_BYTES, coerce, kv_values, normalize_key, schema_columns

SAMPLE_SCHEMA = pathlib.Path(__file__).resolve().parents[2] / "dags" / "sample_docs" / "receipt_schema.json"


def test_nested_paths_become_double_underscore_names_with_types():
    cols = schema_columns({"Invoice No.": "", "Total": {"Amount (CNY)": "number: total", "Paid on": "date: when"},
                           "Items": [{"name": "", "price": "number:"}]})
    assert [(c.name, c.type) for c in cols] == [
        ("invoice_no", "text"), ("total__amount_cny", "number"), ("total__paid_on", "date"), ("items", "json")]
    assert cols[1].path == ("Total", "Amount (CNY)")


def test_three_levels_accepted_four_refused():
    cols = schema_columns({"a": {"b": {"c": "integer: x"}}})
    assert cols[0].name == "a__b__c" and cols[0].type == "integer"
    with pytest.raises(ValueError, match="at most 3"):
        schema_columns({"a": {"b": {"c": {"d": ""}}}})


def test_cjk_keys_kept_and_collisions_numbered_in_schema_order():
    cols = schema_columns({"合计金额": "", "Total Amount": "", "total_amount": "", "key": ""}, reserved=("key",))
    assert [c.name for c in cols] == ["合计金额", "total_amount", "total_amount_2", "key_2"]
    assert normalize_key("  ！！ ") == "field"
    assert schema_columns({"2nd line": ""})[0].name == "f_2nd_line"


def test_long_names_cut_to_postgres_limit_and_stay_distinct():
    a, b = "x" * 70 + "a", "x" * 70 + "b"
    cols = schema_columns({a: "", b: ""})
    assert all(len(c.name.encode()) <= MAX_IDENTIFIER_BYTES for c in cols)
    assert cols[0].name != cols[1].name


def test_unread_values_are_null_never_invented():
    cols = schema_columns({"no": "", "amt": "number:", "d": "date:", "n": "integer:", "ok": "boolean:"})
    assert kv_values({"no": "???", "amt": "12?.50", "d": "soon", "n": "3.5", "ok": "maybe"}, cols) == {
        "no": None, "amt": None, "d": None, "n": None, "ok": None}
    assert kv_values(None, cols) == dict.fromkeys(["no", "amt", "d", "n", "ok"])
    assert kv_values({"no": "null", "amt": "", "d": None}, cols)["no"] is None


def test_clean_values_are_typed():
    cols = schema_columns({"no": "", "amt": "number:", "d": "date:", "n": "int: count", "ok": "bool:",
                           "t": {"c": ""}, "lst": [""]})
    row = kv_values(json.dumps({"no": " 31245678 ", "amt": "¥1,234.50元", "d": "2026年3月4日", "n": "７",
                                "ok": "是", "t": {"c": "CNY"}, "lst": ["a", "b"]}, ensure_ascii=False), cols)
    assert row == {"no": "31245678", "amt": 1234.5, "d": "2026-03-04", "n": 7, "ok": True, "t__c": "CNY",
                   "lst": '["a", "b"]'}
    assert coerce(553, "number") == 553.0 and coerce("2026-02-30", "date") is None


def test_shipped_sample_schema_maps_to_stable_columns():
    cols = schema_columns(json.loads(SAMPLE_SCHEMA.read_text()))
    names = {c.name: c.type for c in cols}
    assert names["金额__合计金额"] == "number" and names["开票日期"] == "date" and names["发票号码"] == "text"


def test_shipped_sample_documents_are_small_and_valid():
    from airflow_provider_qwenocr.ocr.images import open_image, validate_size

    docs = sorted(p for p in SAMPLE_SCHEMA.parent.iterdir() if p.suffix in (".png", ".jpg"))
    assert 5 <= len(docs) <= 8
    for path in docs:
        assert path.stat().st_size < 150_000, path.name
        img = open_image(path.read_bytes())
        validate_size(*img.size)
