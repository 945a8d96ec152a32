"""expand_sources: local files, directories, globs, URLs, s3:// (moto), PDFs; lazy reads; clear errors."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from airflow_provider_qwenocr.runs.sources import NoSourcesError, expand_sources


def _png(color=(200, 200, 200), size=(40, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def tree(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "deep").mkdir()
    (tmp_path / "a.png").write_bytes(_png((1, 2, 3)))
    (tmp_path / "b" / "c.JPG").write_bytes(_png((4, 5, 6)))
    (tmp_path / "b" / "deep" / "d.webp").write_bytes(_png((7, 8, 9)))
    (tmp_path / "notes.txt").write_text("not an image")
    return tmp_path


def test_directory_is_recursive_sorted_and_filtered(tree):
    srcs = expand_sources(str(tree))
    names = [s.uri.removeprefix(str(tree.resolve()) + "/") for s in srcs]
    assert names == ["a.png", "b/c.JPG", "b/deep/d.webp"]
    assert all(not s.is_remote_url and s.page is None for s in srcs)


def test_reads_are_lazy(tree):
    srcs = expand_sources(str(tree / "a.png"))
    (tree / "a.png").write_bytes(b"\x89PNG\r\n\x1a\nchanged after listing")
    assert srcs[0].read() == b"\x89PNG\r\n\x1a\nchanged after listing"


def test_glob_and_list_deduplicate(tree):
    srcs = expand_sources([str(tree / "**" / "*.png"), str(tree / "a.png"), str(tree / "b")])
    assert [s.uri.rsplit("/", 1)[-1] for s in srcs] == ["a.png", "c.JPG", "d.webp"]


def test_explicit_file_taken_whatever_its_extension(tree):
    srcs = expand_sources(str(tree / "notes.txt"))
    assert len(srcs) == 1 and srcs[0].read() == b"not an image"


def test_url_is_flagged_remote_and_not_fetched():
    srcs = expand_sources(["https://example.com/x.png", "http://127.0.0.1:9/y.jpg"])
    assert [s.is_remote_url for s in srcs] == [True, True]
    assert srcs[0].uri == "https://example.com/x.png"


def test_nothing_matches_names_the_entries(tree):
    with pytest.raises(NoSourcesError) as err:
        expand_sources([str(tree / "a.png"), str(tree / "missing" / "*.png"), str(tree / "nope.png")])
    assert "missing" in str(err.value) and "nope.png" in str(err.value)
    with pytest.raises(NoSourcesError):
        expand_sources([])


def test_pdf_becomes_one_source_per_page(tmp_path):
    pdfium = pytest.importorskip("pypdfium2")
    doc = pdfium.PdfDocument.new()
    for _ in range(3):
        doc.new_page(200, 100).close()  # pages, then the document, closed: pypdfium2 4.0 crashes at exit otherwise
    buf = io.BytesIO()
    doc.save(buf)
    doc.close()
    (tmp_path / "doc.pdf").write_bytes(buf.getvalue())
    srcs = expand_sources(str(tmp_path))
    assert [s.page for s in srcs] == [1, 2, 3]
    assert srcs[1].name.endswith("doc.pdf#page=2")
    page = Image.open(io.BytesIO(srcs[2].read()))
    assert page.format == "PNG" and page.size[0] > page.size[1]


def test_corrupt_pdf_is_an_error_source_not_a_crash(tmp_path):
    (tmp_path / "bad.pdf").write_bytes(b"%PDF-1.4 garbage")
    (srcs,) = [expand_sources(str(tmp_path))]
    assert len(srcs) == 1 and srcs[0].error and "PDF" in srcs[0].error
    with pytest.raises(ValueError):
        srcs[0].read()


# -- s3 via moto ------------------------------------------------------------------------------------


@pytest.fixture
def s3_images(s3_conn, s3_bucket):
    """Images under a prefix on moto S3 (fixtures s3_conn / s3_bucket from tests/fixtures/s3.py)."""
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    hook = S3Hook(aws_conn_id=s3_conn)
    for key, color in (("in/one.png", (1, 1, 1)), ("in/sub/two.jpg", (2, 2, 2)), ("in/readme.md", None),
                       ("inbox/other.png", (3, 3, 3))):
        data = b"# readme" if color is None else _png(color)
        hook.load_bytes(data, key=key, bucket_name=s3_bucket, replace=True)
    return s3_conn, s3_bucket


def test_s3_prefix_key_and_glob(s3_images):
    conn, b = s3_images
    srcs = expand_sources(f"s3://{b}/in", aws_conn_id=conn)
    assert [s.uri for s in srcs] == [f"s3://{b}/in/one.png", f"s3://{b}/in/sub/two.jpg"]
    assert Image.open(io.BytesIO(srcs[0].read())).getpixel((0, 0)) == (1, 1, 1)
    single = expand_sources(f"s3://{b}/inbox/other.png", aws_conn_id=conn)
    assert [s.uri for s in single] == [f"s3://{b}/inbox/other.png"]
    globbed = expand_sources(f"s3://{b}/in*/*.png", aws_conn_id=conn)
    assert [s.uri for s in globbed] == [f"s3://{b}/in/one.png", f"s3://{b}/inbox/other.png"]
    with pytest.raises(NoSourcesError):
        expand_sources(f"s3://{b}/nothing-here/", aws_conn_id=conn)


def test_many_s3_keys_are_checked_concurrently_in_the_given_order(s3_images, monkeypatch):
    """One HeadObject per explicit key: 40 of them go 16 at a time, and the result keeps the entries' order."""
    import threading
    import time

    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    conn, b = s3_images
    real, active, peak, lock = S3Hook.check_for_key, [0], [0], threading.Lock()

    def slow_check(self, *a, **k):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.05)
        try:
            return real(self, *a, **k)
        finally:
            with lock:
                active[0] -= 1

    monkeypatch.setattr(S3Hook, "check_for_key", slow_check)
    keys = [f"s3://{b}/in/one.png", f"s3://{b}/inbox/other.png", f"s3://{b}/in/sub/two.jpg"] * 13 + [f"s3://{b}/in/one.png"]
    t0 = time.perf_counter()
    srcs = expand_sources(keys, aws_conn_id=conn)
    elapsed = time.perf_counter() - t0
    assert peak[0] > 4, peak
    assert elapsed < 40 * 0.05, elapsed  # one after another, the sleeps alone would take 2 s
    assert [s.uri for s in srcs] == [f"s3://{b}/in/one.png", f"s3://{b}/inbox/other.png", f"s3://{b}/in/sub/two.jpg"]
    with pytest.raises(NoSourcesError, match="gone.png"):
        expand_sources([f"s3://{b}/in/one.png", f"s3://{b}/in/gone.png"], aws_conn_id=conn)
