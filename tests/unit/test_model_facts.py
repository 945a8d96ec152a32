"""The catalogue's facts for the current generation (reference §9/§10), and "unknown" kept unknown.

Each figure is the documented one; where the docs are silent (qwen3.5-ocr's price, RPM/TPM, context, Batch
support) the catalogue holds None and the code that reads it says "unknown" instead of borrowing a figure.
"""

from __future__ import annotations

import logging

import pytest

from airflow_provider_qwenocr.ocr import models
from airflow_provider_qwenocr.ocr.models import (
    CONSERVATIVE_RPM,
    CONSERVATIVE_TPM,
    NATIVE_API,
    RESPONSES_API,
    effective_quota,
    get_model,
)

MB = 1024 * 1024


def test_qwen35_ocr_is_a_responses_api_model_taking_whole_pdfs():
    spec = get_model("qwen3.5-ocr")
    assert spec.api == RESPONSES_API and spec.combines_prompt and spec.takes_pdf
    assert (spec.max_pdf_pages, spec.max_pdf_bytes) == (50, 100 * MB)
    assert spec.max_image_bytes == 20 * MB and spec.patch == 32
    assert spec.regions == ("cn-beijing",)
    # unconfirmed figures are unknown, never another model's
    assert (spec.context, spec.max_input, spec.max_output, spec.rpm, spec.tpm, spec.batch, spec.multi_image) == (
        (None,) * 7)
    assert spec.price("cn-beijing").cost(1000, 10) == {"usd": None, "cny": None}


def test_qwen_vl_ocr_2025_11_20_documented_limits():
    spec = get_model("qwen-vl-ocr-2025-11-20")
    assert spec.api == NATIVE_API and not spec.combines_prompt and not spec.takes_pdf and spec.multi_image
    assert (spec.patch, spec.context, spec.max_input, spec.max_output) == (32, 38_192, 30_000, 8_192)
    assert spec.max_image_bytes == 10 * MB
    assert set(spec.regions) == {"cn-beijing", "ap-southeast-1", "us-east-1"}
    assert (spec.default_min_pixels, spec.default_max_pixels, spec.max_pixels_limit) == (3_072, 8_388_608,
                                                                                         30_720_000)
    assert get_model("qwen-vl-ocr-1120") == spec


@pytest.mark.parametrize("name", ["qwen-vl-ocr", "qwen-vl-ocr-latest", "qwen-vl-ocr-2025-08-28",
                                  "qwen-vl-ocr-2025-04-13", "qwen-vl-ocr-2024-10-28"])
def test_older_models_go_through_the_native_api_and_take_no_pdf(name):
    spec = get_model(name)
    assert spec.api == NATIVE_API and not spec.takes_pdf and spec.max_image_bytes == 10 * MB


def test_28px_pixel_bounds():
    spec = get_model("qwen-vl-ocr-2025-08-28")
    assert (spec.default_min_pixels, spec.default_max_pixels, spec.max_pixels_limit) == (3_136, 6_422_528,
                                                                                         23_520_000)


def test_only_qwen_vl_ocr_is_listed_for_batch():
    assert get_model("qwen-vl-ocr").batch is True
    assert [n for n, s in models.MODELS.items() if s.batch is not None] == ["qwen-vl-ocr"]


def test_a_documented_quota_is_used_as_is(caplog):
    caplog.set_level(logging.WARNING, logger="airflow_provider_qwenocr.ocr.models")
    assert effective_quota(get_model("qwen-vl-ocr-2025-11-20")) == (1200, 6_000_000)
    assert effective_quota(get_model("qwen3.5-ocr"), 30, 50_000) == (30, 50_000)  # the connection's own
    assert not caplog.records


def test_an_unknown_quota_falls_back_to_the_conservative_default_and_says_so(caplog, monkeypatch):
    monkeypatch.setattr(models, "_QUOTA_WARNED", set())
    caplog.set_level(logging.WARNING, logger="airflow_provider_qwenocr.ocr.models")
    spec = get_model("qwen3.5-ocr")
    assert effective_quota(spec) == (CONSERVATIVE_RPM, CONSERVATIVE_TPM) == (600, 6_000_000)
    assert effective_quota(spec, rpm=60) == (60, CONSERVATIVE_TPM)
    (record,) = caplog.records  # once per model and process
    text = record.getMessage()
    assert "qwen3.5-ocr" in text and "unknown" in text and "'rpm'" in text and "'tpm'" in text
