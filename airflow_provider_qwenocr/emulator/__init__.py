"""An offline DashScope (Qwen-VL-OCR) for tests, demos and benchmarks.

Why it exists: the real service is paid, rate-limited and unreachable from CI. The emulator speaks the same
HTTP (native multimodal-generation incl. SSE, OpenAI-compatible chat completions, the SDK's file:// upload
path, the native files upload) and answers with real OCR (rapidocr), so the provider, both official SDKs
and the example DAGs run end to end on loopback. Fault knobs (latency, RPM/TPM limits, random 429/500,
timeouts, content-inspection failures) make retry and throughput behaviour testable.

It imports only ``airflow_provider_qwenocr.ocr`` (never Airflow, never our dashscope/ client), so it can
run as a stand-alone process: ``python -m airflow_provider_qwenocr.emulator --port 8765``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from airflow_provider_qwenocr.emulator.config import EmulatorConfig
    from airflow_provider_qwenocr.emulator.server import EmulatorServer

__all__ = ["EmulatorServer", "EmulatorConfig"]


def __getattr__(name: str) -> Any:
    # Lazy: importing the package must not pull FastAPI/uvicorn/onnxruntime in.
    if name == "EmulatorServer":
        from airflow_provider_qwenocr.emulator.server import EmulatorServer

        return EmulatorServer
    if name == "EmulatorConfig":
        from airflow_provider_qwenocr.emulator.config import EmulatorConfig

        return EmulatorConfig
    raise AttributeError(name)
