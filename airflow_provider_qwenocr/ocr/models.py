"""Model catalogue for Qwen-VL-OCR: patch size, token limits, regions, prices, quotas.

Why a table and not constants sprinkled through the code: the service changed what ``qwen-vl-ocr`` means
three times (2024-10-28 → 2025-04-13 → 2025-08-28 → 2025-11-20) and the patch size changed with it
(28 px → 32 px). Token estimates, cost and resize all read this one table, and users can override the
patch size per call when Alibaba moves the alias again.

Prices are per 1,000 tokens. Beijing prices are set in CNY by Alibaba (USD figures are Alibaba's own
USD list prices); the batch API costs half of realtime (reference/dashscope-api.md §1, §5).
"""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_MODEL = "qwen-vl-ocr"

#: Regions and their documented public endpoint roots.
REGION_ENDPOINTS: dict[str, str] = {
    "cn-beijing": "https://dashscope.aliyuncs.com",
    "ap-southeast-1": "https://dashscope-intl.aliyuncs.com",
    "us-east-1": "https://dashscope-us.aliyuncs.com",
}
DEFAULT_REGION = "cn-beijing"
#: OCR through the Batch API is offered in the Chinese mainland (Beijing) region only.
BATCH_REGIONS = frozenset({"cn-beijing"})


@dataclass(frozen=True)
class Price:
    """Realtime list price per 1,000 tokens; ``batch()`` gives the half-price batch figures."""

    usd_in: float
    usd_out: float
    cny_in: float | None = None
    cny_out: float | None = None

    def cost(self, input_tokens: int, output_tokens: int, *, batch: bool = False) -> dict[str, float | None]:
        factor = 0.5 if batch else 1.0
        usd = (input_tokens * self.usd_in + output_tokens * self.usd_out) / 1000 * factor
        cny = None
        if self.cny_in is not None and self.cny_out is not None:
            cny = (input_tokens * self.cny_in + output_tokens * self.cny_out) / 1000 * factor
        return {"usd": round(usd, 8), "cny": None if cny is None else round(cny, 8)}


# Beijing: CNY 0.3 / 0.5 per 1M tokens for the 2025-11-20 generation ($0.043 / $0.072), CNY 5 per 1M
# ($0.717) for the older snapshots. International (Singapore): $0.07 / $0.16, no CNY list price.
_PRICE_NEW_CN = Price(usd_in=0.043 / 1000, usd_out=0.072 / 1000, cny_in=0.3 / 1000, cny_out=0.5 / 1000)
_PRICE_OLD_CN = Price(usd_in=0.717 / 1000, usd_out=0.717 / 1000, cny_in=5.0 / 1000, cny_out=5.0 / 1000)
_PRICE_NEW_INTL = Price(usd_in=0.07 / 1000, usd_out=0.16 / 1000)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    patch: int
    context: int
    max_input: int
    max_output: int
    builtin_tasks: bool
    rpm: int
    tpm: int = 6_000_000
    regions: tuple[str, ...] = ("cn-beijing",)
    prices: dict[str, Price] = field(default_factory=dict)
    max_image_tokens: int = 30_000

    @property
    def default_min_pixels(self) -> int:
        return self.patch * self.patch * (3 if self.patch == 32 else 4)

    @property
    def default_max_pixels(self) -> int:
        # 32*32*8192 = 8,388,608 (2026 docs); 28*28*8192 = 6,422,528 for the 28-px snapshots.
        return self.patch * self.patch * 8192

    @property
    def normalized_text_boxes(self) -> bool:
        """Whether ``advanced_recognition``'s text block writes rectangles in 0–1000 coordinates.

        True for the 32-px (2025-11-20 and later) models, as a real capture shows; the scale the 28-px
        snapshots use there is not documented, so their text block is not turned into boxes.
        """
        return self.patch == 32

    def price(self, region: str = DEFAULT_REGION) -> Price:
        return self.prices.get(region) or next(iter(self.prices.values()))


def _new(name: str, rpm: int, regions: tuple[str, ...]) -> ModelSpec:
    prices = {"cn-beijing": _PRICE_NEW_CN, "us-east-1": _PRICE_NEW_CN, "ap-southeast-1": _PRICE_NEW_INTL}
    return ModelSpec(name, 32, 38_192, 30_000, 8_192, True, rpm, regions=regions, prices=prices)


def _old(name: str, builtin: bool) -> ModelSpec:
    return ModelSpec(name, 28, 34_096, 30_000, 4_096, builtin, 600, prices={"cn-beijing": _PRICE_OLD_CN})


_ALL_REGIONS = ("cn-beijing", "ap-southeast-1", "us-east-1")

MODELS: dict[str, ModelSpec] = {
    m.name: m
    for m in (
        _new("qwen-vl-ocr", 600, _ALL_REGIONS),
        _new("qwen-vl-ocr-latest", 1200, ("cn-beijing",)),
        _new("qwen-vl-ocr-2025-11-20", 1200, _ALL_REGIONS),
        _old("qwen-vl-ocr-2025-08-28", True),
        _old("qwen-vl-ocr-2025-04-13", True),
        _old("qwen-vl-ocr-2024-10-28", False),
    )
}
ALIASES = {
    "qwen-vl-ocr-1120": "qwen-vl-ocr-2025-11-20",
    "qwen-vl-ocr-0828": "qwen-vl-ocr-2025-08-28",
    "qwen-vl-ocr-0413": "qwen-vl-ocr-2025-04-13",
    "qwen-vl-ocr-1028": "qwen-vl-ocr-2024-10-28",
}


def get_model(name: str | None, *, patch: int | None = None) -> ModelSpec:
    """Return the spec for ``name``; unknown names get today's defaults (32-px patches).

    ``patch`` overrides the patch size, for when the service moves an alias before we release.
    """
    name = name or DEFAULT_MODEL
    spec = MODELS.get(ALIASES.get(name, name))
    if spec is None:
        spec = _new(name, 600, _ALL_REGIONS)
    if patch is not None and patch != spec.patch:
        if patch not in (28, 32):
            raise ValueError(f"patch must be 28 or 32, not {patch!r}")
        spec = ModelSpec(**{**spec.__dict__, "patch": patch})
    return spec
