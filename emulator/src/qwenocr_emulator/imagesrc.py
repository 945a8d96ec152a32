"""Turn an image reference from a request into bytes, the way the service would — within loopback.

Accepted: ``data:<mime>;base64,...``; ``oss://<key>`` uploaded earlier through the SDK's getPolicy + OSS
POST path (native requests must then carry ``X-DashScope-OssResourceResolve: enable``, as the SDK does);
``http(s)://`` URLs on loopback hosts only (127.0.0.1, ::1, localhost; TLS verification off — test servers
use self-signed certificates). Any other host fails with 400 InvalidParameter "Failed to download
multimodal content": this machine has no internet, and the emulator must never reach out.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlparse

from qwenocr_emulator.imaging import ImageRefused, Payload, check_bytes, decode_data_url
from qwenocr_emulator.state import ApiError, EmulatorState, invalid_parameter

LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


@dataclass
class ImageRef:
    """One image content item: where it comes from plus its per-image options."""

    url: str
    min_pixels: int | None = None
    max_pixels: int | None = None
    enable_rotate: bool = False


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def download_error(url: str, why: str) -> ApiError:
    return invalid_parameter(f"Failed to download multimodal content: {url[:200]} ({why})")


def fetch_loopback(url: str, max_bytes: int, *, what: str = "image") -> bytes:
    import httpx

    host = urlparse(url).hostname
    if not is_loopback(host):
        raise download_error(url, "the emulator only downloads from loopback hosts; this machine has no internet")
    try:
        with httpx.Client(verify=False, timeout=10.0, follow_redirects=False, trust_env=False) as client:
            resp = client.get(url)
    except httpx.HTTPError as exc:
        raise download_error(url, f"{type(exc).__name__}: {exc}") from exc
    if resp.status_code != 200:
        raise download_error(url, f"HTTP {resp.status_code}")
    if len(resp.content) > max_bytes:
        raise invalid_parameter(f"The {what} at {url[:200]} is {len(resp.content)} bytes; the limit is {max_bytes}.")
    return resp.content


def load_bytes(ref: ImageRef, state: EmulatorState, *, oss_resolve: bool, limit: int) -> tuple[Payload, str]:
    """(payload, name) for ``ref``, at most ``limit`` bytes; raises ApiError 400 for anything the service refuses."""
    data, name = _load(ref, state, oss_resolve=oss_resolve, limit=limit)
    data = data if isinstance(data, Payload) else Payload(data)
    try:
        check_bytes(data, limit)
    except ImageRefused as exc:
        raise invalid_parameter(str(exc)) from exc
    return data, name


def _load(ref: ImageRef, state: EmulatorState, *, oss_resolve: bool, limit: int) -> tuple[bytes | Payload, str]:
    url = ref.url
    if not isinstance(url, str) or not url[:256].strip():
        raise invalid_parameter("The image URL is empty.")
    if not url.startswith("data:"):
        url = url.strip()
    if url.startswith("data:"):
        try:
            _mime, data = decode_data_url(url)
        except ImageRefused as exc:
            raise invalid_parameter(str(exc)) from exc
        return data, "inline"
    scheme = urlparse(url).scheme.lower()
    if scheme == "oss":
        if not oss_resolve:
            raise invalid_parameter("oss:// resources need the header X-DashScope-OssResourceResolve: enable.")
        key = url[len("oss://"):]
        data = state.oss.get(key)
        if data is None:
            raise download_error(url, "no such object in the emulator's OSS store")
        return data, key
    if scheme in ("http", "https"):
        cap = state.config.max_fetch_bytes
        return fetch_loopback(url, limit if cap is None else min(cap, limit)), url
    raise invalid_parameter(
        f"The provided URL {url[:80]!r} is not supported: send a data URL, an http(s) URL or an oss:// URL.")


def load_document(url: object, state: EmulatorState, *, oss_resolve: bool, limit: int) -> tuple[bytes, str]:
    """(bytes, name) of a Responses API ``input_file`` ``file_url``: an http(s) URL (loopback) or an ``oss://``
    temporary upload, at most ``limit`` bytes. Inline (``data:``) documents are refused: the documentation
    shows ``file_url`` only, and inline PDF data is unconfirmed (reference §10)."""
    if not isinstance(url, str) or not url.strip():
        raise invalid_parameter("input_file needs a non-empty file_url.")
    url = url.strip()
    scheme = urlparse(url).scheme.lower()
    if scheme == "oss":
        data, name = _load(ImageRef(url), state, oss_resolve=oss_resolve, limit=limit)
    elif scheme in ("http", "https"):
        cap = state.config.max_fetch_bytes
        data, name = fetch_loopback(url, limit if cap is None else min(cap, limit), what="file"), url
    else:
        raise invalid_parameter(f"input_file.file_url {url[:80]!r} is not supported: send an http(s) URL or an "
                                "oss:// URL from the temporary upload.")
    data = data.full() if isinstance(data, Payload) else data
    if len(data) > limit:
        raise invalid_parameter(f"The file {name[:200]} is {len(data)} bytes; the limit is {limit // (1024 * 1024)} MB.")
    return data, name
