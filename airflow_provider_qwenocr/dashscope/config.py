"""Client configuration: where to send requests and with which key. No Airflow import.

Why one object: the native API (``/api/v1``), the OpenAI-compatible API (``/compatible-mode/v1``) and
the Batch API all derive from one base URL root, and every call passes it explicitly — the dashscope
SDK's ``base_http_api_url`` is process-global, so two connections in one worker would otherwise clobber
each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from airflow_provider_qwenocr.ocr.models import DEFAULT_MODEL, DEFAULT_REGION, REGION_ENDPOINTS


@dataclass(frozen=True)
class ClientConfig:
    api_key: str = field(repr=False)
    base_url: str | None = None  # root, e.g. "http://127.0.0.1:8765"; None → the region's endpoint
    region: str = DEFAULT_REGION
    workspace_id: str | None = None
    default_model: str = DEFAULT_MODEL
    timeout: float = 120.0
    rpm: int | None = None  # client-side request limit; None → the model's documented RPM
    tpm: int | None = None  # client-side token limit; None → the model's documented TPM
    max_retries: int = 8
    max_retry_seconds: float = 600.0

    def __post_init__(self) -> None:
        if not self.api_key:
            raise ValueError("no DashScope API key: set the connection's password (API Key)")
        if self.base_url is None and self.region not in REGION_ENDPOINTS:
            regions = ", ".join(REGION_ENDPOINTS)
            raise ValueError(f"unknown region {self.region!r}; expected one of {regions}, or set a base URL")

    @property
    def root(self) -> str:
        return (self.base_url or REGION_ENDPOINTS[self.region]).rstrip("/")

    @property
    def custom_endpoint(self) -> bool:
        return self.base_url is not None

    @property
    def native_base(self) -> str:
        return f"{self.root}/api/v1"

    @property
    def compatible_base(self) -> str:
        return f"{self.root}/compatible-mode/v1"

    def with_(self, **changes) -> ClientConfig:
        return replace(self, **changes)


def normalise_root(host: str | None) -> str | None:
    """Accept a bare root, or a root with the native/compatible suffix pasted from the docs."""
    if not host:
        return None
    host = host.strip().rstrip("/")
    if "://" not in host:
        host = "https://" + host
    for suffix in ("/api/v1", "/compatible-mode/v1"):
        if host.endswith(suffix):
            host = host[: -len(suffix)]
    return host
