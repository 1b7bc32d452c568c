"""The far end: what the speaker actually played, on a sample timeline the capture side can read in step.

Echo cancellation needs, for each captured frame, the played audio its echo came from, and never later than
the echo itself (WebRTC's AEC3 finds a reference that leads the echo by up to about 500 ms on its own, but
one that lags it cancels nothing). Both sides stamp their audio with `time.monotonic()`:
- the playback writer (`played`) stamps each chunk with when its first sample reaches the device's output:
  now plus what is already queued in the ALSA buffer. What it cannot know (the codec's own delay, the air)
  only makes the true sound later than the stamp, so the reference leads;
- the capture reader (`take`) stamps each frame with when it got it, which is after the sound reached
  the microphone: again the reference leads.

Stamps jitter (a thread woken late), and a reference that jumps by a few samples from frame to frame
ruins the linear filter. So both sides are sample-locked: a chunk that continues the previous one is
placed right after it whatever its stamp says, and the reader advances by exactly the frame's length. The
stamps only anchor a new stretch (playback resumed, capture started) and correct slow drift between two
clocks (a USB microphone and the Pi's own audio out): the reader's stamps are never early, so the
smallest offset seen over `ANCHOR_S` is the true one, and the reader moves when that exceeds `DRIFT_S`.

A barge-in (`cut`) drops what was queued but never played. Thread-safe: one writer thread, one reader
thread. Plain code with injectable time: the tests and the bench drive it sample by sample.
"""

from __future__ import annotations

import collections
import threading

import numpy as np

from ..pcm import RATE, Int16Array, StreamResampler, samples

CONTINUE_S = 0.040
"""A chunk stamped within this of where the previous one ended continues it (placed right after it)."""
DRIFT_S = 0.020
"""The reader re-anchors when its true offset from the stamps has grown past this."""
ANCHOR_S = 1.0
"""The window over which the reader's smallest offset is taken as the true one."""
KEEP_S = 2.0
"""Reference older than this behind the reader is dropped."""


def position(t: float) -> int:
    """A monotonic time as a sample index at RATE."""
    return round(t * RATE)


class FarEnd:
    """Played audio (16 kHz int16) by sample position; `played` from the playback thread, `take` from capture."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Guarded by _lock: chunks in position order, not overlapping.
        self._chunks: collections.deque[tuple[int, Int16Array]] = collections.deque()
        self._end: int | None = None  # where the last chunk ended
        self._resampler: StreamResampler | None = None
        # Reader side (capture thread only).
        self._pos: int | None = None  # the next sample the reader takes
        self._next_at: int | None = None  # the position its next frame's stamp should give, if in step
        self._min_off: int | None = None
        self._window_start = 0
        self.reanchors = 0
        self.last_played = -1  # position of the last non-silent reference sample handed to the reader

    # -- the playback side ---------------------------------------------------------------------------------
    def played(self, pcm: bytes, rate: int, start_at: float) -> None:
        """`pcm` (S16_LE mono at `rate`) was written to the device and starts sounding at `start_at`."""
        with self._lock:
            p = position(start_at)
            new_stretch = self._end is None or abs(p - self._end) > position(CONTINUE_S)
            if rate != RATE:
                if new_stretch or self._resampler is None or self._resampler.in_rate != rate:
                    self._resampler = StreamResampler(rate, RATE)
                pcm = self._resampler.process(pcm)
            if not new_stretch:
                assert self._end is not None
                p = self._end
            x = np.array(samples(pcm))
            if len(x):
                if self._chunks and p < self._chunks[-1][0] + len(self._chunks[-1][1]):
                    self._truncate_locked(p)  # a new stretch that starts before the old one ended replaces it
                self._chunks.append((p, x))
            self._end = p + len(x)

    def cut(self, at: float) -> None:
        """A barge-in dropped the queued audio at `at`: nothing stamped after it will sound."""
        with self._lock:
            self._truncate_locked(position(at))
            self._end = None
            self._resampler = None

    def _truncate_locked(self, p: int) -> None:
        while self._chunks and self._chunks[-1][0] >= p:
            self._chunks.pop()
        if self._chunks:
            start, x = self._chunks[-1]
            if start + len(x) > p:
                self._chunks[-1] = (start, x[: p - start])

    # -- the capture side ----------------------------------------------------------------------------------
    def take(self, n: int, end_at: float) -> Int16Array:
        """The reference for a captured frame of `n` samples that ended at `end_at` (zeros where nothing played)."""
        target = position(end_at) - n
        if self._pos is None or self._next_at is None or abs(target - self._next_at) > position(KEEP_S):
            self._anchor(target)  # the first frame, or capture paused: start again from the stamp
        assert self._pos is not None
        self._track_drift(target)
        start = self._pos
        self._pos += n
        self._next_at = target + n
        out = np.zeros(n, dtype=np.int16)
        with self._lock:
            while self._chunks and self._chunks[0][0] + len(self._chunks[0][1]) <= start - position(KEEP_S):
                self._chunks.popleft()
            for p, x in self._chunks:
                if p >= start + n:
                    break
                lo, hi = max(p, start), min(p + len(x), start + n)
                if lo < hi:
                    out[lo - start : hi - start] = x[lo - p : hi - p]
        if np.any(out):
            self.last_played = start + n
        return out

    @property
    def empty(self) -> bool:
        """Nothing played is kept (none yet, or all of it long behind the reader). The reader skipping `take`
        then only means its next frame anchors afresh."""
        return not self._chunks

    def silent_for(self, end_at: float) -> float:
        """Seconds since the reader last got a non-silent reference (inf if never)."""
        if self.last_played < 0:
            return float("inf")
        return max(0.0, (position(end_at) - self.last_played) / RATE)

    def _anchor(self, target: int) -> None:
        self._pos = target
        self._min_off, self._window_start = None, target

    def _track_drift(self, target: int) -> None:
        assert self._pos is not None
        off = target - self._pos  # >= the true offset: a stamp is never early
        self._min_off = off if self._min_off is None else min(self._min_off, off)
        if target - self._window_start < position(ANCHOR_S):
            return
        if abs(self._min_off) > position(DRIFT_S):
            self._pos += self._min_off
            self.reanchors += 1
        self._min_off, self._window_start = None, target
