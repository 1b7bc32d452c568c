"""Device outages: log once when one starts and once when it ends, with capped backoff between tries."""

from __future__ import annotations

import logging
import time

FIRST_BACKOFF_S = 0.05

STABLE_S = 0.5
"""Audio that must move without error before an outage counts as over. A device can open and
then fail at once (alsa-lib 1.2.8's file PCM opens even when its output file cannot be created,
and then fails the first write that reaches the file); without this it would log every cycle."""


class Outage:
    def __init__(self, logger: logging.Logger, what: str, device: str, reopen_max_s: float) -> None:
        self._log = logger
        self._name = f"{what} device {device}"
        self._max = reopen_max_s
        self._first = min(FIRST_BACKOFF_S, reopen_max_s)
        self._backoff = self._first
        self._since: float | None = None
        self._good_s = 0.0

    @property
    def down(self) -> bool:
        return self._since is not None

    def failed(self, err: Exception, *, opening: bool) -> float:
        """Note a failed open or I/O; returns how long to wait before the next try."""
        self._good_s = 0.0
        if self._since is None:
            self._since = time.monotonic()
            how = "unavailable" if opening else "failed"
            self._log.warning("%s %s (%s); retrying", self._name, how, err)
        delay = self._backoff
        self._backoff = min(self._backoff * 2, self._max)
        return delay

    def worked(self, audio_s: float) -> None:
        """Note `audio_s` seconds of audio moved without error."""
        if self._since is None:
            return
        self._good_s += audio_s
        if self._good_s >= STABLE_S:
            self._log.info("%s is back after %.1f s", self._name, time.monotonic() - self._since)
            self._since = None
            self._good_s = 0.0
            self._backoff = self._first
