"""Progress lines for long OCR runs: done/total, images per second, ETA — at most one line per interval.

Why throttled by time and not per image: a 50,000-image backlog logging every image buries the lines
that matter (failures, the summary) and slows the task log viewer to a crawl.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class Progress:
    def __init__(
        self,
        total: int,
        log: logging.Logger | logging.LoggerAdapter,
        *,
        interval: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = total
        self.log = log
        self.interval = interval
        self.clock = clock
        self.done = self.failed = self.cached = 0
        self.started = clock()
        self._last = self.started

    def update(self, *, ok: bool, cached: bool = False) -> None:
        self.done += 1
        self.failed += 0 if ok else 1
        self.cached += 1 if cached else 0
        now = self.clock()
        if now - self._last >= self.interval or self.done == self.total:
            self._last = now
            self.log.info("%s", self.line(now))

    @property
    def rate(self) -> float:
        elapsed = self.clock() - self.started
        return self.done / elapsed if elapsed > 0 else 0.0

    def line(self, now: float | None = None) -> str:
        now = self.clock() if now is None else now
        elapsed = max(now - self.started, 1e-9)
        rate = self.done / elapsed
        remaining = self.total - self.done
        eta = f"{remaining / rate:,.0f}s" if rate > 0 and remaining else ("0s" if not remaining else "?")
        pct = 100.0 * self.done / self.total if self.total else 100.0
        return (
            f"OCR progress: {self.done}/{self.total} ({pct:.0f}%), {self.failed} failed, {self.cached} cached, "
            f"{rate:.2f} images/s, elapsed {elapsed:,.0f}s, ETA {eta}"
        )
