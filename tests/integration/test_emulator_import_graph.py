"""The emulator is an independent implementation: it imports nothing from ``airflow_provider_qwenocr``.

Two checks, because each alone can miss something:
- dynamic: a fresh interpreter in which ``airflow_provider_qwenocr`` cannot be imported (a ``sys.meta_path``
  finder that raises) imports every module of ``qwenocr_emulator`` and serves native, compatible and
  Batch requests through the ASGI app (so imports done lazily inside functions run too);
- static: no module under ``emulator/`` names ``airflow_provider_qwenocr`` in an import statement or in a
  dynamic import (``importlib.import_module`` / ``__import__``).
"""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.integration

EMULATOR_SRC = pathlib.Path(__file__).resolve().parents[2] / "emulator"
FORBIDDEN = "airflow_provider_qwenocr"

PROBE = textwrap.dedent(f"""
    import asyncio, base64, importlib, io, json, pkgutil, sys

    class Blocker:
        def find_spec(self, name, path=None, target=None):
            if name == {FORBIDDEN!r} or name.startswith({FORBIDDEN!r} + "."):
                raise ImportError("blocked by the import-graph test: " + name)
            return None

    sys.meta_path.insert(0, Blocker())
    for mod in [m for m in sys.modules if m.startswith({FORBIDDEN!r})]:
        del sys.modules[mod]
    try:
        importlib.import_module({FORBIDDEN!r})
    except ImportError:
        pass
    else:
        raise SystemExit("the blocker does not work")

    import qwenocr_emulator
    names = sorted(m.name for m in pkgutil.walk_packages(qwenocr_emulator.__path__, "qwenocr_emulator."))
    for name in names:
        importlib.import_module(name)

    import httpx
    from PIL import Image
    from qwenocr_emulator.app import create_app
    from qwenocr_emulator.config import EmulatorConfig

    buf = io.BytesIO()
    Image.new("RGB", (64, 48), "white").save(buf, "PNG")
    url = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()

    async def main():
        app = create_app(EmulatorConfig(engine="echo", batch_seconds=0.1))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://e") as c:
            h = {{"Authorization": "Bearer k"}}
            native = {{"model": "qwen-vl-ocr", "input": {{"messages": [{{"role": "user", "content": [{{"image": url}}]}}]}},
                      "parameters": {{"ocr_options": {{"task": "advanced_recognition"}}}}}}
            r = await c.post("/api/v1/services/aigc/multimodal-generation/generation", json=native, headers=h)
            assert r.status_code == 200, r.text
            chat = {{"model": "qwen-vl-ocr", "messages": [{{"role": "user", "content": [
                {{"type": "image_url", "image_url": {{"url": url}}}}]}}]}}
            r = await c.post("/compatible-mode/v1/chat/completions", json=chat, headers=h)
            assert r.status_code == 200, r.text
            line = json.dumps({{"custom_id": "1", "method": "POST", "url": "/v1/chat/completions", "body": chat}})
            f = await c.post("/compatible-mode/v1/files", headers=h, files={{"file": ("a.jsonl", line.encode())}},
                             data={{"purpose": "batch"}})
            b = await c.post("/compatible-mode/v1/batches", headers=h, json={{
                "input_file_id": f.json()["id"], "endpoint": "/v1/chat/completions", "completion_window": "48h"}})
            for _ in range(200):
                b = await c.get("/compatible-mode/v1/batches/" + b.json()["id"], headers=h)
                if b.json()["status"] == "completed":
                    break
                await asyncio.sleep(0.05)
            assert b.json()["status"] == "completed", b.json()

    asyncio.run(main())
    leaked = sorted(m for m in sys.modules if m.startswith({FORBIDDEN!r}))
    print(json.dumps({{"modules": names, "leaked": leaked}}))
""")


def test_emulator_runs_where_the_provider_cannot_be_imported():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    report = __import__("json").loads(out.stdout.strip().splitlines()[-1])
    assert report["leaked"] == []
    # every module of the package was imported (the list is the package's, not a hand-kept one)
    assert {"qwenocr_emulator.app", "qwenocr_emulator.models", "qwenocr_emulator.prompts",
            "qwenocr_emulator.geometry", "qwenocr_emulator.imaging"} <= set(report["modules"])


def _imports(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name in ("import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant):
                yield str(node.args[0].value)


def test_no_module_of_the_emulator_names_the_provider():
    files = sorted(EMULATOR_SRC.rglob("*.py"))
    assert len(files) >= 15, files
    bad = {str(f.relative_to(EMULATOR_SRC)): name
           for f in files for name in _imports(ast.parse(f.read_text(encoding="utf-8")))
           if name.split(".")[0] == FORBIDDEN}
    assert bad == {}
