"""The fast path from a JPEG to the model's grid: libjpeg-turbo decode, OpenCV resize, libjpeg-turbo encode.

Why this shape (measured on 12-MP 4000×3000 q92 scans, one core, ``bench/prep.py --candidates``):

* Decode with libjpeg-turbo through ``simplejpeg`` (its wheels bundle the library; PyTurboJPEG's do not),
  asking for a **power-of-two** DCT scale only. libjpeg-turbo can scale by any M/8 while decoding, but only
  the 8/8, 4/8, 2/8 and 1/8 inverse DCTs are SIMD: a 7/8 decode took 59 ms, the full 8/8 decode 30 ms. So
  the decoder scales by the largest power of two that keeps both sides ≥ the grid, and the resize does the
  rest (a factor in (0.5, 1], or a small upscale).
* Resize with OpenCV's bilinear filter: for a factor ≥ 0.5 every source pixel still contributes, and it
  took 10 ms against Pillow's BOX 49–54 ms for 12 MP → 8.3 MP. Factors below 0.5 (tiny grids) use area
  averaging. Upscales (images below ``min_pixels``: small, cheap) stay on the Pillow path: OpenCV's bicubic
  is sharper than Pillow's and rapidocr read one extra ':' on a test invoice with it.
* Encode with libjpeg-turbo (``simplejpeg``), 4:2:0 like Pillow's default at quality 85.
* Decode into and resize into **reused buffers**: a fresh 36 MB array per page cost ~10 ms of page faults
  (system time) per 12-MP page. At most one page per CPU is in these stages at once (the codecs release
  the GIL, so more would only thrash the caches); each slot keeps its two buffers, so the memory is
  bounded by the CPU count (~60 MB per slot for 12-MP pages), not by the number of threads.
* Run OpenCV's resize on the calling thread (``cv2.setNumThreads(1)``, set once, at the first page): pages are
  already prepared one per CPU in parallel, and OpenCV's own worker threads on top only added hand-offs —
  interleaved A/B in one process, 4 scans × 8 rounds: 70.7 vs 74.8 ms of CPU per 12-MP page.

Anything unusual — CMYK/YCCK, a missing wheel, a corrupt stream, a line-art page that should go as PNG —
returns ``None`` and :func:`airflow_provider_qwenocr.ocr.images.prepare_image` takes its Pillow path, which
stays the reference behaviour. Install the codecs with the ``fast`` extra.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable
from contextlib import contextmanager

try:  # optional: the `fast` extra
    import cv2
    import numpy as np
    import simplejpeg
except ImportError:  # pragma: no cover - exercised by the fallback test via monkeypatch
    cv2 = np = simplejpeg = None

_ORIENTATION = 0x0112
_DCT_SCALES = (1, 2, 4, 8)  # M of M/8 with a SIMD inverse DCT in libjpeg-turbo, smallest first
_MAX_POOLED_BYTES = 160 * 1024 * 1024  # a bigger buffer (a > ~50-MP page) is used once and freed
_CPUS = max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))
_slots = threading.BoundedSemaphore(_CPUS)
_free: list[dict] = []  # one {"decode": array, "grid": array} per idle slot
_free_lock = threading.Lock()
_cv2_threads_set = False


def available() -> bool:
    """True when simplejpeg, OpenCV and numpy import (the ``fast`` extra is installed)."""
    return simplejpeg is not None


def dct_scale(raw_w: int, raw_h: int, need_w: int, need_h: int) -> int:
    """M of the M/8 decode scale: the smallest power of two whose decoded size still covers ``need``."""
    for m in _DCT_SCALES:
        if math.ceil(raw_w * m / 8) >= need_w and math.ceil(raw_h * m / 8) >= need_h:
            return m
    return 8


def _orient(arr, orientation: int):
    """Apply an EXIF orientation as :func:`PIL.ImageOps.exif_transpose` does (cheap: the grid-sized array)."""
    if orientation == 2:
        return cv2.flip(arr, 1)
    if orientation == 3:
        return cv2.rotate(arr, cv2.ROTATE_180)
    if orientation == 4:
        return cv2.flip(arr, 0)
    if orientation == 5:
        return cv2.transpose(arr)
    if orientation == 6:
        return cv2.rotate(arr, cv2.ROTATE_90_CLOCKWISE)
    if orientation == 7:
        return cv2.rotate(cv2.transpose(arr), cv2.ROTATE_180)
    if orientation == 8:
        return cv2.rotate(arr, cv2.ROTATE_90_COUNTERCLOCKWISE)
    return arr


@contextmanager
def _buffers():
    """A slot (at most one per CPU at once) with its reusable buffers."""
    global _cv2_threads_set
    if not _cv2_threads_set:  # process-wide; done here, not at import, so merely importing us changes nothing
        cv2.setNumThreads(1)
        _cv2_threads_set = True
    with _slots:
        with _free_lock:
            bufs = _free.pop() if _free else {}
        try:
            yield bufs
        finally:
            with _free_lock:
                _free.append(bufs)


def _buffer(bufs: dict, name: str, nbytes: int):
    buf = bufs.get(name)
    if buf is None or buf.size < nbytes:
        buf = np.empty(nbytes, np.uint8)
        if nbytes <= _MAX_POOLED_BYTES:
            bufs[name] = buf
    return buf


def _resize(arr, w: int, h: int, bufs: dict):
    src_h, src_w = arr.shape[:2]
    if (src_w, src_h) == (w, h):
        return arr
    if w * 2 >= src_w and h * 2 >= src_h:
        interp = cv2.INTER_LINEAR
    else:
        interp = cv2.INTER_AREA
    shape = (h, w) + arr.shape[2:]
    dst = _buffer(bufs, "grid", math.prod(shape))[: math.prod(shape)].reshape(shape)
    return cv2.resize(arr, (w, h), dst=dst, interpolation=interp)


def to_grid(
    data: bytes,
    header,
    grid: tuple[int, int],
    quality: int,
    *,
    is_line_art: Callable | None = None,
) -> bytes | None:
    """JPEG bytes of ``data`` at ``grid`` (w, h, after EXIF orientation), or None when Pillow must do it.

    ``header`` is the lazily opened :class:`PIL.Image.Image` (format, mode, size and EXIF are read from its
    header; nothing is decoded twice). ``is_line_art`` is the Pillow path's own probe: it is shown a small
    sampled copy of the grid image (:func:`looks_like_line_art`), and a True answer sends the page back to the
    Pillow path (PNG).
    """
    if simplejpeg is None or header.format not in ("JPEG", "MPO") or header.mode not in ("RGB", "L"):
        return None
    try:
        orientation = int(header.getexif().get(_ORIENTATION, 1))
    except Exception:
        orientation = 1
    tw, th = grid
    need_w, need_h = (th, tw) if orientation in (5, 6, 7, 8) else (tw, th)  # grid in the stored orientation
    raw_w, raw_h = header.size
    if need_w * need_h > raw_w * raw_h:
        return None  # an upscale: small images, Pillow's bicubic stays the reference
    m = dct_scale(raw_w, raw_h, need_w, need_h)
    colorspace = "GRAY" if header.mode == "L" else "RGB"
    dec_h, dec_w = math.ceil(raw_h * m / 8), math.ceil(raw_w * m / 8)
    with _buffers() as bufs:
        try:
            arr = simplejpeg.decode_jpeg(data, colorspace, fastdct=True, fastupsample=True, min_height=dec_h,
                                         min_width=dec_w, buffer=_buffer(bufs, "decode", dec_h * dec_w * 3))
        except ValueError:
            return None  # truncated or odd stream: let Pillow decide (it is more lenient) or raise the error row
        out = _orient(_resize(arr, need_w, need_h, bufs), orientation)
        if out.ndim == 3 and out.shape[2] == 1:
            out = out[:, :, 0]
        if is_line_art is not None and looks_like_line_art(out, is_line_art):
            return None
        if out.ndim == 2:
            return simplejpeg.encode_jpeg(np.ascontiguousarray(out)[:, :, None], quality, "GRAY")
        return simplejpeg.encode_jpeg(np.ascontiguousarray(out), quality, "RGB", "420")


def looks_like_line_art(out, is_line_art: Callable) -> bool:
    """``is_line_art`` (the Pillow path's probe) asked about a ~256-px copy of the grid image.

    Why sampled, not box-averaged over the whole grid: averaging all 8.3 MP of a 12-MP page's grid cost
    5.7 ms (≈ 9 % of the page's CPU) for a 256×192 picture. Sampling a 2×-probe-sized grid of pixels
    (nearest) and averaging those 2×2 took 0.7 ms, and gave the same verdict as the full average on all
    60 variants of the test documents (as-is and 4× upscaled, JPEG q92 and q75) and the 20 benchmark
    scans (bench/page_cpu.py). Sampling keeps more noise than averaging, so if anything a noisy scan is
    judged "photo" (JPEG) more readily, never line art more readily.
    """
    from PIL import Image

    th, tw = out.shape[:2]
    k = max(1, max(tw, th) // 256)
    pw, ph = max(1, tw // k), max(1, th // k)
    sample = cv2.resize(out, (min(tw, 2 * pw), min(th, 2 * ph)), interpolation=cv2.INTER_NEAREST)
    probe = cv2.resize(sample, (pw, ph), interpolation=cv2.INTER_AREA)
    return bool(is_line_art(Image.fromarray(probe)))
