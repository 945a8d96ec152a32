"""ocr/document: the requests of one document → one document row (page None, pages N, one KIE answer)."""

from __future__ import annotations

from airflow_provider_qwenocr.ocr.document import document_row, merge_kv
from airflow_provider_qwenocr.ocr.plan import Identity
from airflow_provider_qwenocr.ocr.results import OcrResult, Usage

DOC = Identity(source="/in/invoice.pdf", key="k-doc", sha256="abc")


def answer(text, kv=None, *, usage=(100, 10), cost=(0.1, 0.7), request_id="r", finish="stop", md=None, task="key_information_extraction"):
    return OcrResult(source="x", task=task, model="qwen-vl-ocr", text=text, kv=kv,
                     usage=Usage(usage[0], usage[1], usage[0] - 5, sum(usage)),
                     cost=None if cost is None else {"usd": cost[0], "cny": cost[1]},
                     request_id=request_id, finish_reason=finish, markdown=md)


def test_merge_kv_takes_the_first_non_null_value_per_field_in_page_order():
    page1 = {"invoice_no": "INV-7", "total": None, "seller": {"name": "ACME", "tax_id": ""}, "lines": []}
    page2 = {"invoice_no": "INV-8?", "total": "12.50", "seller": {"name": "Other", "tax_id": "91-X"},
             "lines": [{"item": "bolt"}], "due": "2026-01-31"}
    assert merge_kv([page1, page2]) == {
        "invoice_no": "INV-7", "total": "12.50", "seller": {"name": "ACME", "tax_id": "91-X"},
        "lines": [{"item": "bolt"}], "due": "2026-01-31"}
    assert merge_kv([None, {"a": "1"}]) == {"a": "1"}
    assert merge_kv([None, None]) is None
    assert merge_kv([{"a": "N/A"}, {"a": "5"}]) == {"a": "5"}  # the warehouse's NULL words count as null


def test_several_requests_one_document_row():
    a1 = answer("page one", {"invoice_no": "INV-7", "total": None}, request_id="r1")
    a2 = answer("page two", {"invoice_no": None, "total": "12.50"}, usage=(50, 5), cost=(0.05, 0.35), request_id="r2")
    pages = [OcrResult(source="/in/invoice.pdf#page=1", task=a1.task, model=a1.model, page=1, markdown="# One"),
             OcrResult(source="/in/invoice.pdf#page=2", task=a1.task, model=a1.model, page=2, markdown="Two")]
    row = document_row(DOC, [a1, a2], pages)
    assert (row.source, row.key, row.sha256, row.page, row.pages) == ("/in/invoice.pdf", "k-doc", "abc", None, 2)
    assert row.ok and row.text == "page one\n\npage two" and row.markdown == "# One\n\nTwo"
    assert row.kv == {"invoice_no": "INV-7", "total": "12.50"}
    assert row.usage == Usage(150, 15, 140, 165)
    assert row.cost == {"usd": 0.15, "cny": 1.05}
    assert row.request_id == "r1,r2" and row.words is None


def test_one_request_keeps_the_services_document_answer():
    kv = {"invoice_no": "INV-7", "total": "12.50"}
    row = document_row(DOC, [answer("whole", kv)], page_count=2)
    assert row.kv is kv and row.pages == 2 and row.usage.total_tokens == 110


def test_an_unknown_price_makes_the_document_cost_unknown_not_smaller():
    row = document_row(DOC, [answer("a"), answer("b", cost=None), answer("c", usage=(10, 1))])
    assert row.cost == {"usd": 0.2, "cny": 1.4}  # a row without any cost adds nothing (it was not billed)
    unknown = answer("d")
    unknown.cost = {"usd": None, "cny": None}
    row = document_row(DOC, [answer("a"), unknown])
    assert row.cost == {"usd": None, "cny": None}


def test_a_failed_request_fails_the_document_and_a_cut_one_says_length():
    bad = OcrResult.failure("x", "text_recognition", "qwen-vl-ocr", "InvalidParameter", "too big")
    row = document_row(DOC, [answer("a"), bad])
    assert not row.ok and row.error.code == "InvalidParameter" and row.page is None and row.pages == 2
    row = document_row(DOC, [answer("a"), answer("b", finish="length")])
    assert row.ok and row.finish_reason == "length"


def test_page_rows_as_answers_one_page_per_request():
    pages = [answer(f"p{i}", {"f": str(i) if i == 3 else None}) for i in (1, 2, 3)]
    row = document_row(DOC, pages, pages)
    assert row.pages == 3 and row.text == "p1\n\np2\n\np3" and row.kv == {"f": "3"}
    assert row.to_row()["pages"] == 3 and OcrResult.from_row(row.to_row()) == row
