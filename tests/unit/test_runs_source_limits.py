"""Hostile sources (issue 20 #3, #4, #5, #9): bounded downloads, size and signature checked before the
body, globs that do not follow directory links into loops, and the operator's own outputs left out.

Servers are on 127.0.0.1 (tests/fixtures/hostile.py); every case is bounded to seconds.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
import time

import pytest
from PIL import Image

from airflow_provider_qwenocr.runs.sources import expand_sources
from tests.fixtures.hostile import HostileServer


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), "white").save(buf, "PNG")
    return buf.getvalue()


def server(mode: str, interval: float = 2.0, max_bytes: int = 200 * 1024 * 1024) -> HostileServer:
    """A PNG signature, then ``drip`` (1 zero byte / interval) or ``endless`` zeros; no Content-Length."""
    return HostileServer(mode, interval=interval, max_bytes=max_bytes, content_type="image/png",
                         prefix=b"\x89PNG\r\n\x1a\n", fill=b"\0")


def _read_error(src) -> Exception:
    with pytest.raises(Exception) as ei:
        src.read()
    return ei.value


def test_a_dripping_fetched_source_ends_within_the_fetch_timeout():
    srv = server("drip", max_bytes=30)
    try:
        (src,) = expand_sources(srv.url("/scan.png"), fetch=True, fetch_timeout=2.0)
        started = time.monotonic()
        err = _read_error(src)
        elapsed = time.monotonic() - started
    finally:
        srv.stop()
    assert getattr(err, "code", None) == "SourceTimeout", err
    assert elapsed < 9.0, elapsed  # 2 s deadline; slack for a loaded CI host


@pytest.mark.parametrize("model, cap_mb", [(None, 10), ("qwen3.5-ocr", 20)])  # None: the default model
def test_an_endless_fetched_source_stops_at_the_model_image_limit(model, cap_mb):
    srv = server("endless")
    try:
        (src,) = expand_sources(srv.url("/scan.png"), fetch=True, **({"model": model} if model else {}))
        started = time.monotonic()
        err = _read_error(src)
        elapsed = time.monotonic() - started
    finally:
        srv.stop()
    assert getattr(err, "code", None) == "SourceTooLarge", err
    assert f"{cap_mb * 1024 * 1024:,}" in str(err)
    assert srv.sent <= (cap_mb + 8) * 1024 * 1024, srv.sent  # stopped near the cap, not at the 200 MB offered
    assert elapsed < 20.0


def test_a_huge_file_named_png_is_refused_by_its_size_before_any_read(tmp_path):
    """2 GB on the file system, no disk used (sparse); it starts like a PNG, so only the size can tell."""
    big = tmp_path / "scan.png"
    with open(big, "wb") as fh:
        fh.write(b"\x89PNG\r\n\x1a\n")
        fh.truncate(2 * 1024**3)
    (src,) = expand_sources(str(tmp_path / "*.png"))
    started = time.monotonic()
    err = _read_error(src)
    assert getattr(err, "code", None) == "SourceTooLarge", err
    assert "2,147,483,648 bytes" in str(err)
    assert time.monotonic() - started < 5.0  # reading 2 GB takes far longer (and 2 GB of memory)


def test_a_non_image_named_png_is_refused_by_its_first_bytes(tmp_path):
    fake = tmp_path / "scan.png"
    with open(fake, "wb") as fh:
        fh.write(b"%!PS-Adobe-3.0 not an image")
        fh.truncate(50 * 1024 * 1024)  # sparse: 50 MB of nothing that would have been read whole
    (tmp_path / "ok.png").write_bytes(_png())
    srcs = {os.path.basename(s.uri): s for s in expand_sources(str(tmp_path))}
    err = _read_error(srcs["scan.png"])
    assert getattr(err, "code", None) == "InvalidImage", err
    assert "not an image" in str(err)
    assert srcs["ok.png"].read() == _png()  # a real one still reads whole


def test_a_misnamed_jpeg_is_not_refused(tmp_path):
    buf = io.BytesIO()
    Image.new("RGB", (20, 20), "white").save(buf, "JPEG")
    (tmp_path / "photo.png").write_bytes(buf.getvalue())
    (src,) = expand_sources(str(tmp_path / "photo.png"))
    assert src.read() == buf.getvalue()  # the decoder judges the format, not the name


def test_a_recursive_glob_does_not_follow_links_into_loops(tmp_path):
    """Two links back up the tree: following them, ``**`` branches twice per level until ELOOP (2^40)."""
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "x.png").write_bytes(_png())
    (tmp_path / "y.png").write_bytes(_png())
    os.symlink(tmp_path, tmp_path / "a" / "b" / "up")
    os.symlink(tmp_path / "a", tmp_path / "a" / "b" / "loop")
    code = textwrap.dedent(f"""
        from airflow_provider_qwenocr.runs.sources import expand_sources
        print(sorted(s.uri.rsplit("/", 1)[-1] for s in expand_sources({str(tmp_path / "**" / "*.png")!r})))
    """)
    started = time.monotonic()
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail("the glob was still walking after 30 s")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['x.png', 'y.png']"
    assert time.monotonic() - started < 30


def test_excluded_locations_are_not_sources(tmp_path):
    (tmp_path / "scan.png").write_bytes(_png())
    (tmp_path / "boxes").mkdir()
    (tmp_path / "boxes" / "scan.1a2b3c4d.boxes.png").write_bytes(_png())
    (tmp_path / "boxes-not-mine.png").write_bytes(_png())  # a sibling sharing the prefix is still an input
    names = [os.path.basename(s.uri) for s in expand_sources(str(tmp_path), exclude=[str(tmp_path / "boxes")])]
    assert names == ["boxes-not-mine.png", "scan.png"]
    globbed = expand_sources(str(tmp_path / "**" / "*.png"), exclude=[str(tmp_path / "boxes") + "/"])
    assert [os.path.basename(s.uri) for s in globbed] == ["boxes-not-mine.png", "scan.png"]


def test_a_pdf_over_the_services_100_mb_is_read_to_be_split_not_refused():
    """Issue 18: a PDF larger than one request takes is split into <= 100 MB parts, so the read cap is above
    the service's per-request limit (and still bounded)."""
    from airflow_provider_qwenocr.ocr.models import MAX_PDF_BYTES
    from airflow_provider_qwenocr.runs.source_limits import MAX_PDF_SOURCE_BYTES, cap_for

    assert cap_for("/in/contract.pdf", downloaded=False) == MAX_PDF_SOURCE_BYTES > MAX_PDF_BYTES
    assert cap_for("https://h/contract.PDF?sig=1", downloaded=True) == MAX_PDF_SOURCE_BYTES

