"""Recognition engines: ``rapidocr`` (real OCR) and ``echo`` (answers without recognising anything).

Why two: rapidocr 3 (PP-OCR det+rec ONNX models shipped in the wheel) reads zh+en documents at ~0.4 s
per small page here — real enough for accuracy and end-to-end tests. Load tests need the emulator never
to be the bottleneck, so ``echo`` skips recognition — and decoding: it needs only the size read from the
image header — and returns ONE synthetic line per image: ``"echo <width>x<height> <sha256[:12]>"`` (sha256 of the image as received: of the base64 text for a data URL) with a
box around the whole image. It is deterministic per image (tests can tell images apart) and is
documented as not OCR.

The rapidocr engine is loaded once, lazily, under a lock, and calls are serialised by a second lock:
onnxruntime already uses every core for one image, so running two at once only adds contention.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from PIL import Image


@dataclass
class Line:
    """One recognised text line: its text, 4 corner points (TL, TR, BR, BL) in pixels, and a confidence."""

    text: str
    box: list[tuple[float, float]]
    score: float

    @property
    def x0(self) -> float:
        return min(p[0] for p in self.box)

    @property
    def x1(self) -> float:
        return max(p[0] for p in self.box)

    @property
    def y0(self) -> float:
        return min(p[1] for p in self.box)

    @property
    def y1(self) -> float:
        return max(p[1] for p in self.box)

    @property
    def cx(self) -> float:
        return (self.x0 + self.x1) / 2

    @property
    def cy(self) -> float:
        return (self.y0 + self.y1) / 2

    @property
    def height(self) -> float:
        return self.y1 - self.y0


# Detection on the image as-is, shrunk only when its long side exceeds 1280 px. rapidocr's default
# ("min" side to 736 px) upscales a 600x200 snippet to ~2200x736 and costs 6x the time for nothing.
RAPIDOCR_PARAMS = {"Global.log_level": "error", "Det.limit_type": "max", "Det.limit_side_len": 1280}


class RapidOcrEngine:
    name = "rapidocr"

    def __init__(self) -> None:
        self._load_lock = threading.Lock()
        self._run_lock = threading.Lock()
        self._ocr = None

    def _engine(self):
        if self._ocr is None:
            with self._load_lock:
                if self._ocr is None:
                    try:
                        from rapidocr import RapidOCR
                    except ImportError as exc:  # pragma: no cover - depends on the install
                        raise RuntimeError(
                            "the rapidocr engine needs rapidocr and onnxruntime: "
                            "pip install qwenocr-emulator (or use --engine echo)"
                        ) from exc
                    self._ocr = RapidOCR(params=RAPIDOCR_PARAMS)
        return self._ocr

    def warm_up(self) -> None:
        """Load the models and run one tiny image, so the first real request is not 4 s slower."""
        img = Image.new("RGB", (64, 32), "white")
        self.recognize(img)

    def recognize(self, img: Image.Image) -> list[Line]:
        import numpy as np

        engine = self._engine()
        with self._run_lock:
            out = engine(np.asarray(img.convert("RGB")))
        if out is None or out.boxes is None or out.txts is None:
            return []
        lines = []
        for box, text, score in zip(out.boxes, out.txts, out.scores, strict=False):
            pts = [(float(x), float(y)) for x, y in box]
            lines.append(Line(text=str(text), box=pts, score=float(score)))
        return lines


class EchoEngine:
    name = "echo"

    def warm_up(self) -> None:
        pass

    def recognize(self, size: tuple[int, int], digest: str) -> list[Line]:
        """One line naming the image: ``size`` = (w, h) from the header, ``digest`` = its sha256 as received."""
        w, h = size
        digest = digest[:12]
        box = [(0.0, 0.0), (float(w - 1), 0.0), (float(w - 1), float(h - 1)), (0.0, float(h - 1))]
        return [Line(text=f"echo {w}x{h} {digest}", box=box, score=1.0)]


def make_engine(name: str):
    if name == "rapidocr":
        return RapidOcrEngine()
    if name == "echo":
        return EchoEngine()
    raise ValueError(f"unknown engine {name!r}")
