"""The models the emulator serves, written from the service's documentation (not from the provider).

Why its own table: the emulator is the second implementation the provider is checked against; if both
read one table, a wrong patch size or limit would be "confirmed" by construction. Figures (reference §1,
§6, §9 of the public documentation):

- 32-px tokens: ``qwen-vl-ocr`` (= 2025-11-20 in the 2026 docs), ``-latest``, ``-2025-11-20``, ``qwen3.5-ocr``;
  28-px tokens: ``-2025-08-28``, ``-2025-04-13``, ``-2024-10-28``.
- max input 30,000 tokens (≤ 30,000 per image); max output 8,192 (32-px) / 4,096 (28-px snapshots).
- RPM 600 (``qwen-vl-ocr`` and the 28-px snapshots), 1,200 (``-latest``, ``-2025-11-20``); TPM 6,000,000.
- no built-in tasks on ``-2024-10-28``; ``qwen3.5-ocr`` combines a task's prompt with the user's.
- the Responses API (whole PDFs) serves ``qwen3.5-ocr`` and later only (reference §10).
- images ≤ 10 MB (``qwen3.5-ocr``: 20 MB); default pixel bounds ``P*P*3``/``P*P*4`` … ``P*P*8192``.

``qwen3.5-ocr``'s output limit, RPM and TPM are not published: the emulator assumes 8,192 / 600 / 6M
(stated here so nobody mistakes them for facts). A name not in the table is refused, as the service does.
"""

from __future__ import annotations

from dataclasses import dataclass

MB = 1024 * 1024
MAX_IMAGE_TOKENS = 30_000


@dataclass(frozen=True)
class Model:
    name: str
    patch: int  # side of one vision token, px
    max_output: int
    builtin_tasks: bool = True
    rpm: int = 600
    tpm: int = 6_000_000
    max_input: int = 30_000
    max_image_bytes: int = 10 * MB
    combines_prompt: bool = False  # qwen3.5-ocr: a task's prompt is combined with the user's text
    responses_api: bool = False  # served on /compatible-mode/v1/responses ("qwen3.5-ocr and later only")

    @property
    def default_min_pixels(self) -> int:
        return self.patch * self.patch * (3 if self.patch == 32 else 4)

    @property
    def default_max_pixels(self) -> int:
        return self.patch * self.patch * 8192

    @property
    def image_pixel_cap(self) -> int:
        return MAX_IMAGE_TOKENS * self.patch * self.patch


_TABLE = (
    Model("qwen-vl-ocr", 32, 8192, rpm=600),
    Model("qwen-vl-ocr-latest", 32, 8192, rpm=1200),
    Model("qwen-vl-ocr-2025-11-20", 32, 8192, rpm=1200),
    Model("qwen3.5-ocr", 32, 8192, rpm=600, max_image_bytes=20 * MB, combines_prompt=True, responses_api=True),
    Model("qwen-vl-ocr-2025-08-28", 28, 4096),
    Model("qwen-vl-ocr-2025-04-13", 28, 4096),
    Model("qwen-vl-ocr-2024-10-28", 28, 4096, builtin_tasks=False),
)
MODELS: dict[str, Model] = {m.name: m for m in _TABLE}
ALIASES = {
    "qwen-vl-ocr-1120": "qwen-vl-ocr-2025-11-20",
    "qwen-vl-ocr-0828": "qwen-vl-ocr-2025-08-28",
    "qwen-vl-ocr-0413": "qwen-vl-ocr-2025-04-13",
    "qwen-vl-ocr-1028": "qwen-vl-ocr-2024-10-28",
}


def lookup(name: object) -> Model | None:
    """The model called ``name`` (aliases resolved), or None when the service would not know it."""
    if not isinstance(name, str):
        return None
    return MODELS.get(ALIASES.get(name, name))


def is_known(name: object) -> bool:
    return lookup(name) is not None
