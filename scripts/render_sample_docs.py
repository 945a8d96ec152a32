"""Render the small sample documents shipped in dags/sample_docs/ (run ONCE; the PNG/JPEG files are committed).

Why pre-rendered files: users and CI then need no CJK font. This script needs one
(/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc, Debian ``fonts-wqy-zenhei``) only to regenerate them.

The receipts and the train ticket print each field as ``<label>：<value>`` where ``<label>`` is exactly a
key of dags/sample_docs/receipt_schema.json, so key information extraction (the real service or the
emulator's key/value matching) can fill the typed columns. ``receipt_02`` lacks the invoice number on
purpose: that column must stay NULL in the warehouse (never invented).

    python scripts/render_sample_docs.py [--out dags/sample_docs]
"""

from __future__ import annotations

import argparse
import pathlib

from PIL import Image, ImageDraw, ImageFont

FONT = "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc"
OUT = pathlib.Path(__file__).resolve().parents[1] / "dags" / "sample_docs"


def _page(lines: list[str], *, width: int = 760, size: int = 26, title: str | None = None) -> Image.Image:
    font = ImageFont.truetype(FONT, size)
    big = ImageFont.truetype(FONT, size + 8)
    line_h = int(size * 1.7)
    height = 40 + (line_h + 14 if title else 0) + line_h * len(lines) + 30
    img = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(img)
    y = 30
    if title:
        draw.text((40, y), title, font=big, fill=0)
        y += line_h + 14
    for line in lines:
        draw.text((40, y), line, font=font, fill=0)
        y += line_h
    return img


def receipt_01() -> Image.Image:
    return _page(
        [
            "商户名称：上海云杉便利店",
            "发票号码：31245678",
            "开票日期：2026-03-14",
            "合计金额：128.50",
            "币种：CNY",
            "Thank you for shopping with us",
        ],
        title="增值税普通发票 Receipt",
    )


def receipt_02() -> Image.Image:
    # No invoice number printed: the warehouse column must come out NULL.
    return _page(
        [
            "商户名称：Golden Noodle House 金面馆",
            "开票日期：2026-04-02",
            "合计金额：86.00",
            "币种：CNY",
            "Table 7 Guests 3",
        ],
        title="餐饮小票 Restaurant Bill",
    )


def train_ticket() -> Image.Image:
    return _page(
        [
            "车次：G1234",
            "出发站：北京南 Beijingnan",
            "到达站：上海虹桥 Shanghaihongqiao",
            "乘车日期：2026-05-01",
            "座位号：05车12F号",
            "票价：553.00",
        ],
        title="火车票 Train Ticket",
    )


def table_page() -> Image.Image:
    font = ImageFont.truetype(FONT, 24)
    rows = [["品名 Item", "数量 Qty", "单价 Price"], ["苹果 Apple", "3", "4.50"],
            ["牛奶 Milk", "2", "12.00"], ["面包 Bread", "1", "8.80"]]
    col_w, row_h, x0, y0 = 220, 56, 30, 30
    img = Image.new("L", (x0 * 2 + col_w * 3, y0 * 2 + row_h * len(rows)), 255)
    draw = ImageDraw.Draw(img)
    for r, row in enumerate(rows):
        for c, cell in enumerate(row):
            box = (x0 + c * col_w, y0 + r * row_h, x0 + (c + 1) * col_w, y0 + (r + 1) * row_h)
            draw.rectangle(box, outline=0, width=2)
            draw.text((box[0] + 14, box[1] + 14), cell, font=font, fill=0)
    return img


def text_page() -> Image.Image:
    return _page(
        [
            "Quarterly operations note 季度运营说明",
            "Orders shipped on time: 97 percent",
            "按时发货率达到百分之九十七",
            "Next review meeting in June",
            "下次评审会议定于六月举行",
        ],
        title="Operations Note 运营说明",
    )


def rotated_notice() -> Image.Image:
    # A phone photo held slightly askew: 4 degrees off, JPEG-compressed.
    img = _page(["Warehouse closes at 18:00", "仓库下午六点关门", "Please use gate B 请走B门"],
                title="Notice 通知")
    return img.rotate(4, expand=True, fillcolor=255, resample=Image.BICUBIC)


DOCS = {
    "receipt_01.png": receipt_01,
    "receipt_02.png": receipt_02,
    "train_ticket.png": train_ticket,
    "table.png": table_page,
    "text_page.png": text_page,
    "rotated_notice.jpg": rotated_notice,
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=pathlib.Path, default=OUT)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name, render in DOCS.items():
        img = render()
        path = args.out / name
        if name.endswith(".jpg"):
            img.convert("RGB").save(path, quality=80)
        else:
            img.save(path, optimize=True)
        print(f"{path} {img.size[0]}x{img.size[1]} {path.stat().st_size} bytes")


if __name__ == "__main__":
    main()
