"""The libjpeg-turbo path (ocr/jpeg_fast.py): same grid, same orientation, close pixels to the Pillow path."""

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw

from airflow_provider_qwenocr.ocr import images, jpeg_fast
from airflow_provider_qwenocr.ocr.images import decode_data_url, image_tokens, pixel_bounds, prepare_image
from airflow_provider_qwenocr.ocr.models import get_model

pytestmark = pytest.mark.skipif(not jpeg_fast.available(), reason="the `fast` extra (simplejpeg, opencv) is missing")
SPEC = get_model("qwen-vl-ocr")


def _scan(w, h, *, orientation=None, mode="RGB", quality=92, seed=0):
    """An asymmetric page (text block top-left, a dark bar on the right) so a wrong rotation shows."""
    rng = np.random.default_rng(seed)
    base = rng.normal(225, 12, (h, w, 3)).clip(0, 255).astype(np.uint8)
    img = Image.fromarray(base)
    d = ImageDraw.Draw(img)
    for row in range(12):
        d.text((w // 20, h // 20 + row * h // 30), f"{seed:02d}-{row:02d} quick brown fox 0123456789",
               fill=(20, 20, 30))
    d.rectangle((w - w // 8, 0, w - 1, h // 2), fill=(30, 60, 160))
    img = img.convert(mode)
    buf = io.BytesIO()
    kw = {}
    if orientation:
        exif = Image.Exif()
        exif[0x0112] = orientation
        kw["exif"] = exif.tobytes()
    img.save(buf, "JPEG", quality=quality, **kw)
    return buf.getvalue()


def _decoded(prep, reduce=1):
    img = Image.open(io.BytesIO(decode_data_url(prep.data_url)[1])).convert("RGB")
    return np.asarray(img.reduce(reduce), dtype=np.int16)


def _structure_diff(a, b):
    """Mean |difference| of 4x box-averaged copies: the page's structure, not the filters' take on pixel noise."""
    return np.abs(_decoded(a, 4) - _decoded(b, 4)).mean()


def _pillow_only(monkeypatch, data, **kw):
    with monkeypatch.context() as m:
        m.setattr(jpeg_fast, "simplejpeg", None)
        return prepare_image(data, SPEC, **kw)


@pytest.mark.parametrize("raw,need,m", [((4000, 3000), (3328, 2496), 8), ((4000, 3000), (1600, 1184), 4),
                                        ((4000, 3000), (960, 704), 2), ((4000, 3000), (480, 352), 1),
                                        ((4000, 3000), (200, 150), 1), ((300, 200), (320, 224), 8)])
def test_dct_scale_is_the_smallest_power_of_two_covering_the_grid(raw, need, m):
    assert jpeg_fast.dct_scale(*raw, *need) == m


@pytest.mark.parametrize("size,max_pixels", [((4000, 3000), None), ((4000, 3000), 1_000_000),
                                             ((3000, 4000), 250_000), ((1200, 900), None)])
def test_fast_path_lands_on_the_documented_grid(monkeypatch, size, max_pixels):
    data = _scan(*size)
    calls = []
    real = jpeg_fast.to_grid
    monkeypatch.setattr(jpeg_fast, "to_grid", lambda *a, **k: calls.append(1) or real(*a, **k))
    prep = prepare_image(data, SPEC, max_pixels=max_pixels)
    lo, hi = pixel_bounds(SPEC, None, max_pixels)
    w, h = size
    assert calls and prep.mime == "image/jpeg"
    assert prep.tokens == image_tokens(h, w, SPEC.patch, lo, hi)
    assert _decoded(prep).shape[:2] == (prep.sent_height, prep.sent_width)
    assert prep.nbytes / len(data) < 0.6 or max_pixels is not None or w < 1000


@pytest.mark.parametrize("orientation", [1, 2, 3, 4, 5, 6, 7, 8])
def test_exif_orientation_matches_the_pillow_path(monkeypatch, orientation):
    data = _scan(1200, 800, orientation=orientation, seed=orientation)
    fast = prepare_image(data, SPEC, max_pixels=400_000)
    ref = _pillow_only(monkeypatch, data, max_pixels=400_000)
    assert (fast.width, fast.height, fast.sent_width, fast.sent_height) == \
           (ref.width, ref.height, ref.sent_width, ref.sent_height)
    diff = _structure_diff(fast, ref)
    assert diff < 2.0, diff  # the filters differ slightly; a wrong rotation/flip gives ~20+


def test_large_scan_pixels_close_to_the_pillow_path(monkeypatch):
    data = _scan(4000, 3000, seed=7)
    fast, ref = prepare_image(data, SPEC), _pillow_only(monkeypatch, data)
    assert fast.sent_width == ref.sent_width == 3328 and fast.sent_height == ref.sent_height == 2496
    assert _structure_diff(fast, ref) < 2.0


def test_grayscale_jpeg_stays_grayscale():
    prep = prepare_image(_scan(1000, 700, mode="L"), SPEC)
    img = Image.open(io.BytesIO(decode_data_url(prep.data_url)[1]))
    assert img.mode == "L" and img.size == (prep.sent_width, prep.sent_height)


def test_cmyk_and_forced_png_leave_it_to_pillow(monkeypatch):
    calls = []
    monkeypatch.setattr(images, "_pillow_to_grid", lambda *a, real=images._pillow_to_grid: calls.append(a[2]) or real(*a))
    buf = io.BytesIO()
    Image.open(io.BytesIO(_scan(400, 300))).convert("CMYK").save(buf, "JPEG")
    assert prepare_image(buf.getvalue(), SPEC).mime == "image/jpeg"
    assert prepare_image(_scan(400, 300), SPEC, fmt="PNG").mime == "image/png"
    assert calls == [None, "PNG"]


def test_line_art_jpeg_still_goes_as_png():
    img = Image.new("RGB", (900, 500), "white")
    ImageDraw.Draw(img).text((20, 20), "Total 42.00", fill="black")
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=100, subsampling=0)
    # the same probe decides on both paths: few colours → PNG
    ref_fmt = "PNG" if images._looks_like_line_art(Image.open(io.BytesIO(buf.getvalue())).convert("RGB")) else "JPEG"
    assert prepare_image(buf.getvalue(), SPEC).mime == images._MIME[ref_fmt]


def test_missing_wheel_falls_back_to_pillow_with_the_same_grid(monkeypatch):
    data = _scan(2000, 1500)
    ref = _pillow_only(monkeypatch, data)
    fast = prepare_image(data, SPEC)
    assert (ref.sent_width, ref.sent_height, ref.tokens) == (fast.sent_width, fast.sent_height, fast.tokens)


def test_corrupt_jpeg_is_still_a_validation_error():
    data = _scan(800, 600)
    with pytest.raises(images.ImageValidationError):
        prepare_image(data[: len(data) // 3], SPEC)


def test_reused_buffers_are_safe_across_threads():
    """Pages prepared by many threads at once come out byte-identical to one at a time (no shared buffer)."""
    from concurrent.futures import ThreadPoolExecutor

    pages = [_scan(1600 + 64 * i, 1200, seed=i) for i in range(6)]
    alone = [prepare_image(p, SPEC).data_url for p in pages]
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(lambda p: prepare_image(p, SPEC).data_url, pages * 3))
    assert together == alone * 3


@pytest.mark.parametrize("kind", ["line_art", "scan", "gray_line_art"])
def test_sampled_probe_gives_the_full_average_verdict(kind):
    """The fast path's probe samples the grid (cheap) instead of averaging all of it: same answer both ways."""
    if kind == "scan":
        arr = np.asarray(Image.open(io.BytesIO(_scan(3328, 2496))).convert("RGB"))
    else:
        img = Image.new("RGB", (3328, 2496), "white")
        d = ImageDraw.Draw(img)
        for row in range(30):
            d.text((100, 80 + row * 80), "Invoice 42.00 total due", fill="black")
        d.rectangle((2800, 100, 3200, 600), fill=(200, 30, 30))
        arr = np.asarray(img.convert("L") if kind == "gray_line_art" else img)
    full = images._looks_like_line_art(Image.fromarray(arr))
    assert full is (kind != "scan")  # the fixture is what it claims
    assert jpeg_fast.looks_like_line_art(arr, images._looks_like_line_art) is full


def test_opencv_runs_on_the_calling_thread_once_a_page_is_prepared(monkeypatch):
    """Pages are prepared one per CPU already; OpenCV's own threads on top only cost CPU (bench in the docstring)."""
    import cv2

    monkeypatch.setattr(jpeg_fast, "_cv2_threads_set", False)
    cv2.setNumThreads(2)
    ran = []
    monkeypatch.setattr(jpeg_fast, "_resize", lambda *a: ran.append(1) or a[0])  # no resize: the grid is the size
    prep = prepare_image(_scan(2048, 1536), SPEC)  # multiples of the 32-px patch: the fast path, no upscale
    assert ran and prep.sent_width == 2048 and cv2.getNumThreads() == 1
