"""``EmulatorServer``: the emulator in a background thread of the current process (tests, bench, demo).

Why a thread and not a subprocess: tests get ``stats()`` and ``reset_stats()`` directly and start in
well under a second; port 0 picks a free port and ``base_url`` reports the real one. ``start()`` returns
only once ``GET /health`` answers 200, so callers never race the bind.
"""

from __future__ import annotations

import threading
import time
import urllib.request

from qwenocr_emulator.config import EmulatorConfig
from qwenocr_emulator.state import EmulatorState

START_TIMEOUT_S = 30.0


class EmulatorServer:
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
        engine: str = "rapidocr",
        latency_ms: float = 0,
        rpm: int | None = None,
        tpm: int | None = None,
        fail_rate_429: float = 0.0,
        fail_rate_500: float = 0.0,
        fail_rate_timeout: float = 0.0,
        seed: int | None = None,
        batch_seconds: float = 2.0,
        batch_outcome: str = "complete",
        *,
        timeout_hold_seconds: float = 30.0,
        warm_up: bool = False,
        log_level: str = "warning",
        **extra,
    ):
        self.host = host
        self.port = port
        self.config = EmulatorConfig(
            api_key=api_key, engine=engine, latency_ms=latency_ms, rpm=rpm, tpm=tpm,
            fail_rate_429=fail_rate_429, fail_rate_500=fail_rate_500, fail_rate_timeout=fail_rate_timeout,
            timeout_hold_seconds=timeout_hold_seconds, seed=seed, batch_seconds=batch_seconds,
            batch_outcome=batch_outcome, **{k: v for k, v in extra.items() if k in _CONFIG_FIELDS},
        )
        unknown = set(extra) - _CONFIG_FIELDS
        if unknown:
            raise TypeError(f"unknown emulator options: {sorted(unknown)}")
        self.state = EmulatorState(self.config)
        self._warm_up = warm_up
        self._log_level = log_level
        self._server = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------------------------
    def start(self) -> EmulatorServer:
        import uvicorn

        from qwenocr_emulator.app import create_app

        if self._thread is not None:
            return self
        app = create_app(state=self.state)
        if self._warm_up:
            self.state.engine.warm_up()
        config = uvicorn.Config(app, host=self.host, port=self.port, log_level=self._log_level,
                                access_log=False, server_header=False, lifespan="off",
                                timeout_graceful_shutdown=2, timeout_keep_alive=30)
        self._server = uvicorn.Server(config)
        self._server.install_signal_handlers = lambda: None  # not the main thread
        self._thread = threading.Thread(target=self._server.run, name="qwenocr-emulator", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._server.started and self._server.servers:
                sock = self._server.servers[0].sockets[0]
                self.port = sock.getsockname()[1]
                if self._healthy():
                    return self
            if not self._thread.is_alive():
                raise RuntimeError(f"the emulator failed to start on {self.host}:{self.port}")
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"the emulator did not become healthy within {START_TIMEOUT_S:.0f} s")

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.base_url + "/health", timeout=2) as resp:  # loopback only
                return resp.status == 200
        except OSError:
            return False

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._thread = None
        self._server = None

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- introspection --------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def native_base(self) -> str:
        return self.base_url + "/api/v1"

    @property
    def compatible_base(self) -> str:
        return self.base_url + "/compatible-mode/v1"

    def stats(self) -> dict:
        return self.state.stats()

    def reset_stats(self) -> None:
        self.state.reset_stats()

    def set_account_state(self, value: str) -> None:
        """Same as ``POST /_emulator/account``: put the account into a refused state, or back to "ok"."""
        self.state.account_state = value


_CONFIG_FIELDS = {"inspection_tolerance", "inspection_marker", "max_fetch_bytes", "account_state",
                  "sse_throttling", "extra"}
