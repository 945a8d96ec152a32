"""The per-stage table the JPEG fast path (ocr/jpeg_fast.py) was chosen from: ``bench/prep.py --candidates``.

Each row is the median CPU time (this process, all threads) of one stage on one 12-MP scan, so the choice
is by measurement: which decode scale, which resize filter, which encoder. Candidates whose wheel is not
installed are printed as missing (PyTurboJPEG needs a system libturbojpeg, which no wheel bundles).
"""

from __future__ import annotations

import io
import math
import statistics
import time


def _cpu_ms(fn, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t0 = time.process_time()
        out = fn()
        times.append(time.process_time() - t0)
    return statistics.median(times) * 1000, out


def print_candidates(data: bytes, spec, lo: int, hi: int, *, repeat: int = 3) -> None:
    from PIL import Image

    from airflow_provider_qwenocr.ocr.grid import smart_resize

    rows: list[tuple[str, str]] = []
    src = Image.open(io.BytesIO(data))
    w, h = src.size
    th, tw = smart_resize(h, w, spec.patch, lo, hi)
    print(f"candidates on one {w}x{h} scan ({len(data) / 1e6:.2f} MB) → grid {tw}x{th}, median CPU of {repeat}:")

    def pil_full():
        im = Image.open(io.BytesIO(data))
        im.load()
        return im

    ms, full_pil = _cpu_ms(pil_full, repeat)
    rows.append(("decode Pillow (libjpeg-turbo) 8/8", f"{ms:.1f}"))
    ms, _ = _cpu_ms(lambda: full_pil.resize((tw, th), Image.Resampling.BOX, reducing_gap=2.0), repeat)
    rows.append(("resize Pillow BOX 12 MP → grid", f"{ms:.1f}"))
    ms, _ = _cpu_ms(lambda: full_pil.resize((tw, th), Image.Resampling.BILINEAR), repeat)
    rows.append(("resize Pillow BILINEAR 12 MP → grid", f"{ms:.1f}"))
    small = full_pil.resize((tw, th), Image.Resampling.BOX)

    def pil_encode():
        buf = io.BytesIO()
        small.save(buf, "JPEG", quality=85)
        return buf

    ms, _ = _cpu_ms(pil_encode, repeat)
    rows.append(("encode Pillow JPEG q85", f"{ms:.1f}"))
    try:
        import simplejpeg
    except ImportError:
        rows.append(("simplejpeg", "missing"))
        simplejpeg = None
    full = None
    if simplejpeg is not None:
        for m in (8, 7, 6, 5, 4, 2, 1):
            ms, arr = _cpu_ms(lambda m=m: simplejpeg.decode_jpeg(
                data, "RGB", fastdct=True, fastupsample=True,
                min_height=math.ceil(h * m / 8), min_width=math.ceil(w * m / 8)), repeat)
            rows.append((f"decode simplejpeg {m}/8 → {arr.shape[1]}x{arr.shape[0]}", f"{ms:.1f}"))
            if m == 8:
                full = arr
        ms, _ = _cpu_ms(lambda: simplejpeg.decode_jpeg(data, "RGB"), repeat)
        rows.append(("decode simplejpeg 8/8, accurate DCT + fancy upsampling", f"{ms:.1f}"))
        import numpy as np

        grid = np.asarray(small)
        ms, _ = _cpu_ms(lambda: simplejpeg.encode_jpeg(grid, 85, "RGB", "420"), repeat)
        rows.append(("encode simplejpeg q85 4:2:0", f"{ms:.1f}"))
    try:
        import cv2
    except ImportError:
        rows.append(("opencv", "missing"))
        cv2 = None
    if cv2 is not None and full is not None:
        for name, interp in (("LINEAR", cv2.INTER_LINEAR), ("AREA", cv2.INTER_AREA), ("CUBIC", cv2.INTER_CUBIC)):
            ms, _ = _cpu_ms(lambda interp=interp: cv2.resize(full, (tw, th), interpolation=interp), repeat)
            rows.append((f"resize OpenCV {name} 12 MP → grid", f"{ms:.1f}"))
    try:
        import pyvips

        pyvips.cache_set_max(0)
        ms, _ = _cpu_ms(lambda: pyvips.Image.thumbnail_buffer(data, tw, height=th, size="force")
                        .jpegsave_buffer(Q=85), repeat)
        rows.append(("pyvips thumbnail_buffer (shrink-on-load) + jpegsave, all stages", f"{ms:.1f}"))
    except ImportError:
        rows.append(("pyvips (+ pyvips-binary)", "missing"))
    except Exception as exc:  # libvips present but broken: say so, do not hide the other rows
        rows.append(("pyvips", f"error: {exc}"))
    try:
        from turbojpeg import TurboJPEG

        TurboJPEG()
        rows.append(("PyTurboJPEG", "importable with a system libturbojpeg (not measured)"))
    except ImportError:
        rows.append(("PyTurboJPEG", "missing"))
    except Exception:
        rows.append(("PyTurboJPEG", "installed, but no libturbojpeg shared library (its wheel bundles none)"))
    width = max(len(r[0]) for r in rows)
    for name, value in rows:
        print(f"  {name:<{width}}  {value:>8} {'ms' if value[:1].isdigit() else ''}")
