"""The clock drift measure (`edgevoice.frontend.drift`) on a linear filter whose response the test sets: an echo
path sliding at a known rate against the far end's timeline, as a mic's clock off the speaker's makes it. The
rooms in tests/test_echo.py and tests/test_linear.py run it inside the canceller."""

from __future__ import annotations

import numpy as np
import pytest

from edgevoice.frontend.drift import DEADBAND, LOCKED, MEASURE_S, ClockDrift
from edgevoice.frontend.linear import LinearEcho
from edgevoice.pcm import RATE

FRAME = 480


def converged(erle_db: float = 30.0) -> LinearEcho:
    lin = LinearEcho(FRAME)
    lin.delay_found = True
    lin._pmic, lin._pres = 1.0, 10 ** (-erle_db / 10)
    return lin


def place(lin: LinearEcho, at: float) -> None:
    """The foreground filter: the room's path (a decaying tail) with its direct path `at` samples in."""
    n = lin.nfft
    w = 2 * np.pi * np.arange(n // 2 + 1) / n
    tail = np.fft.rfft(np.exp(-np.arange(64) / 8.0) * np.cos(np.arange(64)), n)
    lin.foreground[:] = tail * np.exp(-1j * w * at)


def run(drift: ClockDrift, true_ratio: float, seconds: float, at: float = 40.0, epoch: int = 1) -> float:
    """The path slides by (ratio - true_ratio) a captured sample: the reader runs ahead of the echo's source."""
    for _ in range(round(seconds * RATE / FRAME)):
        at += FRAME * (drift.ratio - true_ratio)
        place(drift.linear, at)
        drift(FRAME, True, epoch)
    return at


@pytest.mark.parametrize("ppm", [80.0, -45.0, 200.0])
def test_a_drift_is_measured_and_the_read_rate_settles_on_it(ppm: float) -> None:
    drift = ClockDrift(converged())
    true_ratio = 1 / (1 + ppm * 1e-6)  # a mic this much fast takes the far end slower
    run(drift, true_ratio, 6.0)
    assert drift.measured[0] * 1e6 == pytest.approx(ppm, rel=0.05)  # a filter that tracks at once: exact
    assert abs(drift.ratio - true_ratio) < DEADBAND  # what is left under it, the filter follows
    assert drift.locked


def test_still_clocks_leave_the_far_end_on_whole_samples() -> None:
    drift = ClockDrift(converged())
    run(drift, 1.0, 5.0)
    assert drift.ratio == 1.0 and drift.locked and len(drift.measured) >= 5


def test_once_settled_a_jump_of_the_path_moves_the_rate_by_little() -> None:
    """The device moved: the filter relearns a path 3 samples later within one look. That is no clock."""
    drift = ClockDrift(converged())
    at = run(drift, 1.0, 3.0)
    assert drift.locked
    run(drift, 1.0, MEASURE_S + 0.1, at=at + 3.0)
    assert abs(drift.ratio - 1.0) <= LOCKED


def test_no_measure_from_a_filter_that_does_not_cancel_or_across_a_jump_of_the_timeline() -> None:
    weak = ClockDrift(converged(erle_db=6.0))
    run(weak, 1 / (1 + 80e-6), 3.0)
    assert weak.measured == [] and weak.ratio == 1.0
    jumped = ClockDrift(converged())
    at = 40.0
    for epoch in range(1, 7):  # the far end re-anchored at every look: no two looks share a timeline
        at = run(jumped, 1 / (1 + 80e-6), MEASURE_S, at=at, epoch=epoch)
    assert jumped.measured == []
