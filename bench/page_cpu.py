"""Worker CPU per 12-MP page, stage by stage, on the JPEG fast path (``prepare_image`` with the ``fast`` extra).

Why: issue 11 asks for ≤ 60 ms of worker CPU per page; this splits ``prepare_image`` into the calls it makes
(the same functions with the same arguments, one after another) so each cut is measured where it lands, and
times ``prepare_image`` itself on the same pages as the ground truth (``total`` vs ``sum``).

N distinct 4000×3000 colour scans (bench/_common.scan_jpeg, cached under ``--images-dir``) are read into
memory first; every figure is ``time.process_time`` (this process's CPU: user + system) per page, median over
the N pages after one warm-up page. ``uptime`` load is printed beside the result.
Usage: python bench/page_cpu.py [--n 20] [--images-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from airflow_provider_qwenocr.ocr import grid, images, jpeg_fast
from airflow_provider_qwenocr.ocr.models import get_model
from bench.fullres import write_scans


def stages(data: bytes, spec) -> dict[str, float]:
    """CPU seconds of each stage of the fast path for one page, in the order prepare_image runs them."""
    t: dict[str, float] = {}
    c = time.process_time()
    sha = images.sha256_hex(data)
    t["sha256"] = time.process_time() - c
    c = time.process_time()
    lo, hi = grid.pixel_bounds(spec, None, None)
    img = images.open_image(data)
    w, h = images._oriented_size(img)
    th, tw = grid.smart_resize(h, w, spec.patch, lo, hi)
    t["header"] = time.process_time() - c
    m = jpeg_fast.dct_scale(*img.size, tw, th)
    dec_w, dec_h = -(-img.size[0] * m // 8), -(-img.size[1] * m // 8)
    with jpeg_fast._buffers() as bufs:
        c = time.process_time()
        arr = jpeg_fast.simplejpeg.decode_jpeg(data, "RGB", fastdct=True, fastupsample=True, min_height=dec_h,
                                               min_width=dec_w, buffer=jpeg_fast._buffer(bufs, "decode", dec_h * dec_w * 3))
        t["decode"] = time.process_time() - c
        c = time.process_time()
        out = jpeg_fast._resize(arr, tw, th, bufs)
        t["resize"] = time.process_time() - c
        c = time.process_time()
        jpeg_fast.looks_like_line_art(out, images._looks_like_line_art)
        t["probe"] = time.process_time() - c
        c = time.process_time()
        encoded = jpeg_fast.simplejpeg.encode_jpeg(out, 85, "RGB", "420")
        t["encode"] = time.process_time() - c
    c = time.process_time()
    url = images.data_url("image/jpeg", encoded)
    t["base64"] = time.process_time() - c
    c = time.process_time()
    json.dumps({"model": spec.name, "input": {"messages": [{"role": "user", "content": [{"image": url}]}]}})
    t["json"] = time.process_time() - c
    del sha
    return t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--images-dir", default=None, help="keep the generated scans here (reused when present)")
    args = ap.parse_args()
    if not jpeg_fast.available():
        raise SystemExit("the fast path is not installed: pip install 'airflow-provider-qwenocr[fast]'")
    spec = get_model("qwen-vl-ocr")
    with tempfile.TemporaryDirectory(prefix="qwenocr-bench-cpu-") as tmp:
        folder = args.images_dir or os.path.join(tmp, "scans")
        write_scans(folder, args.n + 1)
        files = sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".jpg"))[: args.n + 1]
        pages = [open(f, "rb").read() for f in files]
    load0 = os.getloadavg()[0]
    stages(pages[0], spec)  # warm-up: imports, buffers
    images.prepare_image(pages[0], spec)
    per: dict[str, list[float]] = {}
    totals = []
    for data in pages[1:]:
        for k, v in stages(data, spec).items():
            per.setdefault(k, []).append(v)
        c = time.process_time()
        prep = images.prepare_image(data, spec)
        totals.append(time.process_time() - c)
    med = {k: statistics.median(v) * 1000 for k, v in per.items()}
    staged = sum(v for k, v in med.items() if k != "json")
    print(" ".join(f"{k}={v:.1f}" for k, v in med.items()) + " (CPU ms/page, median)")
    print(f"pages={len(pages) - 1} prepare_ms={statistics.median(totals) * 1000:.1f} sum_ms={staged:.1f} "
          f"grid={prep.sent_width}x{prep.sent_height} bytes_ratio={prep.nbytes / len(pages[-1]):.2f} "
          f"load={load0:.1f}->{os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
