"""Test support for the batch tests: the emulator on loopback with batch counters, and small helpers.

Pure-red images fail ``DataInspectionFailed`` (the emulator's documented mechanism): ``red_png()``.
"""

from __future__ import annotations

import io
import json
import time
from typing import Any

from PIL import Image, ImageDraw

API_KEY = "sk-test-emulator"


def png(text: str, size=(200, 64), color=(255, 255, 255)) -> bytes:
    img = Image.new("RGB", size, color)
    ImageDraw.Draw(img).text((8, 24), text, fill=(0, 0, 0))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def red_png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (255, 0, 0)).save(buf, "PNG")
    return buf.getvalue()


def start_server(**knobs: Any):
    """The emulator on a free loopback port (``engine="echo"`` unless given), with batch counters."""
    from qwenocr_emulator.server import EmulatorServer

    knobs.setdefault("engine", "echo")
    srv = EmulatorServer(host="127.0.0.1", port=0, **knobs).start()
    srv.batch_creations = lambda: _count_batches(srv)  # type: ignore[attr-defined]
    srv.file_uploads = lambda: _count_uploads(srv)  # type: ignore[attr-defined]
    return srv


def _store(srv):
    state = getattr(srv, "state", None) or getattr(getattr(srv, "app", None), "state", None)
    store = getattr(state, "batch_store", None)
    if store is None:
        raise RuntimeError("cannot reach the emulator's batch store")
    return store


def _count_batches(srv) -> int:
    return len(_store(srv).batches)


def _count_uploads(srv) -> int:
    return sum(1 for f in _store(srv).files.values() if f["purpose"] == "batch")


def conn_env(base_url: str) -> str:
    return json.dumps({"conn_type": "dashscope", "password": API_KEY, "host": base_url})


def server_fixture(**knobs: Any):
    """A module-scoped ``server`` fixture: the emulator started once with ``knobs`` for the module's tests.
    Use: ``server = server_fixture(batch_seconds=0.4)``."""
    import pytest

    @pytest.fixture(scope="module")
    def server():
        srv = start_server(**knobs)
        yield srv
        srv.stop()

    return server


def conn_fixture():
    """A ``conn`` fixture: the default dashscope connection pointed at the module's ``server``; its id."""
    import pytest

    @pytest.fixture
    def conn(server, monkeypatch):
        monkeypatch.setenv("AIRFLOW_CONN_DASHSCOPE_DEFAULT", conn_env(server.base_url))
        return "dashscope_default"

    return conn


class FakeTI:
    """Records xcom_push calls the way the operator makes them."""

    def __init__(self) -> None:
        self.xcom: dict[str, Any] = {}
        self.run_id = "manual__test"

    def xcom_push(self, key: str, value: Any, **_: Any) -> None:
        self.xcom[key] = value


def wait_status(hook, batch_id: str, statuses: set[str], timeout: float = 30.0) -> dict:
    deadline = time.time() + timeout
    while True:
        batch = hook.get_batch(batch_id)
        if batch["status"] in statuses:
            return batch
        if time.time() > deadline:
            raise AssertionError(f"batch {batch_id} stuck in {batch['status']}")
        time.sleep(0.1)
