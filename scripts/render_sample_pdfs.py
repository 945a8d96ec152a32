"""Build the sample PDFs of dags/sample_pdfs/ from the committed sample pages (run ONCE; the PDFs are committed).

Why built from dags/sample_docs/ and not drawn: the pages already hold printed labels the KIE schema
(dags/sample_docs/receipt_schema.json) names, and no CJK font is needed to rebuild them.

- ``invoice_2p.pdf``: receipt_01 cut in two pages — the merchant, invoice number and date on page 1, the
  total and currency on page 2 — so one document answer must hold fields from both pages;
- ``report_3p.pdf``: the operations note, the table and the train ticket as a 3-page report.

Pages are embedded images at 72 dpi (one pixel per point), as a scanner writes them.

    python scripts/render_sample_pdfs.py [--out dags/sample_pdfs]
"""

from __future__ import annotations

import argparse
import pathlib

from PIL import Image

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = ROOT / "dags" / "sample_docs"
OUT = ROOT / "dags" / "sample_pdfs"
#: receipt_01's lines are 44 px apart from y = 88 (title above): page 1 keeps the first three fields.
INVOICE_CUT = 222


def pdf(path: pathlib.Path, pages: list[Image.Image]) -> None:
    rgb = [p.convert("RGB") for p in pages]
    rgb[0].save(path, "PDF", resolution=72, save_all=True, append_images=rgb[1:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=pathlib.Path, default=OUT)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with Image.open(DOCS / "receipt_01.png") as receipt:
        w, h = receipt.size
        top = receipt.crop((0, 0, w, INVOICE_CUT))
        bottom = Image.new("L", (w, h - INVOICE_CUT + 40), 255)
        bottom.paste(receipt.crop((0, INVOICE_CUT, w, h)), (0, 40))
        pdf(args.out / "invoice_2p.pdf", [top, bottom])
    pages = [Image.open(DOCS / n) for n in ("text_page.png", "table.png", "train_ticket.png")]
    pdf(args.out / "report_3p.pdf", pages)
    for p in sorted(args.out.glob("*.pdf")):
        print(f"{p} {p.stat().st_size} bytes")


if __name__ == "__main__":
    main()
