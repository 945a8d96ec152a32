"""Time-limited HTTPS URLs for object-store sources, so the service fetches each image itself.

Why: inline, a 12-MP page is a ~2.2 MB base64 request line, so one 500 MB Batch input file holds only a
couple of hundred pages and 10,000 pages need dozens of files (and the worker decodes, resizes and encodes
every one). As a presigned URL the line is well under 1 KB, so one file holds the service's maximum of
50,000 lines and the worker reads no image at all.

What it trades (README, "Batch at volume"): the service downloads the **original** object from your bucket
(egress; the bucket must be reachable from the service; nothing is resized locally, so the bytes moved
are the original's — the tokens are the same, the service applies the same smart_resize grid); the URL is
a bearer credential for that one object until it expires; and boxes come back in the service's grid
(the original size is not read, so they are not mapped back).

The URLs stay valid past the Batch completion window (plus a margin): a request the service starts late
in the window must still be able to download its image. S3 signatures (SigV4) last at most 7 days.
"""

from __future__ import annotations

import logging
import threading
from urllib.parse import urlparse

from airflow_provider_qwenocr.runs import storage

log = logging.getLogger(__name__)

DEFAULT_MARGIN_SECONDS = 12 * 3600
REALTIME_EXPIRY_SECONDS = 3600  # realtime signs just before its call: an hour covers every retry of it
HEADER_BYTES = 64 * 1024  # a ranged GET this long holds a JPEG/PNG header (SOF/IHDR) unless APP data is huge
MAX_S3_EXPIRY_SECONDS = 7 * 24 * 3600  # SigV4 limit
TRANSPORTS = ("inline", "url", "fetch")


def expiry_seconds(completion_window: str = "24h", margin_seconds: int = DEFAULT_MARGIN_SECONDS) -> int:
    """How long the URLs live: the completion window plus a margin, refused beyond what S3 can sign."""
    from airflow_provider_qwenocr.dashscope.batch import window_hours  # the one reading of a window

    seconds = window_hours(completion_window) * 3600 + int(margin_seconds)
    if seconds > MAX_S3_EXPIRY_SECONDS:
        raise ValueError(f"presigned URLs would need {seconds / 3600:.0f} h; S3 signs for at most 168 h "
                         "(shorten the completion window or the margin)")
    return seconds


def check_transport(value: str) -> str:
    if value not in TRANSPORTS:
        raise ValueError(f"image_transport must be one of {TRANSPORTS}, not {value!r}")
    return value


class Presigner:
    """Signs GET URLs for ``s3://`` (boto3, the connection's credentials) and other fsspec object stores
    that can sign (``fs.sign``: gcs, azure). :meth:`supports` says whether a URI can go as a URL at all."""

    def __init__(self, *, aws_conn_id: str | None = "aws_default", expires_in: int | None = None) -> None:
        self.aws_conn_id = aws_conn_id
        self.expires_in = int(expires_in if expires_in is not None else expiry_seconds())
        self._unsignable: set[str] = set()
        self._s3 = None
        self._lock = threading.Lock()

    def _s3_client(self):
        """The connection's S3 client, forced to SigV4: only SigV4 URLs carry ``X-Amz-Expires`` and work in
        every region (boto's default for presigning can still be SigV2). One client, thread-safe."""
        with self._lock:
            if self._s3 is None:
                from botocore.config import Config

                hook = storage.s3_hook(self.aws_conn_id)
                v4 = Config(signature_version="s3v4")
                base = getattr(hook, "config", None)
                self._s3 = hook.get_client_type(config=base.merge(v4) if base is not None else v4)
            return self._s3

    @staticmethod
    def supports(uri: str) -> bool:
        return "://" in uri and not storage.is_local(uri) and storage.scheme_of(uri) not in ("http", "https", "file")

    def header(self, uri: str, n: int = HEADER_BYTES) -> bytes | None:
        """The first ``n`` bytes of an ``s3://`` object (one ranged GET), for a token estimate from the image
        header without downloading the image; None for other stores (the caller counts the maximum)."""
        if storage.scheme_of(uri) not in ("s3", "s3a"):
            return None
        bucket, key = storage.split_s3(uri)
        return self._s3_client().get_object(Bucket=bucket, Key=key, Range=f"bytes=0-{int(n) - 1}")["Body"].read()

    def url(self, uri: str) -> str | None:
        """A presigned URL for ``uri``, or None when its store cannot sign (the caller sends it inline)."""
        scheme = storage.scheme_of(uri)
        if scheme in ("s3", "s3a"):
            bucket, key = storage.split_s3(uri)
            return self._s3_client().generate_presigned_url(
                "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=self.expires_in)
        if scheme in self._unsignable:
            return None
        try:
            path = storage.object_path(uri)
            return path.fs.sign(urlparse(uri).netloc + urlparse(uri).path, expiration=self.expires_in)
        except (NotImplementedError, ImportError, AttributeError) as exc:
            self._unsignable.add(scheme)
            log.warning("%s:// objects cannot be presigned here (%s); they are sent inline", scheme, exc)
            return None
