"""bench.rss.peak_rss_kb: a child's peak is its own, not the peak of the process that started it.

Why: ``ru_maxrss`` of a child started by ``subprocess`` also holds the parent's high-water mark on Linux
(the hostile-set memory test read 1.7 GB in the full suite — the pytest process's peak — and ~1.06 GB alone).
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
_CHILD = """
import json, resource, sys
from bench.rss import peak_rss_kb
buf = None
if int(sys.argv[1]):
    buf = bytearray(int(sys.argv[1]) * 1024 * 1024)
    for i in range(0, len(buf), 4096):
        buf[i] = 1  # touch every page so it is resident
print(json.dumps({"peak_kb": peak_rss_kb(), "ru_maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def _child(alloc_mb: int) -> dict:
    out = subprocess.run([sys.executable, "-c", _CHILD, str(alloc_mb)], cwd=REPO, capture_output=True,
                         text=True, timeout=120, check=True)
    return json.loads(out.stdout)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="VmHWM needs Linux /proc")
def test_child_peak_is_its_own_not_the_parents():
    big = bytearray(400 * 1024 * 1024)  # grow this (parent) process's high-water mark past 400 MB
    for i in range(0, len(big), 4096):
        big[i] = 1
    del big
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss >= 400 * 1024
    idle, busy = _child(0), _child(200)
    assert idle["peak_kb"] < 100 * 1024, idle  # an interpreter that allocated nothing
    assert 200 * 1024 <= busy["peak_kb"] < 350 * 1024, busy  # ... and one that touched 200 MB sees them
