"""Model catalogue, prices, result rows, idempotency keys, client config."""

import json
import logging

import pytest

from airflow_provider_qwenocr.dashscope.config import ClientConfig, normalise_root
from airflow_provider_qwenocr.ocr.models import MODELS, UNKNOWN_PRICE, get_model
from airflow_provider_qwenocr.ocr.results import OcrResult, Usage, Word, add_cost, idempotency_key, new_cost_total
from tests.conftest_paths import RECORDINGS

STABLE_ROW_KEYS = {"source", "sha256", "task", "model", "status", "text", "kv", "words", "usage", "error"}


@pytest.mark.parametrize(
    "name,patch", [("qwen-vl-ocr", 32), ("qwen-vl-ocr-latest", 32), ("qwen-vl-ocr-2025-11-20", 32),
                   ("qwen-vl-ocr-1120", 32), ("qwen-vl-ocr-2025-08-28", 28), ("qwen-vl-ocr-2025-04-13", 28),
                   ("qwen-vl-ocr-2024-10-28", 28)]
)
def test_patch_sizes(name, patch):
    assert get_model(name).patch == patch


def test_defaults_and_overrides():
    assert get_model("qwen-vl-ocr").default_max_pixels == 32 * 32 * 8192
    assert get_model("qwen-vl-ocr-2025-08-28").default_max_pixels == 28 * 28 * 8192
    assert get_model("qwen-vl-ocr", patch=28).patch == 28
    assert get_model("some-future-ocr").patch == 32
    assert not get_model("qwen-vl-ocr-2024-10-28").builtin_tasks
    with pytest.raises(ValueError):
        get_model("qwen-vl-ocr", patch=30)


def test_prices_and_batch_half():
    price = get_model("qwen-vl-ocr").price("cn-beijing")
    realtime = price.cost(1_000_000, 1_000_000)
    assert realtime["cny"] == pytest.approx(0.3 + 0.5)
    assert realtime["usd"] == pytest.approx(0.043 + 0.072)
    batch = price.cost(1_000_000, 1_000_000, batch=True)
    assert batch["usd"] == pytest.approx(realtime["usd"] / 2)
    assert get_model("qwen-vl-ocr").price("ap-southeast-1").cost(1000, 0)["cny"] is None
    assert get_model("qwen-vl-ocr-2025-04-13").price().cost(1000, 1000)["cny"] == pytest.approx(0.01)
    # Every model has a published price except qwen3.5-ocr, whose price is recorded as unknown.
    assert [name for name, spec in MODELS.items() if not spec.prices] == ["qwen3.5-ocr"]


def test_qwen35_ocr_documented_facts_and_unknowns():
    spec = get_model("qwen3.5-ocr")
    assert spec.known and spec.patch == 32 and spec.max_image_bytes == 20 * 1024 * 1024
    assert get_model("qwen-vl-ocr").max_image_bytes == 10 * 1024 * 1024
    assert (spec.rpm, spec.tpm, spec.context, spec.max_output) == (None, None, None, None)
    assert spec.price("cn-beijing") is UNKNOWN_PRICE and not spec.price().known
    assert spec.price().cost(1000, 200) == {"usd": None, "cny": None}
    assert spec.price().cost(0, 0) == {"usd": 0.0, "cny": 0.0}  # an unbilled row is free at any price


def test_unknown_model_warns_once_and_has_no_price(caplog):
    caplog.set_level(logging.WARNING, logger="airflow_provider_qwenocr.ocr.models")
    name = "qwen-vl-ocr-2099-01-01-test-unknown"
    first, second = get_model(name), get_model(name)
    warnings = [r for r in caplog.records if name in r.getMessage()]
    assert len(warnings) == 1
    text = warnings[0].getMessage()
    assert "32-px" in text and "min 3072, max 8388608" in text and "rpm/tpm" in text and "null" in text
    for spec in (first, second):
        assert not spec.known and spec.patch == 32 and spec.rpm is None and spec.tpm is None
        assert spec.default_min_pixels == 3072 and spec.default_max_pixels == 8_388_608
        assert spec.price("cn-beijing").cost(5000, 100, batch=True) == {"usd": None, "cny": None}
    assert get_model(name, patch=28).patch == 28


def test_cost_totals_unknown_is_null_known_unchanged():
    known = get_model("qwen-vl-ocr").price().cost(1000, 100)
    total = new_cost_total()
    add_cost(total, known)
    add_cost(total, known)
    add_cost(total, None)  # a duplicate/cached row carries no cost of its own
    assert total == {"usd": round(2 * known["usd"], 8), "cny": round(2 * known["cny"], 8), "unknown_rows": 0}
    add_cost(total, {"usd": None, "cny": None})
    assert total == {"usd": None, "cny": None, "unknown_rows": 1}
    intl = new_cost_total()  # a region without a CNY list price: USD known, CNY unknown, no unknown rows
    add_cost(intl, get_model("qwen-vl-ocr").price("ap-southeast-1").cost(1000, 0))
    assert intl["cny"] is None and intl["usd"] == pytest.approx(0.07 / 1000) and intl["unknown_rows"] == 0


def test_usage_from_recorded_native_and_compatible_shapes():
    body = json.loads((RECORDINGS / "multimodal-generation-vl-ocr-advanced-recognition-nosse.response.body.txt").read_text())
    u = Usage.from_api(body["usage"])
    assert (u.input_tokens, u.output_tokens, u.image_tokens, u.total_tokens) == (1895, 432, 1862, 2327)
    old = json.loads((RECORDINGS / "multimodal-generation-vl-ocr-nosse.response.body.txt").read_text())
    u = Usage.from_api(old["usage"])  # 2024 shape: no total, no details
    assert (u.input_tokens, u.output_tokens, u.image_tokens, u.total_tokens) == (1248, 225, 1219, 1473)
    compat = {"prompt_tokens": 519, "completion_tokens": 58, "total_tokens": 577,
              "prompt_tokens_details": {"image_tokens": 310, "text_tokens": 209}}
    assert Usage.from_api(compat) == Usage(519, 58, 310, 577)
    assert (Usage(1, 2, 3, 4) + Usage(1, 1, 1, 1)) == Usage(2, 3, 4, 5)


def test_row_roundtrip_and_stable_keys():
    r = OcrResult(source="s3://b/k.png", task="advanced_recognition", model="qwen-vl-ocr", sha256="ab",
                  key="k1", text="hi", words=[Word("hi", [0] * 8, [1, 2, 3, 4, 90])], usage=Usage(5, 6, 4, 11))
    row = r.to_row()
    assert STABLE_ROW_KEYS <= set(row)
    back = OcrResult.from_row(json.loads(r.to_json()))
    assert back == r
    err = OcrResult.failure("x.png", "text_recognition", "qwen-vl-ocr", "InvalidImage", "too small")
    assert err.to_row()["status"] == "error" and err.to_row()["error"] == {"code": "InvalidImage", "message": "too small"}


def test_idempotency_key_depends_on_everything_that_changes_the_answer():
    base = idempotency_key("sha", "text_recognition", "qwen-vl-ocr", {"max_pixels": None})
    assert base == idempotency_key("sha", "text_recognition", "qwen-vl-ocr", {"max_pixels": None})
    assert base != idempotency_key("sha2", "text_recognition", "qwen-vl-ocr", {"max_pixels": None})
    assert base != idempotency_key("sha", "table_parsing", "qwen-vl-ocr", {"max_pixels": None})
    assert base != idempotency_key("sha", "text_recognition", "qwen-vl-ocr-latest", {"max_pixels": None})
    assert base != idempotency_key("sha", "text_recognition", "qwen-vl-ocr", {"max_pixels": 1000})


def test_client_config_endpoints_and_secrecy():
    cfg = ClientConfig(api_key="sk-secret-123", region="ap-southeast-1")
    assert cfg.native_base == "https://dashscope-intl.aliyuncs.com/api/v1"
    assert cfg.compatible_base == "https://dashscope-intl.aliyuncs.com/compatible-mode/v1"
    assert "sk-secret-123" not in repr(cfg)
    local = ClientConfig(api_key="k", base_url=normalise_root("http://127.0.0.1:8765/api/v1/"))
    assert local.native_base == "http://127.0.0.1:8765/api/v1" and local.custom_endpoint
    assert normalise_root("dashscope.aliyuncs.com/compatible-mode/v1") == "https://dashscope.aliyuncs.com"
    with pytest.raises(ValueError, match="API key"):
        ClientConfig(api_key="")
    with pytest.raises(ValueError, match="unknown region"):
        ClientConfig(api_key="k", region="mars-1")


def test_the_one_summary_keeps_the_unknown_cost_rule():
    from airflow_provider_qwenocr.runs.summary import OcrSummary

    known = OcrResult(source="a", task="text_recognition", model="qwen-vl-ocr", usage=Usage(1000, 100, 900, 1100),
                      cost=get_model("qwen-vl-ocr").price().cost(1000, 100))
    unknown = OcrResult(source="b", task="text_recognition", model="qwen3.5-ocr", usage=Usage(1000, 100, 900, 1100),
                        cost=get_model("qwen3.5-ocr").price().cost(1000, 100))
    both = OcrSummary()
    for result in (known, unknown):
        both.add(result, cached=False)
    assert both.to_xcom("x")["cost"] == {"usd": None, "cny": None, "unknown_rows": 1}
    only_known = OcrSummary()
    only_known.add(known, cached=False)
    assert only_known.to_xcom("x")["cost"] == {**known.cost, "unknown_rows": 0}
