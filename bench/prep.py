"""Image preparation speed: our decode-to-grid path vs the naive Pillow path, on 12-MP JPEG scans.

naive:  open → convert("RGB") → resize(LANCZOS) to the service's grid → PNG → base64
ours:   airflow_provider_qwenocr.ocr.images.prepare_image (JPEG draft decode, EXIF, resize with reducing_gap,
        JPEG for photos/scans, base64 data URL)

Both land on the same smart_resize grid, so the tokens billed are identical (``tokens_equal``). Prints
``prep_speedup`` (naive time ÷ ours), ``bytes_ratio`` (uploaded bytes ÷ the original file) and
``tokens_equal``. Times are CPU time of this process (wall time printed too). Usage: python bench/prep.py [--images 3] [--repeat 3] [--max-pixels N]
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

from airflow_provider_qwenocr.ocr.images import image_tokens, pixel_bounds, prepare_image, smart_resize
from airflow_provider_qwenocr.ocr.models import get_model
from bench._common import machine, scan_jpeg


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
    args = ap.parse_args()
    spec = get_model(args.model)
    lo, hi = pixel_bounds(spec, None, args.max_pixels)
    scans = [scan_jpeg(seed=i) for i in range(args.images)]
    t_naive, t_ours, w_naive, w_ours, ratios, equal = [], [], [], [], [], True
    for data in scans:
        w, h = Image.open(io.BytesIO(data)).size
        billed = image_tokens(h, w, spec.patch, lo, hi)  # what the service bills for the original
        for _ in range(args.repeat):
            w0, t0 = time.perf_counter(), time.process_time()
            _, naive_tokens, _ = naive(data, spec, lo, hi)
            t_naive.append(time.process_time() - t0)
            w_naive.append(time.perf_counter() - w0)
            w0, t0 = time.perf_counter(), time.process_time()
            prep = prepare_image(data, spec, max_pixels=args.max_pixels)
            t_ours.append(time.process_time() - t0)
            w_ours.append(time.perf_counter() - w0)
            equal &= prep.tokens == naive_tokens == billed
            ratios.append(prep.nbytes / len(data))
        naive_bytes = naive(data, spec, lo, hi)[0]
        print(f"scan {w}x{h} {len(data) / 1e6:.2f} MB → grid {prep.sent_width}x{prep.sent_height} "
              f"({prep.tokens} tokens): naive PNG {naive_bytes / 1e6:.2f} MB ({naive_bytes / len(data):.2f}x), "
              f"ours {prep.mime} {prep.nbytes / 1e6:.2f} MB ({prep.nbytes / len(data):.2f}x)")
    # CPU time of this (single-threaded) work is the figure of merit: the wall clock on a shared machine
    # mostly measures the neighbours. Both are printed.
    naive_ms, ours_ms = statistics.median(t_naive) * 1000, statistics.median(t_ours) * 1000
    wall_naive, wall_ours = statistics.median(w_naive) * 1000, statistics.median(w_ours) * 1000
    print(f"machine: {machine()}, load {os.getloadavg()[0]:.1f}; median CPU naive {naive_ms:.0f} ms, "
          f"ours {ours_ms:.0f} ms; wall naive {wall_naive:.0f} ms, ours {wall_ours:.0f} ms per image")
    print(f"prep_speedup={naive_ms / ours_ms:.1f} bytes_ratio={statistics.median(ratios):.2f} "
          f"tokens_equal={'true' if equal else 'false'} naive_ms={naive_ms:.0f} ours_ms={ours_ms:.0f} "
          f"wall_speedup={wall_naive / wall_ours:.1f}")


if __name__ == "__main__":
    main()
