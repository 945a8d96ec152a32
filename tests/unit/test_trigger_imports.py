"""The triggerer loads no OpenCV, numpy or run loop (issue 17 item 3).

Every trigger of every provider shares the triggerer's event loop and memory: a top-level import of the
image stack (0.13–0.20 s of ``cv2``/``numpy``, tens of MB) in a module the trigger pulls in is paid by
all of them. Checked in fresh interpreters, so nothing this test session imported hides a regression.
"""

from __future__ import annotations

import re
import subprocess
import sys

HEAVY = re.compile(r"\b(cv2|numpy)\b|airflow_provider_qwenocr\.runs\.")


def test_importing_the_trigger_loads_no_cv2_numpy_or_run_module():
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", "import airflow_provider_qwenocr.triggers.batch"],
                         capture_output=True, text=True, timeout=180, check=True)
    loaded = [line.rsplit("|", 1)[-1].strip() for line in out.stderr.splitlines() if line.startswith("import time:")]
    assert "airflow_provider_qwenocr.triggers.batch" in loaded  # the measurement saw the import
    assert [m for m in loaded if HEAVY.search(m)] == []


def test_the_hook_the_trigger_builds_loads_no_cv2_numpy_or_run_loop():
    # what a poll and a cancel import in the triggerer: the hook module and the batch client's helpers
    code = ("import sys\n"
            "from airflow_provider_qwenocr.triggers.batch import QwenOcrBatchTrigger\n"
            "from airflow_provider_qwenocr.hooks.qwenocr import QwenOcrHook\n"
            "from airflow_provider_qwenocr.dashscope.batch import cancel_batches, compact_batch\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('cv2', 'numpy')\n"
            "             or m in ('airflow_provider_qwenocr.runs.batch', 'airflow_provider_qwenocr.runs.realtime')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
