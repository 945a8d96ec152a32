"""Peak memory of one OCR task: 1,000 images vs 100 images through QwenOcrOperator.

Each size runs in a fresh Python process (so peaks do not mix): the operator OCRs a folder of distinct
1.2-MP JPEG scans against the emulator (``echo`` engine, own process, not counted) with
``max_concurrency=8``, writing the results file and the per-image cache as usual. The process reports
its peak RSS and its RSS after imports, before the task ran (``VmHWM`` via bench/rss.py — not ``ru_maxrss``,
which also holds the peak of the process that started the child).

Prints ``rss_ratio`` (peak at 1,000 ÷ peak at 100; streaming means ≈ 1) plus the peaks and the growth
over the post-import baseline. Usage: python bench/memory.py [--small 100] [--large 1000]

``--hostile`` runs the hostile set of issue 9 instead, through the same operator path: 4 RGBA PNGs of
13000×13000 px (~0.7 MB each on disk, 676 MB each decoded) at ``max_concurrency=4``, then a PDF with one
200×200-inch page, each in a fresh process; prints the peak RSS of each (goal ≤ 1.5 GB). The PNGs are
written row by row (zlib stream), so making them costs no memory either.
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile
import zlib

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench._common import REPO, EmulatorProcess, machine

_CHILD = r"""
import json, sys
from bench.rss import peak_rss_kb
from airflow_provider_qwenocr.operators.ocr import QwenOcrOperator
import dashscope, PIL.Image  # noqa: F401  (count the libraries in the baseline)
base = peak_rss_kb()
concurrency = int(sys.argv[4]) if len(sys.argv) > 4 else 8
out = QwenOcrOperator(task_id="ocr", images=sys.argv[1], output_uri=sys.argv[2], cache_uri=sys.argv[3],
                      max_concurrency=concurrency, max_failed_ratio=1.0).execute({})
peak = peak_rss_kb()
print(json.dumps({"baseline_kb": base, "peak_kb": peak, "n_ok": out["n_ok"], "n_images": out["n_images"],
                  "failed": out["failed"]}))
"""


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def write_hostile_png(path: str, side: int = 13000, seed: int = 0) -> None:
    """An RGBA PNG ``side``×``side``: white, with black text-like bars whose layout depends on ``seed``
    (so each file hashes differently), streamed row by row — never a full image in memory."""
    white = b"\xff\xff\xff\xff"
    comp = zlib.compressobj(6)
    with open(path, "wb") as fh:
        fh.write(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 6, 0, 0, 0)))
        blank = b"\x00" + white * side
        for y in range(side):
            band = (y // 40) % 7 == (seed % 7) and (y % 40) < 24
            if band:
                x0 = 200 + 37 * seed
                row = bytearray(white * side)
                for x in range(x0, side - 200, 300):
                    row[4 * x: 4 * (x + 180)] = b"\x00\x00\x00\xff" * 180
                data = b"\x00" + bytes(row)
            else:
                data = blank
            out = comp.compress(data)
            if out:
                fh.write(_chunk(b"IDAT", out))
        fh.write(_chunk(b"IDAT", comp.flush()) + _chunk(b"IEND", b""))


def write_huge_page_pdf(path: str, inches: float = 200.0) -> None:
    """A PDF with one blank ``inches``×``inches`` page (a few hundred bytes)."""
    import pypdfium2 as pdfium

    doc = pdfium.PdfDocument.new()
    doc.new_page(inches * 72, inches * 72).close()  # the page before its document (pypdfium2 4.0)
    with open(path, "wb") as fh:
        doc.save(fh)
    doc.close()


def hostile(workdir: str) -> list[tuple[str, dict]]:
    pngs = os.path.join(workdir, "pngs")
    os.makedirs(pngs)
    for i in range(4):
        write_hostile_png(os.path.join(pngs, f"huge_{i}.png"), seed=i)
    pdf_dir = os.path.join(workdir, "pdf")
    os.makedirs(pdf_dir)
    write_huge_page_pdf(os.path.join(pdf_dir, "huge_page.pdf"))
    sizes = [os.path.getsize(os.path.join(pngs, n)) for n in sorted(os.listdir(pngs))]
    print("hostile PNG sizes on disk: " + ", ".join(f"{s / 1e6:.2f} MB" for s in sizes))
    results = []
    with EmulatorProcess("--engine", "echo") as emu:
        for label, folder in (("4 RGBA PNGs 13000x13000, concurrency 4", pngs),
                              ("PDF with one 200x200-inch page", pdf_dir)):
            r = run_child(emu.base_url, folder, os.path.join(workdir, "run_" + os.path.basename(folder)),
                          concurrency=4)
            results.append((label, r))
    return results


def make_images(folder: str, n: int) -> None:
    import io

    from PIL import Image, ImageDraw

    os.makedirs(folder, exist_ok=True)
    base = Image.effect_noise((640, 480), 20).resize((1280, 960)).convert("RGB")
    for i in range(n):
        img = base.copy()
        d = ImageDraw.Draw(img)
        for row in range(12):
            d.text((40, 40 + row * 70), f"page {i} line {row}: total {i * 7.31 + row:.2f} CNY", fill=(0, 0, 0))
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=90)
        with open(os.path.join(folder, f"scan_{i:05d}.jpg"), "wb") as fh:
            fh.write(buf.getvalue())


def run_child(base_url: str, folder: str, work: str, concurrency: int = 8) -> dict:
    env = {
        **os.environ,
        "AIRFLOW_HOME": os.path.join(work, "airflow"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW_CONN_DASHSCOPE_DEFAULT": json.dumps({
            "conn_type": "dashscope", "password": "sk-bench-memory", "host": base_url,
            "extra": {"rpm": 1_000_000, "tpm": 1_000_000_000}}),
    }
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, folder, os.path.join(work, "results.jsonl"), os.path.join(work, "cache"),
         str(concurrency)],
        env=env, cwd=REPO, capture_output=True, text=True, check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--small", type=int, default=100)
    ap.add_argument("--large", type=int, default=1000)
    ap.add_argument("--hostile", action="store_true", help="the hostile set of issue 9 instead")
    args = ap.parse_args()
    if args.hostile:
        with tempfile.TemporaryDirectory(prefix="qwenocr-bench-hostile-") as tmp:
            for label, r in hostile(tmp):
                print(f"{label}: {r['n_ok']}/{r['n_images']} ok, baseline {r['baseline_kb'] / 1024:.0f} MB, "
                      f"peak_rss_mb={r['peak_kb'] / 1024:.0f} failed={r['failed']}")
        print(f"machine: {machine()}")
        return
    with tempfile.TemporaryDirectory(prefix="qwenocr-bench-mem-") as tmp:
        images = os.path.join(tmp, "images")
        make_images(images, args.large)
        small_dir = os.path.join(tmp, "small")
        os.makedirs(small_dir)
        for name in sorted(os.listdir(images))[: args.small]:
            os.symlink(os.path.join(images, name), os.path.join(small_dir, name))
        with EmulatorProcess("--engine", "echo") as emu:
            small = run_child(emu.base_url, small_dir, os.path.join(tmp, "run_small"))
            large = run_child(emu.base_url, images, os.path.join(tmp, "run_large"))
    for label, r in (("small", small), ("large", large)):
        assert r["n_ok"] == r["n_images"], r
        print(f"{label}: {r['n_images']} images, baseline {r['baseline_kb'] / 1024:.0f} MB, "
              f"peak {r['peak_kb'] / 1024:.0f} MB")
    print(f"machine: {machine()}")
    ratio = large["peak_kb"] / small["peak_kb"]
    growth_small = (small["peak_kb"] - small["baseline_kb"]) / 1024
    growth_large = (large["peak_kb"] - large["baseline_kb"]) / 1024
    print(f"rss_ratio={ratio:.2f} rss_small_mb={small['peak_kb'] / 1024:.0f} rss_large_mb={large['peak_kb'] / 1024:.0f} "
          f"growth_small_mb={growth_small:.0f} growth_large_mb={growth_large:.0f}")


if __name__ == "__main__":
    main()
