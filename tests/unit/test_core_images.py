"""smart_resize and image preparation: the arithmetic the service bills by, and what we upload."""

import base64
import io
import math
import sys

import pytest
from PIL import Image, ImageDraw

from airflow_provider_qwenocr.ocr.images import (
    ImageValidationError,
    decode_data_url,
    estimate_tokens,
    image_tokens,
    prepare_image,
    smart_resize,
)
from airflow_provider_qwenocr.ocr.models import get_model


def _jpeg(w, h, quality=92, exif_orientation=None):
    img = Image.new("RGB", (w, h), (180, 200, 220))
    d = ImageDraw.Draw(img)
    for y in range(0, h, max(1, h // 20)):
        d.line([(0, y), (w, y)], fill=(10, 10, 10), width=2)
    buf = io.BytesIO()
    if exif_orientation:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        img.save(buf, "JPEG", quality=quality, exif=exif.tobytes())
    else:
        img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _png(w, h, color=(255, 255, 255)):
    buf = io.BytesIO()
    Image.new("RGB", (w, h), color).save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.parametrize("factor", [28, 32])
@pytest.mark.parametrize(
    "h,w", [(11, 11), (100, 2000), (1000, 1000), (3000, 6000), (4032, 3024), (50, 9999), (777, 333)]
)
def test_smart_resize_grid_and_bounds(h, w, factor):
    lo, hi = factor * factor * 4, factor * factor * 8192
    hb, wb = smart_resize(h, w, factor, lo, hi)
    assert hb % factor == 0 and wb % factor == 0
    assert lo <= hb * wb <= hi
    # aspect ratio is kept to within one grid cell
    assert abs(hb / wb - h / w) <= (factor / min(hb, wb)) * (h / w) + 1e-9 or min(hb, wb) == factor


def test_smart_resize_documented_cases():
    # round to the grid when inside the bounds
    assert smart_resize(800, 800, 28, 3136, 1003520) == (812, 812)
    # 1008x1008 would exceed 1,003,520 px: floor after scaling down instead
    assert smart_resize(1000, 1000, 28, 3136, 1003520) == (980, 980)
    # scale down by sqrt(area/max) and floor: 6000x3000 at 32 px with the 2026 default max
    hb, wb = smart_resize(3000, 6000, 32, 3072, 8388608)
    beta = math.sqrt(3000 * 6000 / 8388608)
    assert (hb, wb) == (math.floor(3000 / beta / 32) * 32, math.floor(6000 / beta / 32) * 32) == (2048, 4096)
    # scale up by sqrt(min/area) and ceil
    hb, wb = smart_resize(20, 30, 28, 3136, 1003520)
    beta = math.sqrt(3136 / 600)
    assert (hb, wb) == (math.ceil(20 * beta / 28) * 28, math.ceil(30 * beta / 28) * 28) == (56, 84)


def test_image_tokens_formula():
    assert image_tokens(3000, 6000, 32, 3072, 8388608) == 2048 * 4096 // 1024 + 2
    assert image_tokens(1000, 1000, 28, 3136, 1003520) == (980 // 28) ** 2 + 2 == 1227


def test_aspect_ratio_limit():
    with pytest.raises(ImageValidationError, match="aspect"):
        smart_resize(11, 2300, 28, 3136, 1003520)


@pytest.mark.parametrize("model", ["qwen-vl-ocr", "qwen-vl-ocr-2025-08-28"])
def test_prepare_sends_exact_grid_and_same_tokens(model):
    spec = get_model(model)
    data = _jpeg(3000, 4000)
    p = prepare_image(data, spec)
    assert p.sent_width % spec.patch == 0 and p.sent_height % spec.patch == 0
    mime, raw = decode_data_url(p.data_url)
    sent = Image.open(io.BytesIO(raw))
    assert sent.size == (p.sent_width, p.sent_height)
    # the service re-applies smart_resize to what we send: it must be the identity, so tokens are equal
    lo, hi = spec.default_min_pixels, spec.default_max_pixels
    assert smart_resize(p.sent_height, p.sent_width, spec.patch, lo, hi) == (p.sent_height, p.sent_width)
    assert p.tokens == image_tokens(4000, 3000, spec.patch, lo, hi) == estimate_tokens(data, spec)
    assert (p.width, p.height) == (3000, 4000)
    assert p.scale_x == pytest.approx(3000 / p.sent_width)


def test_prepare_applies_exif_orientation():
    data = _jpeg(400, 200, exif_orientation=6)  # stored landscape, displayed portrait
    p = prepare_image(data, get_model("qwen-vl-ocr"))
    assert (p.width, p.height) == (200, 400)
    assert p.sent_height > p.sent_width


def test_prepare_respects_max_pixels_argument():
    spec = get_model("qwen-vl-ocr")
    p = prepare_image(_jpeg(2000, 2000), spec, max_pixels=32 * 32 * 100)
    assert p.sent_width * p.sent_height <= 32 * 32 * 100
    assert p.tokens <= 102


def test_line_art_goes_as_png_and_photos_as_jpeg():
    spec = get_model("qwen-vl-ocr")
    assert prepare_image(_png(300, 200), spec).mime == "image/png"
    noisy = Image.effect_noise((600, 400), 60).convert("RGB")
    buf = io.BytesIO()
    noisy.save(buf, "JPEG", quality=92)
    assert prepare_image(buf.getvalue(), spec).mime == "image/jpeg"


def test_transparent_png_is_flattened_on_white():
    img = Image.new("RGBA", (100, 100), (0, 0, 0, 0))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    p = prepare_image(buf.getvalue(), get_model("qwen-vl-ocr"), fmt="PNG")
    _, raw = decode_data_url(p.data_url)
    assert Image.open(io.BytesIO(raw)).convert("RGB").getpixel((5, 5)) == (255, 255, 255)


@pytest.mark.parametrize(
    "data,match",
    [
        (b"not an image", "cannot decode"),
        (_png(10, 50), "larger than 10"),
        (_png(11, 3000), "aspect"),
    ],
)
def test_invalid_images_raise_clear_errors(data, match):
    with pytest.raises(ImageValidationError, match=match):
        prepare_image(data, get_model("qwen-vl-ocr"))


def test_truncated_jpeg_is_a_validation_error():
    data = _jpeg(800, 600)[:400]
    with pytest.raises(ImageValidationError):
        prepare_image(data, get_model("qwen-vl-ocr"))


def test_min_larger_than_max_is_rejected():
    with pytest.raises(ValueError, match="min_pixels"):
        prepare_image(_png(100, 100), get_model("qwen-vl-ocr"), min_pixels=10_000, max_pixels=5_000)


def test_sha256_is_of_the_original_bytes():
    import hashlib

    data = _png(64, 64)
    assert prepare_image(data, get_model("qwen-vl-ocr")).sha256 == hashlib.sha256(data).hexdigest()


def test_core_does_not_import_airflow():
    """Every module of the OCR core and the DashScope client imports without pulling in Airflow."""
    import subprocess

    code = (
        "import importlib, pkgutil, sys\n"
        "import airflow_provider_qwenocr.ocr as o, airflow_provider_qwenocr.dashscope as d\n"
        "names = [p.__name__ + '.' + m.name for p in (o, d) for m in pkgutil.iter_modules(p.__path__)]\n"
        "[importlib.import_module(n) for n in names]\n"
        "print(len(names), 'airflow' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    n, imported = out.stdout.split()
    assert int(n) >= 15 and imported == "False", out.stdout


def test_data_url_roundtrip():
    raw = b"\x89PNG fake"
    mime, back = decode_data_url("data:image/png;base64," + base64.b64encode(raw).decode())
    assert (mime, back) == ("image/png", raw)
    with pytest.raises(ImageValidationError):
        decode_data_url("https://example.invalid/x.png")
