"""systemd's watchdog: `WATCHDOG=1` at a third of `WatchdogSec=`, only while the daemon is healthy.

The pings come from a task on the event loop, so a blocked loop stops them by itself. The other parts that
can hang without blocking the loop are asked each tick (`checks`): the capture thread (an ALSA read that
never returns) and the session store (a write stuck on a dying SD card). A check answers None (healthy) or
one line saying what is wrong; while any answers, no ping goes, and systemd restarts the service once
`WatchdogSec=` has passed without one. Each problem is logged once, when the pings stop for it.

systemd arms the watchdog only once start-up completed (READY=1, which waits for audio to flow). Before
that, each healthy tick extends the start timeout instead (`EXTEND_TIMEOUT_USEC`, by the watchdog's own
timeout): a daemon waiting for a USB mic stays `activating` for as long as it takes, and one that hangs
while starting still fails its start and is restarted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from .notify import Notifier

log = logging.getLogger(__name__)

Check = Callable[[], str | None]
"""A health check: None when healthy, else one line saying what is wrong."""

CAPTURE_STALL_S = 10.0
"""The capture thread counts as stuck when it has not come round its loop for this long (each round is one
read of a period, or one wait between attempts to open the device, at most `audio.reopen_max_s`)."""

STORE_STALL_S = 20.0
"""A session write that has not returned for this long means the flash hangs (a slow SD card's fsync takes
a second or two; twenty is a card that stopped answering)."""


class Beating(Protocol):
    """What the capture check reads: `heartbeat` (monotonic time the reader thread last came round its
    loop) and `ended` (it finished: bounded input, or stopped)."""

    @property
    def heartbeat(self) -> float: ...

    @property
    def ended(self) -> bool: ...


def capture_check(
    capture: Beating, stall_s: float = CAPTURE_STALL_S, clock: Callable[[], float] = time.monotonic
) -> Check:
    def check() -> str | None:
        if capture.ended:
            return None
        age = clock() - capture.heartbeat
        return f"the capture thread has been stuck for {age:.0f} s" if age > stall_s else None

    return check


def store_check(
    write_started: Callable[[], float | None],
    stall_s: float = STORE_STALL_S,
    clock: Callable[[], float] = time.monotonic,
) -> Check:
    """`write_started()`: when the session write in progress began (monotonic), or None (none is)."""

    def check() -> str | None:
        began = write_started()
        if began is None:
            return None
        age = clock() - began
        return f"a session write has not returned for {age:.0f} s" if age > stall_s else None

    return check


class Watchdog:
    """The service (`daemon/voice.py`'s `Service`) that pings while every check passes."""

    def __init__(
        self,
        notifier: Notifier,
        checks: Sequence[Check] = (),
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        started: Callable[[], bool] = lambda: True,
    ) -> None:
        self._notifier = notifier
        self._checks = list(checks)
        self._started = started  # READY=1 went: from then on the watchdog itself is armed
        self._sleep = sleep
        self.pings = 0
        self.withheld: str | None = None
        """Why the last tick sent no ping, or None."""

    def tick(self) -> bool:
        """One round: ping if healthy; True when a ping went."""
        problems = [p for p in (check() for check in self._checks) if p]
        if problems:
            why = "; ".join(problems)
            if self.withheld is None:
                log.error("watchdog: no more pings, systemd will restart the daemon: %s", why)
            self.withheld = why
            return False
        if self.withheld is not None:
            log.warning("watchdog: healthy again; pinging")
            self.withheld = None
        self.pings += 1
        if not self._started() and self._notifier.watchdog_s is not None:
            usec = round(self._notifier.watchdog_s * 3 * 1e6)  # the watchdog's timeout (pings go at a third)
            return self._notifier.send("WATCHDOG=1", f"EXTEND_TIMEOUT_USEC={usec}")
        return self._notifier.send("WATCHDOG=1")

    async def run(self) -> None:
        interval = self._notifier.watchdog_s
        if interval is None:
            return  # no watchdog asked for: nothing to do, ever (the loop ignores a service that returns)
        self.tick()
        while True:
            await self._sleep(interval)
            self.tick()
