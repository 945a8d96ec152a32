"""Model catalogue for Qwen-VL-OCR: patch size, token limits, regions, prices, quotas.

Why a table and not constants sprinkled through the code: the service changed what ``qwen-vl-ocr`` means
three times (2024-10-28 → 2025-04-13 → 2025-08-28 → 2025-11-20) and the patch size changed with it
(28 px → 32 px). Token estimates, cost and resize all read this one table, and users can override the
patch size per call when Alibaba moves the alias again.

Prices are per 1,000 tokens. Beijing prices are set in CNY by Alibaba (USD figures are Alibaba's own
USD list prices); the batch API costs half of realtime (reference/dashscope-api.md §1, §5).

What is not documented stays ``None`` and means *unknown*, never a guess: ``qwen3.5-ocr`` has no published
price, RPM/TPM, context length or Batch support, so its rows carry ``cost = {"usd": None, "cny": None}``, and
the limiter paces it at the conservative documented default (:func:`effective_quota`: 600 RPM, the lowest any
Qwen OCR model has, and the 6,000,000 TPM every documented row has) with a log line saying the quota is
unknown and how to set it (the connection's ``rpm``/``tpm``). A model name the catalogue does not know is
accepted with one warning per process (it may be a snapshot released after us) on the same terms: 32-px
patches, the default pixel bounds, unknown price and quota.

Which API a model is called through (reference §10): ``qwen3.5-ocr`` and later through the OpenAI-compatible
Responses API (``dashscope/responses.py``: whole PDFs, a built-in task *combined* with the user's prompt);
the older models through the native API (``dashscope/realtime.py``), several page images per request for a
multi-page document.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

DEFAULT_MODEL = "qwen-vl-ocr"
#: Documented image size limit for a URL or local file (reference §6/§9); ``qwen3.5-ocr`` takes 20 MB.
MAX_IMAGE_BYTES = 10 * 1024 * 1024

#: Regions and their documented public endpoint roots.
REGION_ENDPOINTS: dict[str, str] = {
    "cn-beijing": "https://dashscope.aliyuncs.com",
    "ap-southeast-1": "https://dashscope-intl.aliyuncs.com",
    "us-east-1": "https://dashscope-us.aliyuncs.com",
}
DEFAULT_REGION = "cn-beijing"
#: OCR through the Batch API is offered in the Chinese mainland (Beijing) region only.
BATCH_REGIONS = frozenset({"cn-beijing"})

#: The APIs a model is called through (reference §10): the native multimodal-generation API, or the
#: OpenAI-compatible Responses API ("仅 qwen3.5-ocr 及以后版本支持": qwen3.5-ocr and later only).
NATIVE_API, RESPONSES_API = "native", "responses"
#: Whole-PDF input through the Responses API (reference §10): ≤ 50 pages and ≤ 100 MB per file.
MAX_PDF_PAGES = 50
MAX_PDF_BYTES = 100 * 1024 * 1024
#: The quota assumed for a model without a documented one (reference §1/§10: 600 RPM is the lowest any Qwen
#: OCR model has; 6,000,000 TPM is the figure of every documented row). Logged as an assumption, never silent.
CONSERVATIVE_RPM = 600
CONSERVATIVE_TPM = 6_000_000


@dataclass(frozen=True)
class Price:
    """Realtime list price per 1,000 tokens (``None`` = not published); ``batch=True`` costs half.

    A currency without a published rate costs ``None`` (unknown) — except for zero tokens, which cost
    0 in any currency (an unbilled error row is free whatever the price list says).
    """

    usd_in: float | None
    usd_out: float | None
    cny_in: float | None = None
    cny_out: float | None = None

    @property
    def known(self) -> bool:
        return self.usd_in is not None and self.usd_out is not None

    def cost(self, input_tokens: int, output_tokens: int, *, batch: bool = False) -> dict[str, float | None]:
        factor = 0.5 if batch else 1.0

        def one(rate_in: float | None, rate_out: float | None) -> float | None:
            if not input_tokens and not output_tokens:
                return 0.0
            if rate_in is None or rate_out is None:
                return None
            return round((input_tokens * rate_in + output_tokens * rate_out) / 1000 * factor, 8)

        return {"usd": one(self.usd_in, self.usd_out), "cny": one(self.cny_in, self.cny_out)}


#: The price of a model whose list price is not published (or not known to this release).
UNKNOWN_PRICE = Price(usd_in=None, usd_out=None)


# Beijing: CNY 0.3 / 0.5 per 1M tokens for the 2025-11-20 generation ($0.043 / $0.072), CNY 5 per 1M
# ($0.717) for the older snapshots. International (Singapore): $0.07 / $0.16, no CNY list price.
_PRICE_NEW_CN = Price(usd_in=0.043 / 1000, usd_out=0.072 / 1000, cny_in=0.3 / 1000, cny_out=0.5 / 1000)
_PRICE_OLD_CN = Price(usd_in=0.717 / 1000, usd_out=0.717 / 1000, cny_in=5.0 / 1000, cny_out=5.0 / 1000)
_PRICE_NEW_INTL = Price(usd_in=0.07 / 1000, usd_out=0.16 / 1000)


@dataclass(frozen=True)
class ModelSpec:
    """One model's documented facts; ``None`` = not documented (unknown), never another model's figure."""

    name: str
    patch: int
    context: int | None
    max_input: int | None
    max_output: int | None
    builtin_tasks: bool
    rpm: int | None
    tpm: int | None = 6_000_000
    regions: tuple[str, ...] = ("cn-beijing",)
    prices: dict[str, Price] = field(default_factory=dict)
    max_image_tokens: int = 30_000
    max_image_bytes: int = MAX_IMAGE_BYTES
    known: bool = True  # False: a name the catalogue does not know (accepted with a warning)
    api: str = NATIVE_API  # the API the docs call it through (NATIVE_API / RESPONSES_API)
    max_pdf_pages: int | None = None  # whole PDFs per request (Responses API) up to this many pages; None: no PDFs
    max_pdf_bytes: int | None = None
    multi_image: bool | None = True  # several images per request: documented for the pre-3.5 models; None = unconfirmed
    batch: bool | None = None  # True: the Batch docs list it; None: not confirmed either way

    @property
    def combines_prompt(self) -> bool:
        """qwen3.5-ocr and later (the Responses-API models): a built-in task no longer overrides the user's
        prompt; both are sent, the text answers the prompt and ``ocr_result`` carries the task's result."""
        return self.api == RESPONSES_API

    @property
    def takes_pdf(self) -> bool:
        return self.max_pdf_pages is not None

    @property
    def max_pixels_limit(self) -> int:
        """The largest ``max_pixels`` the service takes: 30,000 tokens of patch² px (30,720,000 at 32 px,
        23,520,000 at 28 px; reference §10)."""
        return self.max_image_tokens * self.patch * self.patch

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
        """The list price in ``region`` (the first listed region's when that one has none), or
        :data:`UNKNOWN_PRICE` when the model has no published price at all."""
        return self.prices.get(region) or next(iter(self.prices.values()), UNKNOWN_PRICE)


def _new(name: str, rpm: int, regions: tuple[str, ...], batch: bool | None = None) -> ModelSpec:
    prices = {"cn-beijing": _PRICE_NEW_CN, "us-east-1": _PRICE_NEW_CN, "ap-southeast-1": _PRICE_NEW_INTL}
    return ModelSpec(name, 32, 38_192, 30_000, 8_192, True, rpm, regions=regions, prices=prices, batch=batch)


def _old(name: str, builtin: bool) -> ModelSpec:
    return ModelSpec(name, 28, 34_096, 30_000, 4_096, builtin, 600, prices={"cn-beijing": _PRICE_OLD_CN})


_ALL_REGIONS = ("cn-beijing", "ap-southeast-1", "us-east-1")

MODELS: dict[str, ModelSpec] = {
    m.name: m
    for m in (
        # The Batch reference lists OCR batch (Beijing) for qwen-vl-ocr; which snapshots it takes: unconfirmed.
        _new("qwen-vl-ocr", 600, _ALL_REGIONS, batch=True),
        _new("qwen-vl-ocr-latest", 1200, ("cn-beijing",)),
        _new("qwen-vl-ocr-2025-11-20", 1200, _ALL_REGIONS),
        _old("qwen-vl-ocr-2025-08-28", True),
        _old("qwen-vl-ocr-2025-04-13", True),
        _old("qwen-vl-ocr-2024-10-28", False),
        # Chinese guide on the newer platform (S2, reference §9/§10): 32-px tokens, 20 MB images, built-in
        # tasks combined with the user's prompt, the Responses API only, whole PDFs (≤ 50 pages, ≤ 100 MB),
        # Beijing. Context (128K in the release log vs 65,536 in a third-party guide), output limit, price,
        # RPM/TPM and Batch support: unconfirmed, so None (unknown) — never another model's figure.
        ModelSpec("qwen3.5-ocr", 32, None, None, None, True, None, None,
                  max_image_bytes=20 * 1024 * 1024, api=RESPONSES_API, max_pdf_pages=MAX_PDF_PAGES,
                  max_pdf_bytes=MAX_PDF_BYTES, multi_image=None),  # its documented multi-page input is the PDF
    )
}
ALIASES = {
    "qwen-vl-ocr-1120": "qwen-vl-ocr-2025-11-20",
    "qwen-vl-ocr-0828": "qwen-vl-ocr-2025-08-28",
    "qwen-vl-ocr-0413": "qwen-vl-ocr-2025-04-13",
    "qwen-vl-ocr-1028": "qwen-vl-ocr-2024-10-28",
}


_WARNED: set[str] = set()
_WARNED_LOCK = threading.Lock()


def unknown_model(name: str) -> ModelSpec:
    """The spec assumed for a model the catalogue does not know; warns once per name per process."""
    with _WARNED_LOCK:
        first = name not in _WARNED
        _WARNED.add(name)
    if first:
        log.warning(
            "model %r is not in this provider's catalogue; assuming 32-px patches, the default pixel bounds "
            "(min %d, max %d), an unknown quota (paced at the conservative default unless the connection sets "
            "rpm/tpm) and an unknown price (cost is reported as null). Pass patch=28 if it is a 28-px snapshot.",
            name, 32 * 32 * 3, 32 * 32 * 8192,
        )
    return ModelSpec(name, 32, None, None, None, True, None, None, regions=_ALL_REGIONS, known=False)


def get_model(name: str | None, *, patch: int | None = None) -> ModelSpec:
    """Return the spec for ``name``; a name the catalogue does not know gets :func:`unknown_model`.

    ``patch`` overrides the patch size, for when the service moves an alias before we release.
    """
    name = name or DEFAULT_MODEL
    spec = MODELS.get(ALIASES.get(name, name))
    if spec is None:
        spec = unknown_model(name)
    if patch is not None and patch != spec.patch:
        if patch not in (28, 32):
            raise ValueError(f"patch must be 28 or 32, not {patch!r}")
        spec = ModelSpec(**{**spec.__dict__, "patch": patch})
    return spec


_QUOTA_WARNED: set[str] = set()


def effective_quota(spec: ModelSpec, rpm: int | None = None, tpm: int | None = None) -> tuple[int, int]:
    """(RPM, TPM) to pace ``spec`` at: the connection's ``rpm``/``tpm``, else the model's documented quota,
    else :data:`CONSERVATIVE_RPM` / :data:`CONSERVATIVE_TPM` — logged once per model and process as an
    assumption (the real quota is unknown), with how to set it."""
    out_rpm, out_tpm = rpm or spec.rpm, tpm or spec.tpm
    if out_rpm and out_tpm:
        return out_rpm, out_tpm
    missing = " and ".join(n for n, v in (("RPM", out_rpm), ("TPM", out_tpm)) if not v)
    with _WARNED_LOCK:
        first = spec.name not in _QUOTA_WARNED
        _QUOTA_WARNED.add(spec.name)
    if first:
        log.warning(
            "model %r: its %s quota is unknown (not documented); pacing at %s RPM / %s TPM, a conservative "
            "documented default. Set the connection extras 'rpm' and 'tpm' to your account's quota.",
            spec.name, missing, out_rpm or CONSERVATIVE_RPM, out_tpm or CONSERVATIVE_TPM,
        )
    return out_rpm or CONSERVATIVE_RPM, out_tpm or CONSERVATIVE_TPM
