"""The emulator's knobs, one dataclass shared by the CLI, ``EmulatorServer`` and the request handlers.

Why one object: the batch plug-in (emulator/batch.py) reads ``state.config`` (batch_seconds,
batch_outcome) and the fault injector reads the rest; keeping them together keeps the CLI, the
in-process server and the docs in step.
"""

from __future__ import annotations

from dataclasses import dataclass, field

ENGINES = ("rapidocr", "echo")
BATCH_OUTCOMES = ("complete", "fail", "expire")
# "ok", or a state in which the service refuses every call (faults.ACCOUNT_ERRORS has the codes)
ACCOUNT_STATES = ("ok", "arrearage", "prepaid-overdue", "postpaid-overdue", "not-purchased", "free-tier-only")
# How throttling (quota or --fail-rate-429) meets a streaming native request: "frame" = HTTP 200 with an
# event:error frame (:HTTP_STATUS/429), as the service does; "http" = a plain HTTP 429 before the stream.
SSE_THROTTLING = ("frame", "http")


@dataclass
class EmulatorConfig:
    api_key: str | None = None  # None: any non-empty key is accepted
    engine: str = "rapidocr"  # "rapidocr" (real OCR) or "echo" (answers without recognising; load tests)
    latency_ms: float = 0.0  # mean added latency per OCR call; jittered uniformly in [0.5, 1.5] x mean
    rpm: int | None = None  # sliding 60 s window of accepted requests -> 429 Throttling.RateQuota
    tpm: int | None = None  # sliding 60 s window of input+output tokens -> 429 Throttling.AllocationQuota
    fail_rate_429: float = 0.0  # share of OCR calls answered 429 Throttling.RateQuota at random
    fail_rate_500: float = 0.0  # share answered 500 InternalError
    fail_rate_timeout: float = 0.0  # share held for timeout_hold_seconds, then the connection is dropped
    timeout_hold_seconds: float = 30.0  # "well past" a client's timeout; lower it in tests
    seed: int | None = None  # seeds latency jitter and the random faults (reproducible sequential runs)
    batch_seconds: float = 2.0  # read by the batch plug-in: how long a batch stays in progress
    batch_outcome: str = "complete"  # complete | fail | expire (batch plug-in)
    inspection_tolerance: float = 12.0  # mean-colour distance to pure red that triggers DataInspectionFailed
    inspection_marker: str = "inspection-fail"  # image names/URLs containing this fail DataInspectionFailed
    max_fetch_bytes: int | None = None  # extra cap on http(s) downloads; None = the model's image limit
    account_state: str = "ok"  # see ACCOUNT_STATES; switchable at runtime (POST /_emulator/account)
    sse_throttling: str = "frame"  # see SSE_THROTTLING
    extra: dict = field(default_factory=dict)  # free-form, for plug-ins

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, not {self.engine!r}")
        if self.batch_outcome not in BATCH_OUTCOMES:
            raise ValueError(f"batch_outcome must be one of {BATCH_OUTCOMES}, not {self.batch_outcome!r}")
        if self.account_state not in ACCOUNT_STATES:
            raise ValueError(f"account_state must be one of {ACCOUNT_STATES}, not {self.account_state!r}")
        if self.sse_throttling not in SSE_THROTTLING:
            raise ValueError(f"sse_throttling must be one of {SSE_THROTTLING}, not {self.sse_throttling!r}")
        for name in ("fail_rate_429", "fail_rate_500", "fail_rate_timeout"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], not {value!r}")
        if self.fail_rate_429 + self.fail_rate_500 + self.fail_rate_timeout > 1.0:
            raise ValueError("the fail rates add up to more than 1")
