"""The one capped backoff (edgevoice.backoff), driven with a fake clock and fixed random draws: no sleeping."""

from __future__ import annotations

import logging
import random

import pytest

from edgevoice.backoff import Backoff, Outage


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_doubles_up_to_the_cap() -> None:
    b = Backoff(0.05, 1.0)
    assert [round(b.failed(), 6) for _ in range(8)] == [0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0]
    assert b.attempts == 8
    b.reset()
    assert b.failed() == 0.05 and b.attempts == 1


def test_jitter_stays_within_its_bounds_and_under_the_cap() -> None:
    """A delay lies in [base * (1 - jitter), base]: jitter spreads a fleet out and never lifts the cap."""
    rng = random.Random(7)
    b = Backoff(1.0, 30.0, jitter=0.5, rand=rng.random)
    bases = [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    for _ in range(50):
        b.reset()
        for base in bases:
            d = b.failed()
            assert base * 0.5 <= d <= base
    # The extremes of the random draw give the bounds exactly.
    assert Backoff(1.0, 30.0, jitter=0.5, rand=lambda: 0.0).failed() == 1.0
    assert Backoff(1.0, 30.0, jitter=0.5, rand=lambda: 1.0).failed() == 0.5


def test_a_long_success_starts_the_delays_again() -> None:
    clock = FakeClock()
    b = Backoff(1.0, 30.0, reset_after_s=60.0, clock=clock)
    assert [b.failed() for _ in range(3)] == [1.0, 2.0, 4.0]
    b.succeeded()
    clock.now += 59.0  # up, but not for long: the same outage goes on
    assert b.failed() == 8.0
    b.succeeded()
    clock.now += 60.0
    assert b.failed() == 1.0 and b.attempts == 1
    clock.now += 600.0  # no success in between: time alone resets nothing
    assert b.failed() == 2.0


@pytest.mark.parametrize(
    "args, kwargs",
    [((2.0, 1.0), {}), ((-1.0, 1.0), {}), ((1.0, 2.0), {"jitter": 1.5}), ((1.0, 2.0), {"factor": 0.5})],
)
def test_bad_parameters_are_refused(args: tuple[float, float], kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="backoff"):
        Backoff(*args, **kwargs)


def test_outage_logs_once_each_way(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="test.outage")
    clock = FakeClock()
    o = Outage(logging.getLogger("test.outage"), "capture device mic", 1.0, clock=clock)
    assert not o.down
    delays = [o.failed(OSError("No such file"), opening=True) for _ in range(7)]
    assert delays == pytest.approx([0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0])  # no jitter for a local device
    assert o.down
    o.worked(0.3)  # audio moved, but not long enough: a file PCM can open and fail at once
    o.failed(OSError("Broken pipe"), opening=False)
    clock.now += 2.5
    o.worked(0.3)
    assert o.down
    o.worked(0.3)
    assert not o.down
    messages = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert messages == [
        (logging.WARNING, "capture device mic unavailable (No such file); retrying"),
        (logging.INFO, "capture device mic is back after 2.5 s"),
    ]
    # Back means the next outage starts with the short delay, and logs again.
    assert o.failed(OSError("gone"), opening=False) == 0.05
    assert caplog.records[-1].getMessage() == "capture device mic failed (gone); retrying"


def test_outage_first_delay_never_exceeds_the_cap() -> None:
    o = Outage(logging.getLogger("test.outage"), "playback device spk", 0.01)
    assert o.failed(OSError("x"), opening=True) == 0.01
