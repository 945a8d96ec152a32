"""Every field of an error, and every line of our loggers, goes through one redaction (issue 20 item 11).

Operator level, against a server echoing the key: tests/integration/test_secret_echo.py.
"""

from __future__ import annotations

import io
import json
import logging

from airflow_provider_qwenocr.dashscope.batch_jsonl import ManifestEntry
from airflow_provider_qwenocr.dashscope.batch_results import result_from_line
from airflow_provider_qwenocr.dashscope.config import SECRET_FILTER, config_from_connection
from airflow_provider_qwenocr.dashscope.errors import PermanentError, classify, classify_body, redact

KEY = "ds-fields-key-5e1f0c9a7b"  # no "sk-" shape: only the registration makes it a known key


def _register() -> None:
    config_from_connection("qwen_fields", password=KEY, host="http://127.0.0.1:9", extra={})


def test_code_message_and_request_id_are_scrubbed_where_the_error_is_made():
    _register()
    for exc in (classify(400, KEY, f"bad {KEY}", request_id=KEY),
                classify_body(401, {"code": KEY, "message": KEY, "request_id": KEY}),
                classify_body(400, {"error": {"code": "sk-echoed12345678", "message": "x", "request_id": KEY}}),
                PermanentError(KEY, code=KEY, request_id=KEY)):
        assert KEY not in f"{exc} {exc.code} {exc.message} {exc.request_id} {exc.to_dict()}"
        assert "sk-echoed12345678" not in str(exc)
        assert exc.code and exc.request_id  # scrubbed, not dropped


def test_a_passed_secret_scrubs_the_code_too():
    other = "unregistered-key-0042"
    exc = classify(429, other, "slow down", request_id=other, secret=other)
    assert other not in f"{exc} {exc.code} {exc.request_id}"


def test_short_strings_are_not_keys():
    # a test key such as "k" must not turn "InvalidApiKey" into "InvalidApi***ey"
    exc = classify(401, "InvalidApiKey", "Invalid API-key provided.", secret="k")
    assert exc.code == "InvalidApiKey" and redact("keep", "ke") == "keep"


def test_a_batch_line_echoing_the_key_lands_a_clean_row():
    _register()
    entry = ManifestEntry(custom_id="c1", source="a.png", task="text_recognition", model="qwen-vl-ocr")
    line = {"id": KEY, "custom_id": "c1", "response": {"status_code": 400, "request_id": KEY,
                                                       "body": {"error": {"code": KEY, "message": f"no {KEY}"}}}}
    row = result_from_line(entry, line).to_row()
    assert row["status"] == "error" and KEY not in json.dumps(row)


def test_the_log_filter_is_the_same_redaction_on_every_line_of_our_loggers():
    _register()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("airflow_provider_qwenocr")
    logger.addHandler(handler)
    try:
        assert SECRET_FILTER in logger.filters
        handler.addFilter(SECRET_FILTER)  # as on the task handlers: child loggers' records pass it too
        logging.getLogger("airflow_provider_qwenocr.runs.realtime").warning(
            "row %s: %s (Authorization: Bearer %s)", "a.png", KEY, KEY)
        try:
            raise RuntimeError(f"boom {KEY}")
        except RuntimeError:
            logging.getLogger("airflow_provider_qwenocr.hooks.qwenocr").exception("failed")
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    assert "a.png" in text and "boom ***" in text and KEY not in text
