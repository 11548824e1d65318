"""The recovery figure: lag back within its pre-fault steady-state swing, measured from the heal."""

from __future__ import annotations

from harness.runner import LagMonitor, LagSample


def _monitor(lags: list[tuple[float, int]]) -> LagMonitor:
    m = LagMonitor("127.0.0.1:1", "g", "t")
    m.samples = [LagSample(t, lag, 0) for t, lag in lags]
    return m


def test_recovery_is_lag_back_within_the_steady_state_swing() -> None:
    # steady state swings 0..240 (offsets committed per checkpoint), the fault at 6 s piles up lag,
    # the heal at 10 s, back under 240 at 13 s, zero only at 20 s (after the workload stopped)
    m = _monitor([(1.0, 900), (2.0, 0), (3.5, 240), (5.0, 120), (7.0, 500), (10.0, 1400), (11.0, 1600),
                  (12.0, 700), (13.0, 200), (15.0, 240), (20.0, 0)])
    assert m.baseline(until=6.0) == 240          # the start-up sample at 1 s is outside the warm-up
    assert m.recovery_after(10.0, threshold=240) == 3.0
    assert m.recovery_after(10.0) == 10.0


def test_no_recovery_when_the_lag_never_comes_back() -> None:
    m = _monitor([(2.0, 10), (5.0, 20), (10.0, 500), (12.0, 800)])
    assert m.baseline(until=6.0) == 20
    assert m.recovery_after(10.0, threshold=20) is None
    assert _monitor([]).baseline(until=6.0) is None
