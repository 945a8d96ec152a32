"""The recognised text does not depend on which preparation path ran (issue 11).

Every test document goes through ``prepare_image`` twice — the libjpeg-turbo path (ocr/jpeg_fast.py) and
the Pillow path it replaces — and the rapidocr engine (the emulator's settings) reads both prepared images.
Two variants per document: the file as it is (PNGs take the Pillow path either way; JPEGs differ), and a
4x-upscaled q92 JPEG prepared at ``max_pixels=1_000_000``, so the fast path's DCT-scaled decode and
bilinear downscale run as on a 12-MP scan.

Compared as the accuracy test compares (NFKC, whitespace removed). Measured on these 15 documents: 26 of
the 30 comparisons are identical byte for byte; 3 differ only in a space after a full-width colon or '：'
read as ':' (what NFKC folds, and what the emulator's field matching ignores); 1 differs after folding —
invoice_zh_en_hard upscaled: the Pillow path reads "发票号码::10283819", the fast path the correct
"发票号码:10283819". So where the normalised texts differ, the fast path must be at least as close to the
document's ground truth (``.txt``) as the Pillow path; without a ground truth they must be equal.
"""

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from airflow_provider_qwenocr.ocr import jpeg_fast
from airflow_provider_qwenocr.ocr.images import decode_data_url, prepare_image
from airflow_provider_qwenocr.ocr.models import get_model
from tests.integration.test_emulator_accuracy import edit_distance, norm

rapidocr = pytest.importorskip("rapidocr")
pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not jpeg_fast.available(), reason="the `fast` extra is not installed")]

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted(p for d in (ROOT / "tests" / "data" / "docs", ROOT / "dags" / "sample_docs")
              for p in d.iterdir() if p.suffix in (".png", ".jpg"))
SPEC = get_model("qwen-vl-ocr")
PARAMS = {"Global.log_level": "error", "Det.limit_type": "max", "Det.limit_side_len": 1280}  # as the emulator


@pytest.fixture(scope="module")
def ocr():
    return rapidocr.RapidOCR(params=PARAMS)


def _text(ocr, prep) -> str:
    img = Image.open(io.BytesIO(decode_data_url(prep.data_url)[1])).convert("RGB")
    out = ocr(np.asarray(img))
    lines = [] if out is None or out.txts is None else [str(t) for t in out.txts]
    return norm("\n".join(lines))


def _same_or_closer(path: Path, fast: str, ref: str) -> None:
    if fast == ref:
        return
    truth = path.with_suffix(".txt")
    assert truth.exists(), f"texts differ and {path.name} has no ground truth: {fast!r} != {ref!r}"
    t = norm(truth.read_text(encoding="utf-8"))
    assert edit_distance(t, fast) <= edit_distance(t, ref), (fast, ref)


def _both(data: bytes, monkeypatch, **kw):
    fast = prepare_image(data, SPEC, **kw)
    with monkeypatch.context() as m:
        m.setattr(jpeg_fast, "simplejpeg", None)
        ref = prepare_image(data, SPEC, **kw)
    assert (fast.sent_width, fast.sent_height, fast.tokens) == (ref.sent_width, ref.sent_height, ref.tokens)
    return fast, ref


def _upscaled_jpeg(path: Path) -> bytes:
    img = Image.open(path).convert("RGB")
    img = img.resize((img.width * 4, img.height * 4), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=92)
    return buf.getvalue()


@pytest.mark.parametrize("path", DOCS, ids=[p.name for p in DOCS])
def test_text_is_the_same_on_both_paths(ocr, monkeypatch, path):
    fast, ref = _both(path.read_bytes(), monkeypatch)
    original = _text(ocr, ref)
    _same_or_closer(path, _text(ocr, fast), original)
    fast, ref = _both(_upscaled_jpeg(path), monkeypatch, max_pixels=1_000_000)
    want = _text(ocr, ref)
    assert want or not original, "the reference path read nothing: the comparison would be empty"
    _same_or_closer(path, _text(ocr, fast), want)
