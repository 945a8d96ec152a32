"""Batch input files (JSONL): build, split, manifest. (Output files → rows: :mod:`.batch_results`.)

Why this exists apart from the client: the Batch API only speaks OpenAI-compatible chat requests, so the
built-in OCR tasks must be expressed as their fixed prompt text (``ocr.tasks.prompt_for``) and the answers
parsed by us (``ocr.parsing.parse_answer``) into the very same rows the realtime path writes. The service
also imposes file rules we enforce before uploading, because a violation fails the whole batch after a
wait: ≤ 50,000 lines, ≤ 500 MB per file, ≤ 6 MB per line, one model per file, unique ``custom_id``.

The *manifest* (custom_id → source, sha256, task, model, scale back to the original image) is what lets a
fresh process — a resumed deferred task, a sensor in another DAG — rebuild full rows from output files
that only carry ``custom_id``. Images that could not be sent are kept in it as error entries, so they
land as error rows next to the batch results instead of crashing the submit.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, BinaryIO

from airflow_provider_qwenocr.dashscope.batch import BATCH_ENDPOINT
from airflow_provider_qwenocr.dashscope.errors import describe
from airflow_provider_qwenocr.ocr.images import ImageValidationError, PreparedImage
from airflow_provider_qwenocr.ocr.plan import Identity, SourcePlan, find_cached, plan_bytes
from airflow_provider_qwenocr.ocr.request import OcrRequest, build_ocr_request

log = logging.getLogger(__name__)

MAX_LINES = 50_000
MAX_FILE_BYTES = 500 * 1024 * 1024
MAX_LINE_BYTES = 6 * 1024 * 1024


@dataclass(frozen=True)
class BatchLimits:
    """The service's per-file limits; tests pass small ones to exercise the split."""

    max_lines: int = MAX_LINES
    max_file_bytes: int = MAX_FILE_BYTES
    max_line_bytes: int = MAX_LINE_BYTES


@dataclass
class ManifestEntry:
    custom_id: str
    source: str
    task: str
    model: str
    sha256: str | None = None
    scale_x: float = 1.0
    scale_y: float = 1.0
    width: int | None = None
    height: int | None = None
    page: int | None = None
    part: int | None = None  # index of the input file the line went to; None when rejected
    error: dict[str, str] | None = None  # set when the image was rejected before submission
    duplicates: list[str] = field(default_factory=list)  # other sources with identical bytes (same key)
    duplicate_pages: list[int | None] = field(default_factory=list)  # their pages (older manifests: none)
    cached: dict[str, Any] | None = None  # a finished row found in the result cache: not sent again

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ManifestEntry:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)


@dataclass
class BatchPlan:
    """The input files to upload (``parts``, spooled JSONL) and the manifest of every image, sent or not."""

    model: str
    task: str
    parts: list[PartFile]
    manifest: list[ManifestEntry]
    spool_dir: str | None = None
    image_tokens: int = 0  # estimated image tokens of every line (what the service bills for the images)

    def cleanup(self) -> None:
        """Delete the spooled part files (after upload)."""
        if self.spool_dir:
            shutil.rmtree(self.spool_dir, ignore_errors=True)

    @property
    def rejected(self) -> list[ManifestEntry]:
        return [e for e in self.manifest if e.error is not None]

    @property
    def n_requests(self) -> int:
        return sum(1 for e in self.manifest if e.error is None and e.cached is None)

    @property
    def n_cached(self) -> int:
        return sum(1 + len(e.duplicates) for e in self.manifest if e.cached is not None)

    @property
    def n_images(self) -> int:
        return sum(1 + len(e.duplicates) for e in self.manifest)


def request_line(custom_id: str, image_url: str, text: str, *, model: str,
                 min_pixels: int | None = None, max_pixels: int | None = None) -> dict[str, Any]:
    """One Batch request: ``min_pixels``/``max_pixels`` sit next to ``image_url`` (as the docs show)."""
    image: dict[str, Any] = {"type": "image_url", "image_url": {"url": image_url}}
    if min_pixels is not None:
        image["min_pixels"] = min_pixels
    if max_pixels is not None:
        image["max_pixels"] = max_pixels
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": BATCH_ENDPOINT,
        "body": {"model": model, "messages": [{"role": "user", "content": [image, {"type": "text", "text": text}]}]},
    }


def encode_line(line: dict[str, Any]) -> bytes:
    return (json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


@dataclass
class PartFile:
    """One input file on local disk (spooled while building, so 50,000 base64 images never sit in memory)."""

    path: str
    n_lines: int = 0
    n_bytes: int = 0

    def read_bytes(self) -> bytes:
        with open(self.path, "rb") as fh:
            return fh.read()

    def open(self) -> BinaryIO:
        return open(self.path, "rb")


@dataclass
class Prepared:
    """What :meth:`BatchBuilder.prepare` made of one plan: a line to send (a prepared image or a URL), a
    cached ``(key, row)``, or an error."""

    identity: Identity
    image: PreparedImage | None = None
    url: str | None = None
    cached: tuple[str, dict[str, Any]] | None = None
    error: dict[str, str] | None = None


class BatchBuilder:
    """Collects images for ONE model and task and spools them into size-limited JSONL part files.

    Each source comes as its plan (``ocr.plan.plan_source``: how it is sent, which keys find it); lines are
    written encoded so the size checks are exact. Identical images (same idempotency key) are sent once;
    their other sources are recorded as duplicates and get a row of their own on landing.
    :meth:`prepare` is thread-safe (decode/resize/encode — the slow part — can run in a pool);
    :meth:`add` must be called from one thread, in the order rows should appear.
    """

    def __init__(self, *, request: OcrRequest | None = None, limits: BatchLimits | None = None,
                 spool_dir: str | None = None, **arguments: Any) -> None:
        """``request`` is the run's spec; without it ``arguments`` (``task``, ``model``, ``prompt``,
        ``result_schema``, ``min_pixels``, ``max_pixels``) build one (``ocr.request.build_ocr_request``)."""
        if request is None:
            request = build_ocr_request(**arguments)
        elif arguments:
            raise TypeError(f"BatchBuilder takes a request or its arguments, not both: {sorted(arguments)}")
        if request.enable_rotate:
            raise ValueError("the Batch API (compatible mode) cannot rotate: enable_rotate must be False")
        self.request = request
        self.task, self.spec, self.model = request.task, request.spec, request.model
        self.text = request.text
        self.limits = limits or BatchLimits()
        self._entries: dict[str, ManifestEntry] = {}
        self._spool_dir = spool_dir
        self._parts: list[PartFile] = []
        self._fh: BinaryIO | None = None
        self.image_tokens = 0

    def prepare(self, plan: SourcePlan, *, cache: Any = None) -> Prepared:
        """Thread-safe: the cached row of ``plan`` (``cache.get(key) -> row | None``), else its line's image
        (resized + encoded) or URL, else its error."""
        ident = plan.identity
        if plan.error is not None:
            return Prepared(ident, error={"code": plan.error.code, "message": plan.error.text(describe)})
        hit = find_cached(cache, plan)
        if hit is not None:
            return Prepared(ident, cached=hit)
        if plan.data is None:
            return Prepared(ident, url=plan.url)
        try:
            return Prepared(ident, image=self.request.prepare(plan.data, sha256=ident.sha256))
        except ImageValidationError as exc:
            return Prepared(ident, error={"code": exc.code, "message": str(exc)})
        except ValueError as exc:
            return Prepared(ident, error={"code": "InvalidParameter", "message": str(exc)})

    def add(self, item: Prepared) -> ManifestEntry:
        """Queue ``item``'s line (or record its cached row or error) in the manifest; a second source with the
        same key becomes a duplicate of the first entry (one line, a row for each on landing)."""
        ident = item.identity
        key = item.cached[0] if item.cached is not None else ident.key
        existing = self._entries.get(key)
        if existing is not None:
            existing.duplicates.append(ident.source)
            existing.duplicate_pages.append(ident.page)
            return existing
        entry = self._entries[key] = ManifestEntry(custom_id=key, source=ident.source, task=self.task.value,
                                                   model=self.model, sha256=ident.sha256, page=ident.page)
        if item.cached is not None:
            entry.cached = item.cached[1]
        elif item.error is not None:
            entry.error = item.error
        elif item.image is not None:
            entry.width, entry.height = item.image.width, item.image.height
            entry.scale_x, entry.scale_y = item.image.scale_x, item.image.scale_y
            if self._queue(entry, item.image.data_url):
                self.image_tokens += item.image.tokens
        elif item.url is not None:
            self._queue(entry, item.url)
        return entry

    def add_image(self, source: str, data: bytes, *, page: int | None = None, cache: Any = None) -> ManifestEntry:
        """Plan, prepare (resize to the model grid, base64) and queue the bytes of one image."""
        return self.add(self.prepare(plan_bytes(source, data, self.request, page), cache=cache))

    def _queue(self, entry: ManifestEntry, image_url: str) -> bool:
        line = encode_line(request_line(entry.custom_id, image_url, self.text, model=self.model,
                                        min_pixels=self.request.min_pixels, max_pixels=self.request.max_pixels))
        if len(line) > self.limits.max_line_bytes:
            entry.error = {
                "code": "LineTooLarge",
                "message": f"request line is {len(line):,} bytes; a Batch line may hold at most "
                           f"{self.limits.max_line_bytes:,} bytes (lower max_pixels to send a smaller image)",
            }
            return False
        part = self._parts[-1] if self._parts else None
        if part is None or part.n_lines >= self.limits.max_lines or \
                part.n_bytes + len(line) > self.limits.max_file_bytes:
            part = self._new_part()
        assert self._fh is not None
        self._fh.write(line)
        part.n_lines += 1
        part.n_bytes += len(line)
        entry.part = len(self._parts) - 1
        return True

    def _new_part(self) -> PartFile:
        if self._fh is not None:
            self._fh.close()
        if self._spool_dir is None:
            self._spool_dir = tempfile.mkdtemp(prefix="qwenocr-batch-")
        path = os.path.join(self._spool_dir, f"part-{len(self._parts) + 1:04d}.jsonl")
        self._fh = open(path, "wb")
        part = PartFile(path)
        self._parts.append(part)
        return part

    def cleanup(self) -> None:
        """Close and delete the spooled part files (after upload, or after a failure)."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        if self._spool_dir:
            shutil.rmtree(self._spool_dir, ignore_errors=True)

    def build(self) -> BatchPlan:
        """Close the spooled parts; the plan lists them in order, with the manifest of every image."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        return BatchPlan(model=self.model, task=self.task.value, parts=list(self._parts),
                         manifest=list(self._entries.values()), spool_dir=self._spool_dir,
                         image_tokens=self.image_tokens)


# -- manifest (de)serialisation ----------------------------------------------------------------------------

def dump_manifest(entries: Iterable[ManifestEntry]) -> str:
    return "".join(json.dumps(e.to_dict(), ensure_ascii=False, separators=(",", ":")) + "\n" for e in entries)


def load_manifest(text: str) -> list[ManifestEntry]:
    return [ManifestEntry.from_dict(json.loads(line)) for line in text.splitlines() if line.strip()]
