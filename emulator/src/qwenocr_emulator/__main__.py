"""``qwenocr-emulator`` / ``python -m qwenocr_emulator``: run the emulator in the foreground (demo, manual tests)."""

from __future__ import annotations

import argparse
import sys

from qwenocr_emulator.config import ACCOUNT_STATES, BATCH_OUTCOMES, ENGINES, SSE_THROTTLING

ENDPOINTS = """endpoints:
  POST /api/v1/services/aigc/multimodal-generation/generation   native OCR (ocr_options, SSE)
  POST /compatible-mode/v1/chat/completions                     OpenAI chat (fixed task prompts as text)
  POST /compatible-mode/v1/responses                            Responses API, qwen3.5-ocr: input_image,
       input_file PDFs by http(s)/oss:// URL (<= 50 pages, <= 100 MB), ocr_options + prompt, layouts per page
  GET  /api/v1/uploads?action=getPolicy + POST /emulator/oss    temporary upload -> oss:// URLs
  /compatible-mode/v1/files, /compatible-mode/v1/batches        Batch API; GET /batches takes only limit,
       after, status, create_after, create_before, ds_name, input_file_ids (else 400)
  GET /health, GET /emulator/stats, POST /emulator/reset        readiness, counters (requests per kind, pdf_pages)
images: data: URLs, oss://, and http(s) from loopback hosts only (no internet, ever)."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="qwenocr-emulator",
                                description="Offline DashScope (Qwen-VL-OCR) emulator on loopback.",
                                epilog=ENDPOINTS, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--api-key", default=None, help="accept only this key (default: any non-empty key)")
    p.add_argument("--engine", choices=ENGINES, default="rapidocr",
                   help="rapidocr = real OCR; echo = answers without recognising (load tests)")
    p.add_argument("--latency-ms", type=float, default=0.0, help="mean added latency, jitter U(0.5,1.5)")
    p.add_argument("--rpm", type=int, default=None, help="requests/min (sliding 60 s) before 429 RateQuota")
    p.add_argument("--tpm", type=int, default=None, help="tokens/min before 429 AllocationQuota")
    p.add_argument("--fail-rate-429", type=float, default=0.0)
    p.add_argument("--fail-rate-500", type=float, default=0.0)
    p.add_argument("--fail-rate-timeout", type=float, default=0.0)
    p.add_argument("--timeout-hold-seconds", type=float, default=30.0,
                   help="how long a --fail-rate-timeout request is held before the socket is dropped")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--batch-seconds", type=float, default=2.0)
    p.add_argument("--batch-outcome", choices=BATCH_OUTCOMES, default="complete")
    p.add_argument("--account-state", choices=ACCOUNT_STATES, default="ok",
                   help="refuse every call as the service refuses an account in this state "
                        "(switch at runtime: POST /_emulator/account)")
    p.add_argument("--sse-throttling", choices=SSE_THROTTLING, default="frame",
                   help="throttling of a streaming call: frame = HTTP 200 + event:error :HTTP_STATUS/429 "
                        "(the service); http = a plain HTTP 429")
    p.add_argument("--log-level", default="info")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import uvicorn

    from qwenocr_emulator.app import create_app
    from qwenocr_emulator.config import EmulatorConfig

    config = EmulatorConfig(
        api_key=args.api_key, engine=args.engine, latency_ms=args.latency_ms, rpm=args.rpm, tpm=args.tpm,
        fail_rate_429=args.fail_rate_429, fail_rate_500=args.fail_rate_500,
        fail_rate_timeout=args.fail_rate_timeout, timeout_hold_seconds=args.timeout_hold_seconds,
        seed=args.seed, batch_seconds=args.batch_seconds, batch_outcome=args.batch_outcome,
        account_state=args.account_state, sse_throttling=args.sse_throttling,
    )
    app = create_app(config)
    print(f"DashScope emulator on http://{args.host}:{args.port} (engine={args.engine}); "
          f"native /api/v1, compatible /compatible-mode/v1", file=sys.stderr, flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, access_log=False,
                server_header=False, timeout_graceful_shutdown=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
