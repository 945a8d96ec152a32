"""Amounts in any currency parse as ``number:`` KIE values (issue 20 item 18: ``2,665.50 GBP`` loaded as NULL
while ``1,018.99 USD`` parsed); text that is no amount still stays NULL."""

from __future__ import annotations

import pytest

from airflow_provider_qwenocr.ocr.amounts import strip_currency
from airflow_provider_qwenocr.ocr.flatten import coerce


@pytest.mark.parametrize("text, value", [
    ("2,665.50 GBP", 2665.5), ("1,018.99 USD", 1018.99), ("GBP 2,665.50", 2665.5), ("£2,665.50", 2665.5),
    ("CHF 12.00", 12.0), ("₩15,000", 15000.0), ("₹ 499", 499.0), ("1234.5 jpy", 1234.5),
    ("RMB 86.00", 86.0), ("86.00元", 86.0), ("¥128.50", 128.5), ("cny128.50", 128.5), ("USD1,018.99", 1018.99),
])
def test_amounts_in_any_currency_are_numbers(text, value):
    assert coerce(text, "number") == pytest.approx(value)


@pytest.mark.parametrize("text", ["12 GBPX", "12 kg", "about 12", "GB 12", "12?.50 GBP", "GBP"])
def test_what_is_no_amount_stays_null(text):
    assert coerce(text, "number") is None


def test_only_whole_codes_and_currency_signs_go():
    assert strip_currency("2,665.50 GBP") == "2,665.50 "
    assert strip_currency("GBPX 1") == "GBPX 1"
