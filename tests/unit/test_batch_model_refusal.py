"""Batch refuses model/endpoint combinations its docs do not list — before any byte is uploaded.

The Batch reference lists OCR batch for the qwen-vl-ocr family over ``/v1/chat/completions`` lines; it names
neither ``qwen3.5-ocr`` (a Responses-API model) nor ``/v1/responses`` lines (reference §5/§10). A scripted
loopback stub stands in for the service and shows that nothing reached it.
"""

from __future__ import annotations

import io
import json

import pytest

from airflow_provider_qwenocr.dashscope.batch import BatchClient, BatchModelError, check_batch_request
from airflow_provider_qwenocr.dashscope.config import ClientConfig
from airflow_provider_qwenocr.ocr.request import build_ocr_request
from airflow_provider_qwenocr.runs.batch import BatchRunner
from tests.unit.dashscope_stub import StubServer
from tests.unit.test_client_realtime import png

KEY = "sk-unit-test-secret-0123456789"


@pytest.fixture
def stub():
    srv = StubServer().start()
    srv.respond((200, None, json.dumps({"id": "file-batch-1", "object": "file", "bytes": 1, "filename": "x",
                                        "purpose": "batch", "status": "processed", "created_at": 1}).encode()))
    yield srv
    srv.stop()


def _client(stub) -> BatchClient:
    return BatchClient(ClientConfig(api_key=KEY, base_url=stub.base_url, max_retries=0, timeout=5))


def _line(model: str, url: str = "/v1/chat/completions") -> bytes:
    return (json.dumps({"custom_id": "1", "method": "POST", "url": url,
                        "body": {"model": model, "messages": []}}) + "\n").encode()


def test_qwen35_ocr_is_refused_with_what_to_use_instead():
    with pytest.raises(BatchModelError) as err:
        check_batch_request("qwen3.5-ocr")
    text = str(err.value)
    assert "qwen3.5-ocr" in text and "QwenOcrOperator" in text and "model='qwen-vl-ocr'" in text


def test_a_responses_endpoint_is_refused():
    with pytest.raises(BatchModelError, match="/v1/responses"):
        check_batch_request("qwen-vl-ocr", "/v1/responses")


@pytest.mark.parametrize("model", ["qwen-vl-ocr", "qwen-vl-ocr-latest", "qwen-vl-ocr-2099-01-01", None])
def test_listed_unconfirmed_and_unknown_models_pass(model):
    check_batch_request(model)  # unknown names are the service's to judge (model_not_found)
    check_batch_request(model, "/v1/chat/ds-test")


@pytest.mark.parametrize("content", [_line("qwen3.5-ocr"), io.BytesIO(_line("qwen3.5-ocr") + _line("qwen3.5-ocr")),
                                     _line("qwen-vl-ocr", "/v1/responses")])
def test_upload_refuses_an_unlisted_input_file_before_sending_a_byte(stub, content):
    with pytest.raises(BatchModelError):
        _client(stub).upload_file(content)
    assert stub.requests == []


def test_upload_of_a_listed_input_file_goes_through_and_the_stream_is_not_consumed(stub):
    fh = io.BytesIO(_line("qwen-vl-ocr") * 2)
    assert _client(stub).upload_file(fh)["id"] == "file-batch-1"
    assert len(stub.requests) == 1 and stub.requests[0]["path"] == "/compatible-mode/v1/files"


def test_create_batch_refuses_an_unlisted_endpoint(stub):
    with pytest.raises(BatchModelError):
        _client(stub).create_batch("file-batch-1", endpoint="/v1/responses")
    assert stub.requests == []


def test_a_qwen35_batch_submit_uploads_nothing(stub, tmp_path):
    runner = BatchRunner(_client(stub))
    request = build_ocr_request(task="text_recognition", model="qwen3.5-ocr")
    with pytest.raises(BatchModelError, match="not offered by the DashScope Batch API"):
        runner.submit([("a.png", png())], request, manifest_uri=str(tmp_path / "manifest.jsonl"))
    assert stub.requests == []
