"""Progress lines: throttled by time, with rate and ETA computed from the counts."""

from __future__ import annotations

import logging


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


class Sink(logging.Logger):
    def __init__(self):
        super().__init__("sink")
        self.lines: list[str] = []

    def info(self, fmt, *args, **kw):
        self.lines.append(fmt % args)


def test_progress_rate_eta_and_throttling():
    from airflow_provider_qwenocr.runs.realtime import Progress

    clock, sink = Clock(), Sink()
    p = Progress(10, sink, interval=5.0, clock=clock)
    for _ in range(4):
        clock.t += 1.0
        p.update(ok=True)
    assert sink.lines == []  # 4 s < interval: silent
    clock.t += 1.0
    p.update(ok=False, cached=False)
    assert len(sink.lines) == 1
    assert sink.lines[0].startswith("OCR progress: 5/10 (50%), 1 failed, 0 cached, 1.00 images/s")
    assert "ETA 5s" in sink.lines[0]
    for _ in range(5):
        p.update(ok=True, cached=True)  # the last one always logs, even inside the interval
    assert len(sink.lines) == 2 and "10/10 (100%)" in sink.lines[1] and "5 cached" in sink.lines[1]
