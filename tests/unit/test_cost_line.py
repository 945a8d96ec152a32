"""The task log's cost line names an unknown price only when there is one (issue 20 item 18).

It used to end in "(None = unknown price)" on every run, priced or not.
"""

from __future__ import annotations

import logging

from airflow_provider_qwenocr.runs.summary import cost_text
from tests.unit.test_operator_ocr import FakeClient, _context, _logs, _op, folder  # noqa: F401  (fixture)


def test_known_prices_say_nothing_about_unknown():
    assert cost_text({"usd": 0.0012, "cny": 0.0087, "unknown_rows": 0}) == "cost USD 0.0012, CNY 0.0087"
    assert cost_text({"usd": 0, "cny": 0}) == "cost USD 0, CNY 0"  # all from the cache


def test_unknown_rows_are_counted_and_a_missing_currency_explained():
    line = cost_text({"usd": None, "cny": None, "unknown_rows": 3})
    assert line.startswith("cost USD None, CNY None") and "3 billed row(s)" in line and "no published price" in line
    assert "no published price in that currency" in cost_text({"usd": 0.5, "cny": None, "unknown_rows": 0})


def _usage_line(text: str) -> str:
    return next(line for line in text.splitlines() if "Usage this run" in line)


def test_the_operator_logs_unknown_only_for_an_unpriced_model(folder, tmp_path, caplog, capsys):  # noqa: F811
    caplog.set_level(logging.INFO)
    _op(FakeClient(), images=str(folder), output_uri=str(tmp_path / "a.jsonl")).execute(_context(tmp_path))
    priced = _usage_line(_logs(caplog, capsys))
    assert "cost USD" in priced and "unknown" not in priced.lower() and "None" not in priced

    caplog.clear()
    _op(FakeClient(), images=str(folder), model="qwen3.5-ocr", unit="page", output_uri=str(tmp_path / "b.jsonl")).execute(
        _context(tmp_path))
    unpriced = _usage_line(_logs(caplog, capsys))
    assert "CNY None" in unpriced and "3 billed row(s)" in unpriced
