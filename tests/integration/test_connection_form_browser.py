"""The connection form in headless Chromium against a real Airflow 3 api-server (scripts/check_connection_form.py).

Skipped, saying what to install, where Chromium or playwright is missing or Airflow is 2.x. The checks
themselves live in the script (one place); :func:`verdict` is also tested on facts seen before the fix.
"""

from __future__ import annotations

import importlib.util
import json
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "check_connection_form.py"


def _script():
    spec = importlib.util.spec_from_file_location("check_connection_form", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_verdict_flags_what_the_old_form_did():
    # what the browser saw with the form before this change: a free-text-or-null region, every field null
    old = {"region_tag": "select", "region_selected": "", "region_options": ["cn-beijing", "ap-southeast-1",
                                                                             "us-east-1", "null"],
           "saved_extra": {"region": None, "workspace_id": None, "timeout": None}}
    failed = _script().verdict(old)
    assert any("null choice" in f for f in failed) and any("preselects" in f for f in failed)
    assert any("empty fields were stored" in f for f in failed)
    good = {"region_tag": "select", "region_selected": "cn-beijing",
            "region_options": ["cn-beijing", "ap-southeast-1", "us-east-1"], "saved_extra": {"region": "cn-beijing"}}
    assert _script().verdict(good) == []


@pytest.mark.integration
@pytest.mark.timeout(900)
def test_connection_form_in_headless_chromium(tmp_path):
    module = _script()
    try:
        module.require_airflow3()
        module.require_playwright()
        module.find_chromium()
    except module.Missing as exc:
        pytest.skip(str(exc))
    shot = tmp_path / "form.png"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--screenshot", str(shot)], capture_output=True, text=True,
                          timeout=840, cwd=REPO)
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    report = json.loads(proc.stdout)
    assert report["ok"] and report["saved_extra"] == {"region": "cn-beijing"}
    assert report["region_options"] == ["cn-beijing", "ap-southeast-1", "us-east-1"]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
