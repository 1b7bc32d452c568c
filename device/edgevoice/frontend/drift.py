"""Clock drift between the microphone and the speaker, measured from the linear echo filter.

A USB microphone and the Pi's own audio output run from different crystals, tens of ppm apart: at 80 ppm the
echo slides a sample every 0.8 s against the far end's timeline. The linear filter (`linear.py`) chases it
and never catches up (about 15 dB where it holds 35-40 without drift), so its residual is never trusted for
the fast barge-in. The far end's stamps cannot see it: their jitter is milliseconds, a drift of 80 ppm moves
the echo by a millisecond in twelve seconds.

The filter itself shows it: where the echo slides by d samples, the filter's frequency response turns by
-w * d at each frequency w. Every MEASURE_S of played audio the response is compared with the one before (the
phase of H_now * conj(H_before) over 100 Hz-2 kHz, where speech puts its energy, weighted by magnitude; a
least-squares slope through 0), and the far end's read rate (`Follower.ratio`) is corrected by part of what is
left. Without drift the measure reads within 0.3 ppm of 0 on speech; at 80 ppm it reads 60-110.
"""

from __future__ import annotations

import numpy as np

from ..pcm import RATE
from .linear import Complex, LinearEcho

MEASURE_S = 0.5
"""Played audio between two looks at the filter: the echo moves 0.6 samples in it at 80 ppm."""
MIN_ERLE_DB = 10.0
"""A filter cancelling less than this has not learned the path well enough for its phase to mean much."""
GAIN = 0.8
"""The share of a measured drift corrected at once: one measure is noisy (+-25% at 80 ppm)."""
DEADBAND = 3e-6
"""A measured drift under this (3 ppm: 0.05 samples a second, which the filter follows) is left alone: the
far end keeps being read on whole samples, untouched, where the clocks agree."""
LOCKED = 10e-6
"""A measured drift under this (0.16 samples a second) says the correction has settled. AEC3 follows a drift its
own way, and each correction changes how fast the echo path it tracks moves: the three or four steps a
correction settles in cost it 10-15 dB for seconds, enough to open turns on the answer; one, once settled,
costs it next to nothing. Once settled, one measure moves the rate by at most this much."""
LIMIT = 500e-6
"""The largest drift followed: crystals are within 100 ppm of each other; more is a measure gone wrong."""
BAND_HZ = (100.0, 2000.0)


class ClockDrift:
    """`__call__(samples, active, epoch)` after each frame the linear filter took (`active`: the far end
    played in it; `epoch` changes where the far end's timeline jumped, `FarEnd.anchors`); `ratio` is what the
    far end should be read at."""

    def __init__(self, linear: LinearEcho) -> None:
        self.linear = linear
        n = linear.nfft
        bins = np.arange(n // 2 + 1)
        lo, hi = (round(hz * n / RATE) for hz in BAND_HZ)
        self._band = slice(lo, hi + 1)
        self._omega = 2 * np.pi * bins[self._band] / n
        self._last: tuple[Complex, int, int] | None = None  # response, filter start, epoch
        self._elapsed = 0  # captured samples since the last look
        self._played = 0  # ...in which the far end played
        self.ratio = 1.0
        """Far-end samples per captured sample (`Follower.ratio`)."""
        self.locked = False
        """A measure after a correction found the clocks agreeing within LOCKED: from then on AEC3 follows the
        drift too."""
        self.measured: list[float] = []
        """Each drift measured (far-end samples per captured sample the echo slid by), for the bench."""

    def __call__(self, samples: int, active: bool, epoch: int) -> None:
        self._elapsed += samples
        self._played += samples if active else 0
        if self._played < MEASURE_S * RATE:
            return
        lin = self.linear
        now = (lin.foreground.copy(), lin.delay, epoch)
        last, elapsed = self._last, self._elapsed
        self._last, self._elapsed, self._played = now, 0, 0
        if lin.erle_db < MIN_ERLE_DB or not lin.delay_found:
            self._last = None  # the next look starts afresh
            return
        if last is None or last[1:] != now[1:]:  # the filter moved, or the far end's timeline jumped
            return
        cross = now[0][self._band] * np.conj(last[0][self._band])
        weight = np.abs(cross)
        denom = float(np.sum(weight * self._omega**2))
        if denom <= 0.0:
            return
        slid = -float(np.sum(weight * np.angle(cross) * self._omega)) / denom  # samples, + = the echo later
        drift = slid / elapsed
        self.measured.append(drift)
        self.locked = self.locked or abs(drift) < LOCKED
        if abs(drift) >= DEADBAND:  # the echo slid later: the far end is read too fast
            step = GAIN * drift
            if self.locked:  # settled: crystals drift with temperature, slowly; a big reading is the filter
                step = float(np.clip(step, -LOCKED, LOCKED))  # relearning (the device was moved), not the clocks
            self.ratio = float(np.clip(self.ratio - step, 1.0 - LIMIT, 1.0 + LIMIT))
            # The filter lags the path it follows: once the path stops sliding it still catches up for a
            # while, which the next look would take for drift. That look starts afresh.
            self._last = None
