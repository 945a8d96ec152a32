"""One plan per source (ocr/plan.py): the realtime run, its token estimate and the batch builder send every
kind of source the same way and find it under the same keys — a drift between them makes a user pay twice."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image

from airflow_provider_qwenocr.dashscope.batch_jsonl import BatchBuilder
from airflow_provider_qwenocr.ocr.images import prepare_image, sha256_hex
from airflow_provider_qwenocr.ocr.plan import (
    DocumentPlan,
    Identity,
    Send,
    legacy_url_key,
    payload_identity,
    plan_bytes,
    plan_source,
    reference_key,
    unreadable_key,
)
from airflow_provider_qwenocr.ocr.request import build_ocr_request
from airflow_provider_qwenocr.ocr.results import OcrResult, Usage
from airflow_provider_qwenocr.runs.batch import prepared_steps
from airflow_provider_qwenocr.runs.realtime import OcrJob, estimate_job_tokens, process_one
from airflow_provider_qwenocr.runs.sources import Source

URL = "https://example.invalid/scans/a.png"


def _png(color=(255, 255, 255)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), color).save(buf, "PNG")
    return buf.getvalue()


PNG = _png()


def _unreadable() -> bytes:
    raise OSError("permission denied")


class RecordingCache:
    """A cache that misses and remembers every key looked up or written."""

    def __init__(self):
        self.looked_up: list[str] = []
        self.written: list[str] = []

    def get(self, key):
        self.looked_up.append(key)

    def put(self, row):
        self.written.append(row.key)


class Signer:
    def __init__(self, broken=False):
        self.broken = broken

    def supports(self, uri):
        return uri.startswith("s3://")

    def url(self, uri):
        if self.broken:
            raise RuntimeError("no AWS connection 'aws_default'")
        return uri.replace("s3://", "https://s3.example.invalid/") + "?X-Amz-Signature=abc"

    def header(self, uri):
        return PNG


class EchoClient:
    """Returns the finished row for the identity it is given (the client's contract)."""

    def __init__(self):
        self.sent: list = []

    def recognize(self, image, *, request, identity):
        self.sent.append(image)
        return OcrResult(**identity.fields(), task=request.task.value, model=request.model, text="t",
                         usage=Usage(10, 1, 8, 11))


#: kind → (source, fetch, presigner, expected Send)
KINDS = {
    "local image": (Source("/in/a.png", _reader=lambda: PNG), False, None, Send.INLINE),
    "pdf page": (Source("/in/doc.pdf", page=2, _reader=lambda: PNG), False, None, Send.PAGE),
    "tiff frame": (Source("/in/scan.tiff", page=3, _reader=lambda: PNG), False, Signer(), Send.PAGE),
    "http url, fetch=False": (Source(URL, is_remote_url=True, _reader=lambda: PNG), False, None, Send.FETCHED),
    "http url, fetch=True": (Source(URL, is_remote_url=True, _reader=lambda: PNG), True, None, Send.INLINE),
    "s3 object inline": (Source("s3://bucket/a.png", _reader=lambda: PNG), False, None, Send.INLINE),
    "s3 object url mode": (Source("s3://bucket/a.png", _reader=_unreadable), False, Signer(), Send.PRESIGNED),
    "data url": (Source("data:image/png;base64," + base64.b64encode(PNG).decode()), False, None, Send.INLINE),
    "unreadable": (Source("/in/locked.png", _reader=_unreadable), False, None, Send.ERROR),
    "unsupported": (Source("/in/a.heic", error="no decoder: pip install pillow-heif"), False, None, Send.ERROR),
    "presigning fails": (Source("s3://bucket/a.png", _reader=lambda: PNG), False, Signer(broken=True), Send.ERROR),
}


@pytest.mark.parametrize("kind", list(KINDS))
def test_realtime_estimate_and_batch_send_and_key_every_source_alike(kind):
    src, fetch, presigner, send = KINDS[kind]
    request = build_ocr_request(fetch=fetch)
    plan = plan_source(src, request, presigner=presigner)
    assert plan.send is send

    rt_cache, client = RecordingCache(), EchoClient()
    row, cached = process_one(src, OcrJob(request, presigner=presigner), client, rt_cache)
    est_cache = RecordingCache()
    estimate_job_tokens([src], OcrJob(request, presigner=presigner), est_cache)
    batch_cache, builder = RecordingCache(), BatchBuilder(request=request)
    for add in prepared_steps(builder, [src], batch_cache, 1, presigner=presigner):
        add()
    entry = builder.build().manifest[0]
    builder.cleanup()

    # the same keys looked up, in the same order, by the three paths; the same key written by both runs
    assert rt_cache.looked_up == est_cache.looked_up == batch_cache.looked_up == list(plan.lookup)
    assert row.key == entry.custom_id == plan.identity.key and row.sha256 == entry.sha256
    assert (row.source, row.page) == (entry.source, entry.page) == (plan.identity.source, plan.identity.page)
    assert not cached
    if send is Send.ERROR:
        assert row.status == "error" and entry.error["code"] == row.error.code and client.sent == []
        assert plan.lookup == () and row.key == unreadable_key(request, src.name)
    else:
        assert row.ok and rt_cache.written == [plan.identity.key] and entry.error is None
        assert plan.lookup[0] == plan.identity.key
        # sha256 names the bytes sent (the key is theirs), None for a source the service fetches
        assert plan.identity.sha256 is None if plan.by_reference else plan.identity.key == request.key(row.sha256)


def test_the_keys_are_todays_formulas():
    request = build_ocr_request()
    by_bytes = request.key(sha256_hex(PNG))
    plans = {kind: plan_source(src, build_ocr_request(fetch=fetch), presigner=p)
             for kind, (src, fetch, p, _) in KINDS.items()}
    for kind in ("local image", "pdf page", "http url, fetch=True", "s3 object inline", "data url"):
        assert plans[kind].lookup == (by_bytes,), kind  # the same bytes under any name: one key
    # a URL the service fetches: written by reference, and still found under the realtime path's old key
    assert plans["http url, fetch=False"].lookup == (reference_key(request, URL), legacy_url_key(request, URL))
    assert plans["s3 object url mode"].lookup == (reference_key(request, "s3://bucket/a.png"),)  # not the signature
    assert plans["s3 object url mode"].identity.sha256 is None  # its bytes are never read


def test_the_signature_is_sent_but_never_lands_in_a_row():
    src, _, signer, _ = KINDS["s3 object url mode"]
    client = EchoClient()
    row, _ = process_one(src, OcrJob(build_ocr_request(), presigner=signer), client, None)
    assert client.sent == [signer.url("s3://bucket/a.png")]
    assert row.source == "s3://bucket/a.png" and "Signature" not in str(row.to_row())


def test_a_payload_without_a_plan_is_keyed_by_the_same_rules():
    """hook.recognize hands the client a payload, not a source: its identity follows the plan's rules."""
    request = build_ocr_request(max_pixels=200_000)
    prepared = prepare_image(PNG, request.spec, max_pixels=200_000)
    assert payload_identity(prepared, request).key == plan_bytes("a.png", PNG, request).identity.key
    url_plan = plan_source(Source(URL, is_remote_url=True), request)
    assert payload_identity(URL, request) == Identity(URL, url_plan.identity.key, None)


def test_a_document_plan_holds_its_pages_keys_and_its_own():
    """The seam for whole documents (issue 18): N page plans + one document identity, keys of all."""
    request = build_ocr_request(model="qwen-vl-ocr")
    pages = tuple(plan_bytes(f"/in/doc.pdf#page={n}", _png((n, n, n)), request, page=n) for n in (1, 2))
    doc = DocumentPlan(Send.INLINE, Identity("/in/doc.pdf", request.key(sha256_hex(b"%PDF-")), None),
                       pages, lookup=(request.key(sha256_hex(b"%PDF-")),))
    assert doc.keys() == (doc.identity.key, pages[0].identity.key, pages[1].identity.key)
    assert len(set(doc.keys())) == 3
