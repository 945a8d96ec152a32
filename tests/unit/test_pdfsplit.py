"""ocr/pdfsplit: a PDF over the service's per-request limits becomes ≤ 50-page, ≤ 100 MB parts, unrendered."""

from __future__ import annotations

import io

import pytest

pdfium = pytest.importorskip("pypdfium2")

from airflow_provider_qwenocr.ocr.pdfsplit import PdfPartTooLarge, page_ranges, split_pdf  # noqa: E402


def numbered_pdf(n: int) -> bytes:
    """``n`` pages, page i is i points wide + 200 (so a part's pages can be told apart without text)."""
    doc = pdfium.PdfDocument.new()
    for i in range(1, n + 1):
        doc.new_page(200 + i, 300).close()
    buf = io.BytesIO()
    doc.save(buf)
    doc.close()
    return buf.getvalue()


def widths(data: bytes) -> list[int]:
    doc = pdfium.PdfDocument(data)
    try:
        return [round(doc[i].get_size()[0]) - 200 for i in range(len(doc))]
    finally:
        doc.close()


@pytest.mark.parametrize("total, expected", [(60, [(1, 50), (51, 60)]), (120, [(1, 50), (51, 100), (101, 120)])])
def test_split_by_pages_keeps_every_page_in_order(total, expected):
    parts = list(split_pdf(numbered_pdf(total)))
    assert [(p.first, p.last) for p in parts] == expected == page_ranges(total)
    assert [w for p in parts for w in widths(p.data)] == list(range(1, total + 1))
    assert all(p.pages <= 50 and p.data.startswith(b"%PDF-") for p in parts)


def test_a_pdf_within_the_limits_is_sent_as_it_is():
    data = numbered_pdf(50)
    (part,) = split_pdf(data)
    assert (part.first, part.last) == (1, 50) and part.data is data


def test_byte_limit_halves_a_part_until_it_fits():
    data = numbered_pdf(60)
    limit = len(next(split_pdf(data, max_pages=12)).data)  # 12 pages fit, 50 do not
    parts = list(split_pdf(data, max_bytes=limit))
    assert [w for p in parts for w in widths(p.data)] == list(range(1, 61))
    assert all(len(p.data) <= limit for p in parts)
    assert len(parts) > 2 and max(p.pages for p in parts) < 50


def test_a_single_page_over_the_byte_limit_is_refused():
    with pytest.raises(PdfPartTooLarge, match="page 1 alone"):
        list(split_pdf(numbered_pdf(3), max_pages=1, max_bytes=50))


def test_parts_are_made_one_at_a_time():
    it = split_pdf(numbered_pdf(120))
    first = next(it)
    assert (first.first, first.last) == (1, 50)  # the rest is not built until asked for


def test_not_a_pdf():
    with pytest.raises(ValueError, match="not a PDF"):
        list(split_pdf(b"GIF89a..."))
