"""One capped exponential backoff, for everything that retries: audio devices, the model connection, (later) sync.

`Backoff` is the arithmetic: each failure waits longer (times `factor`, up to `max_s`), optionally shortened by
a random fraction so a fleet of speakers that lost the same server does not come back in step. `Outage` is the
device edge's use of it: one log line when a device goes away, one when it is back, nothing in between.

Clock and random are parameters, so tests drive both step by step without sleeping. Nothing of ours is imported.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable

Clock = Callable[[], float]


class Backoff:
    """Delays between retries: `first_s`, then times `factor` each failure, never above `max_s`.

    `jitter` (0..1) takes up to that fraction off each delay at random: a delay lies in
    [base * (1 - jitter), base], so `max_s` stays a true cap. `reset_after_s`: once `succeeded()` was
    called and that long has passed by `clock`, the next failure starts again from `first_s` (a link that
    stayed up a while and then dropped is a new outage, not the next step of the old one).
    """

    def __init__(
        self,
        first_s: float,
        max_s: float,
        *,
        factor: float = 2.0,
        jitter: float = 0.0,
        reset_after_s: float | None = None,
        clock: Clock = time.monotonic,
        rand: Callable[[], float] = random.random,
    ) -> None:
        if not 0 <= first_s <= max_s:
            raise ValueError(f"backoff: need 0 <= first_s <= max_s (got {first_s}, {max_s})")
        if factor < 1:
            raise ValueError(f"backoff: factor must be at least 1 (got {factor})")
        if not 0 <= jitter <= 1:
            raise ValueError(f"backoff: jitter must be within 0..1 (got {jitter})")
        self.first_s = first_s
        self.max_s = max_s
        self._factor = factor
        self._jitter = jitter
        self._reset_after_s = reset_after_s
        self._clock = clock
        self._rand = rand
        self._next = first_s
        self._up_since: float | None = None
        self.attempts = 0
        """Failures since the last reset."""

    def failed(self) -> float:
        """Note a failure; returns how long to wait before the next try."""
        if (
            self._up_since is not None
            and self._reset_after_s is not None
            and self._clock() - self._up_since >= self._reset_after_s
        ):
            self.reset()
        self._up_since = None
        base = self._next
        self._next = min(base * self._factor, self.max_s)
        self.attempts += 1
        return base * (1.0 - self._jitter * self._rand())

    def succeeded(self) -> None:
        """The thing works again: from now on, `reset_after_s` of it working resets the delays."""
        self._up_since = self._clock()

    def reset(self) -> None:
        """Start again from `first_s`."""
        self._next = self.first_s
        self.attempts = 0


FIRST_BACKOFF_S = 0.05
"""A device's first retry: short, since a USB card that re-enumerates is usually back within a second."""

STABLE_S = 0.5
"""Work (seconds of audio) that must go through without error before an outage counts as over. A device
can open and then fail at once (alsa-lib 1.2.8's file PCM opens even when its output file cannot be
created, and then fails the first write that reaches the file); without this it would log every cycle."""


class Outage:
    """A resource that comes and goes (an ALSA device): logged once when it goes, once when it is back.

    `failed()` returns the wait before the next try (no jitter: a device is local, nothing to spread out);
    `worked(s)` counts seconds of work done without error, and after `stable_s` of it the outage is over,
    logged with its length, and the delays start again from the first.
    """

    def __init__(
        self,
        logger: logging.Logger,
        name: str,
        max_s: float,
        *,
        first_s: float = FIRST_BACKOFF_S,
        stable_s: float = STABLE_S,
        clock: Clock = time.monotonic,
    ) -> None:
        self._log = logger
        self._name = name
        self._stable_s = stable_s
        self._clock = clock
        self.backoff = Backoff(min(first_s, max_s), max_s, clock=clock)
        self._since: float | None = None
        self._good_s = 0.0

    @property
    def down(self) -> bool:
        return self._since is not None

    def failed(self, err: Exception, *, opening: bool) -> float:
        """Note a failed open or I/O; returns how long to wait before the next try."""
        self._good_s = 0.0
        if self._since is None:
            self._since = self._clock()
            how = "unavailable" if opening else "failed"
            self._log.warning("%s %s (%s); retrying", self._name, how, err)
        return self.backoff.failed()

    def worked(self, seconds: float) -> None:
        """Note `seconds` of work (audio moved) done without error."""
        if self._since is None:
            return
        self._good_s += seconds
        if self._good_s >= self._stable_s:
            self._log.info("%s is back after %.1f s", self._name, self._clock() - self._since)
            self._since = None
            self._good_s = 0.0
            self.backoff.reset()
