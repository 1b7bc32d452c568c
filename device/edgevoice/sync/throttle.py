"""The bandwidth cap (`sync.max_bytes_per_s`): a token bucket shared by the upload threads."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class Throttle:
    """`take(n)` returns once n more bytes fit the rate. Bursts up to one second's worth; a body larger than
    that waits for its own size (it is sent whole). rate 0: no cap."""

    def __init__(
        self,
        bytes_per_s: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate = bytes_per_s
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens = float(bytes_per_s)
        self._at = clock()

    def take(self, n: int) -> None:
        if self.rate <= 0:
            return
        with self._lock:  # one waiter at a time, in arrival order: the cap holds across threads
            now = self._clock()
            self._tokens = min(float(self.rate), self._tokens + (now - self._at) * self.rate)
            self._at = now
            self._tokens -= n
            if self._tokens < 0:
                wait = -self._tokens / self.rate
                self._sleep(wait)
                self._at += wait  # the tokens the wait earned are spent by this body
                self._tokens = 0.0
