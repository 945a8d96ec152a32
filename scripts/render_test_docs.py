"""Render the small zh+en test documents under tests/data/docs/ (PNG + ground-truth .txt per document).

Why committed renders: the font (WenQuanYi Zen Hei, Debian ``fonts-wqy-zenhei``) is on this machine but
not on a user's; tests read the PNGs and .txt files and need no font. Re-run after changing a document:

    python scripts/render_test_docs.py [--font /usr/share/fonts/truetype/wqy/wqy-zenhei.ttc] [--out tests/data/docs]

Three documents also get a ``*_hard.jpg`` copy (60 % scale, 1.5° skew, salt noise, JPEG q55) with the same
ground truth, so the accuracy figure is not only about pristine renders. Each document is a list of rows; a row is a list of (x, text) cells drawn on one baseline. The .txt holds
one line per row, cells joined by a single space — the emulator's reading-order rule.
"""

from __future__ import annotations

import argparse
import pathlib

from PIL import Image, ImageDraw, ImageFont

FONT = "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc"
ROOT = pathlib.Path(__file__).resolve().parents[1]

DOCS: dict[str, dict] = {
    "invoice_zh_en": {
        "size": (760, 420),
        "rows": [
            [(30, "INVOICE 发票")],
            [(30, "发票代码: 221021325353")],
            [(30, "发票号码: 10283819")],
            [(30, "乘车日期: 2013-06-29")],
            [(30, "Customer: Hangzhou Tech Co., Ltd.")],
            [(30, "Total Amount: 1,234.56 USD")],
            [(30, "金额合计: 壹仟贰佰叁拾肆元")],
        ],
    },
    "table_zh_en": {
        "size": (760, 330),
        "grid": True,
        "rows": [
            [(30, "Item"), (300, "数量"), (520, "Price")],
            [(30, "Apple 苹果"), (300, "12"), (520, "3.50")],
            [(30, "Banana 香蕉"), (300, "7"), (520, "1.20")],
            [(30, "Cherry 樱桃"), (300, "30"), (520, "8.00")],
        ],
    },
    "paragraph_en": {
        "size": (800, 360),
        "rows": [
            [(30, "Quarterly Report")],
            [(30, "Revenue grew by 12 percent compared")],
            [(30, "with the same quarter of last year.")],
            [(30, "Operating costs stayed flat at 4.2 million.")],
            [(30, "The board approved a new warehouse in Ningbo.")],
        ],
    },
    "paragraph_zh": {
        "size": (760, 330),
        "rows": [
            [(30, "产品介绍")],
            [(30, "本品采用韩国进口纤维制造，不缩水、不变形。")],
            [(30, "使用前请将表面污渍擦洗干净。")],
            [(30, "货号：2023061299 保质期三年")],
        ],
    },
    "mixed_notice": {
        "size": (800, 330),
        "rows": [
            [(30, "Notice 通知")],
            [(30, "会议时间: 2025-03-05 14:00")],
            [(30, "Location: Room 302, Building B")],
            [(30, "请准时参加 Please be on time.")],
        ],
    },
}


def render(name: str, doc: dict, font_path: str, out: pathlib.Path, size_px: int = 30) -> None:
    font = ImageFont.truetype(font_path, size_px)
    w, h = doc["size"]
    img = Image.new("RGB", (w, h), "white")
    draw = ImageDraw.Draw(img)
    line_h = int(size_px * 1.9)
    lines = []
    for r, row in enumerate(doc["rows"]):
        y = 24 + r * line_h
        for x, text in row:
            draw.text((x, y), text, font=font, fill=(20, 20, 20))
        lines.append(" ".join(text for _, text in row))
        if doc.get("grid"):
            draw.line([(15, y - 10), (w - 15, y - 10)], fill=(120, 120, 120), width=2)
    if doc.get("grid"):
        bottom = 24 + len(doc["rows"]) * line_h - 10
        draw.line([(15, bottom), (w - 15, bottom)], fill=(120, 120, 120), width=2)
    img.save(out / f"{name}.png", optimize=True)
    (out / f"{name}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


HARD = ("invoice_zh_en", "paragraph_zh", "mixed_notice")


def render_hard(name: str, out: pathlib.Path, seed: int = 1234) -> None:
    """A scanned-looking copy: 60 % scale, rotated 1.5°, salt-and-pepper noise, JPEG quality 55."""
    import random

    rng = random.Random(seed)
    img = Image.open(out / f"{name}.png").convert("RGB")
    img = img.resize((int(img.width * 0.6), int(img.height * 0.6)), Image.Resampling.LANCZOS)
    img = img.rotate(1.5, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=(255, 255, 255))
    px = img.load()
    for _ in range(img.width * img.height // 150):
        x, y = rng.randrange(img.width), rng.randrange(img.height)
        px[x, y] = (0, 0, 0) if rng.random() < 0.5 else (255, 255, 255)
    img.save(out / f"{name}_hard.jpg", quality=55)
    (out / f"{name}_hard.txt").write_text((out / f"{name}.txt").read_text(encoding="utf-8"), encoding="utf-8")


def render_red(out: pathlib.Path) -> None:
    """The DataInspectionFailed trigger: mean colour within the emulator's tolerance of pure red."""
    img = Image.new("RGB", (240, 160), (255, 0, 0))
    ImageDraw.Draw(img).rectangle([10, 10, 30, 20], fill=(250, 10, 10))
    img.save(out / "inspection_red.png")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--font", default=FONT)
    ap.add_argument("--out", default=str(ROOT / "tests" / "data" / "docs"))
    args = ap.parse_args()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, doc in DOCS.items():
        render(name, doc, args.font, out)
    for name in HARD:
        render_hard(name, out)
    render_red(out)
    print(f"rendered {len(DOCS)} documents, {len(HARD)} hard copies + inspection_red.png into {out}")


if __name__ == "__main__":
    main()
