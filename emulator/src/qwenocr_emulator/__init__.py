"""qwenocr-emulator: an offline DashScope (Qwen-VL-OCR) for tests, demos and benchmarks.

Why it exists: the real service is paid, rate-limited and unreachable from CI. The emulator speaks the same
HTTP (native multimodal-generation incl. SSE, OpenAI-compatible chat completions and Batch, the SDK's
file:// upload path, the native files upload) and answers with real OCR (rapidocr), so a client, both
official SDKs and example pipelines run end to end on loopback. Fault knobs (latency, RPM/TPM limits,
random 429/500, timeouts, content-inspection failures, billing/free-tier account states) make retry and
throughput behaviour testable.

Why a separate distribution: it is a second implementation of the documented service. Its model table,
token grid (``smart_resize``), fixed prompts, box geometry and input checks are written from the public
documentation and import nothing from ``airflow_provider_qwenocr`` — so a client checked against it is
checked against the documentation, not against itself. Run it with ``qwenocr-emulator --port 8765``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:  # pragma: no cover
    from qwenocr_emulator.config import EmulatorConfig
    from qwenocr_emulator.server import EmulatorServer

__all__ = ["EmulatorServer", "EmulatorConfig", "__version__"]


def __getattr__(name: str) -> Any:
    # Lazy: importing the package must not pull FastAPI/uvicorn/onnxruntime in.
    if name == "EmulatorServer":
        from qwenocr_emulator.server import EmulatorServer

        return EmulatorServer
    if name == "EmulatorConfig":
        from qwenocr_emulator.config import EmulatorConfig

        return EmulatorConfig
    raise AttributeError(name)
