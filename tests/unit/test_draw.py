"""Boxes drawn on the original image (ocr/draw.py) and PDF pages → images (ocr/pdf.py)."""

import io

import pytest
from PIL import Image

from airflow_provider_qwenocr.ocr.draw import BOX_COLOR, boxed_name, draw_words, open_png
from airflow_provider_qwenocr.ocr.results import Word


def _png(size=(200, 100), exif_orientation=None) -> bytes:
    img = Image.new("RGB", size, (255, 255, 255))
    buf = io.BytesIO()
    if exif_orientation:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        img.save(buf, "JPEG", exif=exif.tobytes())
    else:
        img.save(buf, "PNG")
    return buf.getvalue()


def test_box_outline_drawn_where_location_says():
    words = [Word("hi", [20, 30, 120, 30, 120, 60, 20, 60], [70, 45, 100, 30, 0]),
             {"text": "no box", "location": []}]
    out = open_png(draw_words(_png(), words, width=2, label=False)).convert("RGB")
    assert out.size == (200, 100)
    assert out.getpixel((70, 30)) == BOX_COLOR  # top edge
    assert out.getpixel((20, 45)) == BOX_COLOR  # left edge
    assert out.getpixel((70, 45)) == (255, 255, 255)  # inside stays untouched
    assert out.getpixel((150, 80)) == (255, 255, 255)


def test_word_without_location_is_drawn_from_its_rotate_rect():
    """qwen3.5-ocr words may carry only ``rotate_rect`` (here the service's [cx, cy, h, w, 90] form)."""
    words = [Word("no location", [], [70, 45, 30, 100, 90]), {"text": "row form", "rotate_rect": "<150><70><40><20><0>"}]
    out = open_png(draw_words(_png(), words, width=2, label=False)).convert("RGB")
    assert out.getpixel((70, 30)) == BOX_COLOR and out.getpixel((20, 45)) == BOX_COLOR  # first box's edges
    assert out.getpixel((150, 60)) == BOX_COLOR and out.getpixel((130, 70)) == BOX_COLOR  # second box's edges
    assert out.getpixel((70, 45)) == (255, 255, 255) and out.getpixel((150, 70)) == (255, 255, 255)


def test_drawn_on_exif_oriented_original():
    # Stored 200x100 with orientation 6 (rotate 90): the original the service saw is 100x200.
    out = open_png(draw_words(_png((200, 100), exif_orientation=6), []))
    assert out.size == (100, 200)


def test_boxed_name():
    assert boxed_name("s3://b/dir/scan.jpg").startswith("scan.")
    assert boxed_name("s3://b/dir/scan.jpg").endswith(".boxes.png")
    assert boxed_name("/x/doc.pdf", page=2).endswith(".p2.boxes.png")
    assert boxed_name("/x/doc.pdf", page=2) == boxed_name("/x/doc.pdf", page=2)  # stable across runs


def test_boxed_names_do_not_collide():
    """Issue 20 #8: the six sources drew three pictures (same stem, or a page vs a page-named file)."""
    sources = [("/in/a/scan.png", None), ("/in/b/scan.png", None), ("/in/scan.jpg", None),
               ("s3://bkt/scan.png", None), ("/in/doc.pdf", 1), ("/in/doc.p1.png", None)]
    names = [boxed_name(uri, page) for uri, page in sources]
    assert len(set(names)) == len(sources), names


def test_pdf_pages_render_to_images():
    pdfium = pytest.importorskip("pypdfium2")
    from airflow_provider_qwenocr.ocr.pdf import is_pdf, page_count, render_pages

    doc = pdfium.PdfDocument.new()
    doc.new_page(144, 72).close()  # pages, then the document, closed: pypdfium2 4.0 crashes at exit otherwise
    doc.new_page(72, 144).close()
    buf = io.BytesIO()
    doc.save(buf)
    doc.close()
    data = buf.getvalue()
    assert is_pdf(data) and not is_pdf(_png())
    assert page_count(data) == 2
    pages = list(render_pages(data, dpi=144))
    assert [n for n, _ in pages] == [1, 2]
    assert Image.open(io.BytesIO(pages[0][1])).size == (288, 144)
    assert Image.open(io.BytesIO(pages[1][1])).size == (144, 288)
    with pytest.raises(ValueError, match="out of range"):
        list(render_pages(data, pages=[3]))


def test_pdf_missing_extra_gives_clear_error(monkeypatch):
    import builtins

    from airflow_provider_qwenocr.ocr import pdf

    real_import = builtins.__import__

    def fake_import(name, *a, **kw):
        if name == "pypdfium2":
            raise ImportError("no")
        return real_import(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(pdf.PdfSupportMissing, match=r"\[pdf\]"):
        pdf.page_count(b"%PDF-1.7")
