"""The blocking acquire checks the bucket at the clock's current time, even when the host oversleeps.

A fake clock and a sleep that overshoots every requested wait (what a loaded host does) make it exact.
pyrate-limiter's own blocking loop re-checks at the time it *planned* to wake (its item's timestamp plus
the sleep it asked for), which lags the clock by the oversleep; across threads that lag lets GCRA grant
slots already past, i.e. bursts beyond the pace (see ``RateLimiter._take``). Ours checks at ``now``.
"""

from __future__ import annotations

from pyrate_limiter import GCRA, AbstractClock, Duration, InMemoryStateStore, Rate, StateBucket

from airflow_provider_qwenocr.dashscope.limits import RateLimiter


class FakeClock(AbstractClock):
    """Milliseconds, advanced only by the fake sleep."""

    def __init__(self) -> None:
        self.ms = 1_000_000

    def now(self) -> int:
        return self.ms


class RecordingStore(InMemoryStateStore):
    """Records, for every check, how far the time it was asked about lags the clock."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__()
        self.clock = clock
        self.lags: list[int] = []

    def check(self, algorithm, rates, now, weight):
        self.lags.append(self.clock.ms - now)
        return super().check(algorithm, rates, now, weight)


def _limiter(clock: FakeClock, oversleep_ms: int, per_minute: int = 60, store=None) -> tuple[RateLimiter, list[float]]:
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        clock.ms += int(seconds * 1000) + oversleep_ms  # the host wakes the thread late

    bucket = StateBucket([Rate(per_minute, Duration.MINUTE, burst=1)], algorithm=GCRA(),
                         store=store or InMemoryStateStore(), clock=clock)
    return RateLimiter(None, None, request_bucket=bucket, sleep=sleep), sleeps


def test_grants_are_spaced_by_the_emission_interval_in_clock_time_despite_oversleep():
    clock = FakeClock()
    limiter, sleeps = _limiter(clock, oversleep_ms=700)  # 0.7 s late on every 1-s wait
    grants = []
    for _ in range(10):
        limiter.acquire()
        grants.append(clock.ms)
    gaps = [b - a for a, b in zip(grants, grants[1:], strict=False)]
    assert min(gaps) >= 1000, gaps  # 60/min with a burst of one: never two grants within a second
    assert len(sleeps) >= 9  # it did wait between grants


def test_every_check_is_made_at_the_current_time_not_the_planned_wake_up():
    clock = FakeClock()
    store = RecordingStore(clock)
    limiter, sleeps = _limiter(clock, oversleep_ms=700, store=store)
    for _ in range(5):
        limiter.acquire()
    assert sleeps and len(store.lags) > 5  # it waited and re-checked
    assert store.lags == [0] * len(store.lags)  # pyrate-limiter's own loop: 700 on each re-check


def test_no_oversleep_means_exact_pace():
    clock = FakeClock()
    limiter, _ = _limiter(clock, oversleep_ms=0)
    grants = []
    for _ in range(6):
        limiter.acquire()
        grants.append(clock.ms)
    assert [b - a for a, b in zip(grants, grants[1:], strict=False)] == [1000] * 5
    assert limiter.acquired == 6
