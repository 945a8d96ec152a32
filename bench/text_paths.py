"""What the rapidocr engine reads on the old (Pillow) and the new (libjpeg-turbo) preparation path, listed.

The test ``tests/integration/test_prep_text_unchanged.py`` asserts the rule (the same text, or the fast path
closer to the ground truth); this prints what lies behind it, so a change of the fast path shows exactly what
it changed: for every test document, as-is and as a 4×-upscaled q92 JPEG prepared at ``max_pixels=1_000_000``
(the DCT-scaled decode and bilinear downscale a 12-MP scan takes), and for ``--scans`` of the benchmark's
4000×3000 scans at the default grid, the raw lines read on both paths, and where they differ the lines that
differ and each path's character error rate against the document's ``.txt`` (when it has one).

Same engine and settings as the emulator's rapidocr engine (``Det.limit_side_len`` 1280). Texts are compared
raw and normalised as the accuracy test does (NFKC, whitespace removed).
Last line: ``identical_raw=…/… identical_norm=…/… fast_closer=… pillow_closer=… cer_fast=… cer_pillow=…``.
Usage: python bench/text_paths.py [--scans 2] [--images-dir DIR]
"""

from __future__ import annotations

import argparse
import difflib
import io
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from airflow_provider_qwenocr.ocr import jpeg_fast
from airflow_provider_qwenocr.ocr.images import decode_data_url, prepare_image
from airflow_provider_qwenocr.ocr.models import get_model
from bench.fullres import write_scans
from tests.integration.test_emulator_accuracy import edit_distance, norm
from tests.integration.test_prep_text_unchanged import DOCS, PARAMS, _upscaled_jpeg

SPEC = get_model("qwen-vl-ocr")


def read_lines(ocr, prep) -> list[str]:
    import numpy as np
    from PIL import Image

    img = Image.open(io.BytesIO(decode_data_url(prep.data_url)[1])).convert("RGB")
    out = ocr(np.asarray(img))
    return [] if out is None or out.txts is None else [str(t) for t in out.txts]


def both(data: bytes, **kw):
    fast = prepare_image(data, SPEC, **kw)
    saved, jpeg_fast.simplejpeg = jpeg_fast.simplejpeg, None
    try:
        ref = prepare_image(data, SPEC, **kw)
    finally:
        jpeg_fast.simplejpeg = saved
    return fast, ref


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scans", type=int, default=2, help="benchmark 12-MP scans to compare as well")
    ap.add_argument("--images-dir", default=None)
    args = ap.parse_args()
    if not jpeg_fast.available():
        raise SystemExit("the fast path is not installed: pip install 'airflow-provider-qwenocr[fast]'")
    import rapidocr

    ocr = rapidocr.RapidOCR(params=PARAMS)
    cases = []
    for path in DOCS:
        truth = path.with_suffix(".txt")
        t = truth.read_text(encoding="utf-8") if truth.exists() else None
        cases.append((path.name, path.read_bytes(), {}, t))
        cases.append((path.name + " (4x, q92, max_pixels 1M)", _upscaled_jpeg(path), {"max_pixels": 1_000_000}, t))
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.images_dir or os.path.join(tmp, "scans")
        if args.scans:
            write_scans(folder, args.scans)
            for name in sorted(os.listdir(folder))[: args.scans]:
                with open(os.path.join(folder, name), "rb") as fh:
                    cases.append((name + " (4000x3000)", fh.read(), {}, None))
    same_raw = same_norm = fast_closer = ref_closer = 0
    err_fast = err_ref = chars = 0
    for name, data, kw, truth in cases:
        fast, ref = both(data, **kw)
        lf, lr = read_lines(ocr, fast), read_lines(ocr, ref)
        nf, nr = norm("\n".join(lf)), norm("\n".join(lr))
        same_raw += lf == lr
        same_norm += nf == nr
        verdict = "identical" if lf == lr else "same after NFKC/whitespace" if nf == nr else "DIFFERENT"
        if truth is not None:
            t = norm(truth)
            ef, er = edit_distance(t, nf), edit_distance(t, nr)
            err_fast, err_ref, chars = err_fast + ef, err_ref + er, chars + len(t)
            fast_closer += ef < er
            ref_closer += er < ef
            verdict += f"; CER fast {ef / max(1, len(t)):.3f} pillow {er / max(1, len(t)):.3f}"
        print(f"{name}: {fast.mime} {fast.sent_width}x{fast.sent_height}: {verdict}")
        if lf != lr:
            for line in difflib.unified_diff(lr, lf, "pillow", "fast", n=0, lineterm=""):
                if not line.startswith(("---", "+++", "@@")):
                    print("    " + line)
    n = len(cases)
    print(f"identical_raw={same_raw}/{n} identical_norm={same_norm}/{n} fast_closer={fast_closer} "
          f"pillow_closer={ref_closer} cer_fast={err_fast / max(1, chars):.4f} cer_pillow={err_ref / max(1, chars):.4f}")


if __name__ == "__main__":
    main()
