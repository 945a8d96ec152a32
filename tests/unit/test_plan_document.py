"""ocr/plan.plan_document: how a document is sent (one decision) and which keys find its rows."""

from __future__ import annotations

import pytest

from airflow_provider_qwenocr.ocr.layouts import page_key
from airflow_provider_qwenocr.ocr.plan import Send, document_key, plan_document
from airflow_provider_qwenocr.ocr.request import build_ocr_request
from tests.fixtures.pdfs import blank_pdf

pytest.importorskip("pypdfium2")


NAMES = ["d.pdf#page=1", "d.pdf#page=2"]


def test_a_pdf_goes_whole_to_a_model_that_reads_pdfs_and_is_never_rendered():
    request = build_ocr_request(model="qwen3.5-ocr", task="document_parsing")
    data = blank_pdf(2, size=(300, 400))

    def never():
        raise AssertionError("pages must not be read")

    plan = plan_document("d.pdf", request, NAMES, whole=data, read_pages=never)
    assert plan.send is Send.UPLOAD and plan.data is data and plan.lookup == (plan.identity.key,)
    assert plan.identity.key == document_key(request, plan.identity.sha256) and plan.identity.page is None
    assert [p.identity.page for p in plan.pages] == [1, 2] and all(p.identity.sha256 is None for p in plan.pages)
    assert [p.identity.key for p in plan.pages] == [page_key(plan.identity.key, "document_parsing", "qwen3.5-ocr", n)
                                                    for n in (1, 2)]
    assert [p.identity.source for p in plan.pages] == NAMES


def test_older_models_get_the_pages_as_images_keyed_on_the_file():
    request = build_ocr_request(model="qwen-vl-ocr")
    data = blank_pdf(2, size=(300, 400))
    plan = plan_document("d.pdf", request, NAMES, whole=data, read_pages=lambda: [b"page-1", b"page-2"])
    assert plan.send is Send.INLINE and plan.data is None and [p.data for p in plan.pages] == [b"page-1", b"page-2"]
    assert all(p.identity.sha256 for p in plan.pages)
    same = plan_document("d.pdf", request, NAMES, whole=data, read_pages=lambda: [b"page-1", b"page-2"])
    other_model = plan_document("d.pdf", build_ocr_request(model="qwen-vl-ocr-2025-11-20"), NAMES, whole=data,
                                read_pages=lambda: [b"page-1", b"page-2"])
    assert same.keys() == plan.keys() and not set(other_model.keys()) & set(plan.keys())
    assert plan.identity.key != request.key(plan.identity.sha256), "the document unit is not the page unit"


def test_a_group_is_keyed_on_its_pages_in_order():
    request = build_ocr_request(model="qwen-vl-ocr")
    ab = plan_document("a + b", request, ["a", "b"], read_pages=lambda: [b"A", b"B"])
    ba = plan_document("b + a", request, ["b", "a"], read_pages=lambda: [b"B", b"A"])
    assert ab.send is Send.INLINE and ab.identity.key != ba.identity.key
    with pytest.raises(ValueError, match="1 page images for 2 pages"):
        plan_document("a + b", request, ["a", "b"], read_pages=lambda: [b"A"])
