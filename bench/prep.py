"""Image preparation speed: our decode-to-grid path vs the naive Pillow path, on 12-MP JPEG scans.

naive:  open → convert("RGB") → resize(LANCZOS) to the service's grid → PNG → base64
pillow: prepare_image with the fast path switched off (JPEG draft decode, EXIF, BOX resize, Pillow JPEG)
ours:   airflow_provider_qwenocr.ocr.images.prepare_image as installed, called as the runner calls it: with the
        source's sha256 (which the runner computes before any preparation, for the cache key, whatever the
        path — the naive path hashes nothing, so neither timed path does) (with the ``fast`` extra: ocr/jpeg_fast.py,
        libjpeg-turbo decode at a power-of-two DCT scale, OpenCV resize, libjpeg-turbo encode)

All land on the same smart_resize grid, so the tokens billed are identical (``tokens_equal``). Prints
``prep_speedup`` (naive time ÷ ours), ``pillow_speedup`` (the Pillow path ÷ ours), ``bytes_ratio`` (uploaded
bytes ÷ the original file) and ``tokens_equal``. ``--candidates`` first prints the per-stage table the fast
path was chosen from (decode at each M/8 scale, resize filters, encoders, pyvips if installed). Times are CPU
time of this process (wall time printed too).
Usage: python bench/prep.py [--images 3] [--repeat 3] [--max-pixels N] [--candidates]
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from PIL import Image

from airflow_provider_qwenocr.ocr import jpeg_fast
from airflow_provider_qwenocr.ocr.grid import image_tokens, pixel_bounds, smart_resize
from airflow_provider_qwenocr.ocr.images import prepare_image, sha256_hex
from airflow_provider_qwenocr.ocr.models import get_model
from bench._candidates import print_candidates
from bench._common import machine, scan_jpeg


def pillow_path(data: bytes, spec, max_pixels, sha: str):
    """prepare_image with the libjpeg-turbo path switched off: the reference (and the fallback)."""
    saved, jpeg_fast.simplejpeg = jpeg_fast.simplejpeg, None
    try:
        return prepare_image(data, spec, max_pixels=max_pixels, sha256=sha)
    finally:
        jpeg_fast.simplejpeg = saved


def naive(data: bytes, spec, lo: int, hi: int) -> tuple[int, int, int]:
    img = Image.open(io.BytesIO(data)).convert("RGB")
    h, w = smart_resize(img.height, img.width, spec.patch, lo, hi)
    img = img.resize((w, h), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, "PNG")
    b64 = base64.b64encode(buf.getvalue())
    return len(buf.getvalue()), h * w // (spec.patch**2) + 2, len(b64)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--model", default="qwen-vl-ocr")
    ap.add_argument("--max-pixels", type=int, default=None, help="default: the model's default max_pixels")
    ap.add_argument("--candidates", action="store_true", help="print the per-stage table of codec candidates")
    args = ap.parse_args()
    spec = get_model(args.model)
    lo, hi = pixel_bounds(spec, None, args.max_pixels)
    scans = [scan_jpeg(seed=i) for i in range(args.images)]
    if args.candidates:
        print_candidates(scans[0], spec, lo, hi, repeat=max(3, args.repeat))
    if not jpeg_fast.available():
        print("note: the `fast` extra (simplejpeg, opencv-python-headless) is not installed: ours = the Pillow path")
    t_naive, t_ours, w_naive, w_ours, ratios, equal = [], [], [], [], [], True
    t_pil, pil_ratios = [], []
    for data in scans:
        w, h = Image.open(io.BytesIO(data)).size
        billed = image_tokens(h, w, spec.patch, lo, hi)  # what the service bills for the original
        sha = sha256_hex(data)  # the runner's, before preparation (the cache key)
        for _ in range(args.repeat):
            w0, t0 = time.perf_counter(), time.process_time()
            _, naive_tokens, _ = naive(data, spec, lo, hi)
            t_naive.append(time.process_time() - t0)
            w_naive.append(time.perf_counter() - w0)
            w0, t0 = time.perf_counter(), time.process_time()
            prep = prepare_image(data, spec, max_pixels=args.max_pixels, sha256=sha)
            t_ours.append(time.process_time() - t0)
            w_ours.append(time.perf_counter() - w0)
            t0 = time.process_time()
            ref = pillow_path(data, spec, args.max_pixels, sha)
            t_pil.append(time.process_time() - t0)
            equal &= prep.tokens == naive_tokens == billed == ref.tokens
            equal &= (prep.sent_width, prep.sent_height) == (ref.sent_width, ref.sent_height)
            ratios.append(prep.nbytes / len(data))
            pil_ratios.append(ref.nbytes / len(data))
        naive_bytes = naive(data, spec, lo, hi)[0]
        print(f"scan {w}x{h} {len(data) / 1e6:.2f} MB → grid {prep.sent_width}x{prep.sent_height} "
              f"({prep.tokens} tokens): naive PNG {naive_bytes / 1e6:.2f} MB ({naive_bytes / len(data):.2f}x), "
              f"ours {prep.mime} {prep.nbytes / 1e6:.2f} MB ({prep.nbytes / len(data):.2f}x)")
    # CPU time of this (single-threaded) work is the figure of merit: the wall clock on a shared machine
    # mostly measures the neighbours. Both are printed.
    naive_ms, ours_ms = statistics.median(t_naive) * 1000, statistics.median(t_ours) * 1000
    pil_ms = statistics.median(t_pil) * 1000
    wall_naive, wall_ours = statistics.median(w_naive) * 1000, statistics.median(w_ours) * 1000
    print(f"machine: {machine()}, load {os.getloadavg()[0]:.1f}; median CPU naive {naive_ms:.0f} ms, "
          f"pillow path {pil_ms:.0f} ms ({statistics.median(pil_ratios):.2f}x bytes), ours {ours_ms:.0f} ms; "
          f"wall naive {wall_naive:.0f} ms, ours {wall_ours:.0f} ms per image")
    print(f"prep_speedup={naive_ms / ours_ms:.1f} pillow_speedup={pil_ms / ours_ms:.1f} "
          f"bytes_ratio={statistics.median(ratios):.2f} tokens_equal={'true' if equal else 'false'} "
          f"naive_ms={naive_ms:.0f} pillow_ms={pil_ms:.0f} ours_ms={ours_ms:.0f} "
          f"fast={'true' if jpeg_fast.available() else 'false'} wall_speedup={wall_naive / wall_ours:.1f} "
          f"load={os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
