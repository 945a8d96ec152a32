"""Peak resident memory of *this* process image, for the memory benchmarks and the issue-9 memory test.

Why not ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` alone: on Linux that high-water mark survives
``execve`` — the kernel folds the replaced address space's peak into it, and ``subprocess`` starts
children with ``vfork``, so the replaced address space is the *parent's*. A "fresh child process" started
from a 1.7 GB pytest process therefore reports ≥ 1.7 GB whatever it did itself. ``VmHWM`` in
``/proc/self/status`` is the peak of the current address space only, i.e. of what this program did
since its exec. Where there is no ``/proc`` (macOS), ``ru_maxrss`` is the fallback (bytes there, KiB on Linux).
"""

from __future__ import annotations

import resource
import sys


def peak_rss_kb() -> int:
    """Peak RSS in KiB of the current process image (``VmHWM``; ``ru_maxrss`` where /proc is missing)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak
