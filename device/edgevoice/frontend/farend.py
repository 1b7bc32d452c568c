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
Stamps are far too coarse to follow a drift of tens of ppm, which the linear filter cannot follow either (a
sample every 0.8 s at 80 ppm): the canceller measures it from its filter (`drift.py`), and its readers
(`follower`) step `ratio` far-end samples per captured sample, read between samples (`pcm.shift`).

A barge-in (`cut`) drops what was queued but never played. Thread-safe: one writer thread, one reader
thread. Plain code with injectable time: the tests and the bench drive it sample by sample.
"""

from __future__ import annotations

import collections
import threading
from dataclasses import dataclass

import numpy as np

from ..pcm import RATE, SHIFT_TAPS, Int16Array, StreamResampler, quantize, samples, shift

CONTINUE_S = 0.040
"""A chunk stamped within this of where the previous one ended continues it (placed right after it)."""
DRIFT_S = 0.020
"""The reader re-anchors when its true offset from the stamps has grown past this."""
ANCHOR_S = 1.0
"""The window over which the reader's smallest offset is taken as the true one."""
KEEP_S = 2.0
"""Reference older than this behind the reader is dropped."""


@dataclass
class Follower:
    """A reader of the far end at its own rate, for a canceller that follows the clocks' drift."""

    ratio: float = 1.0
    """Far-end samples per captured sample: 1 - the mic's clock drift against the speaker's."""
    slip: float = 0.0
    """Samples it is from the reader that reads as played (whose place the stamps set)."""


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
        self._followers: list[Follower] = []
        self._next_at: int | None = None  # the position its next frame's stamp should give, if in step
        self._min_off: int | None = None
        self._window_start = 0
        self.reanchors = 0
        self.anchors = 0
        """Times the reader's place was set afresh from a stamp (the first frame, capture resumed): every
        reference jumped there. (A move for drift past DRIFT_S moves only the one as played.)"""
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
    def follower(self) -> Follower:
        """A new reader that follows a drift (`take_followed`), from where the reader is."""
        f = Follower()
        self._followers.append(f)
        return f

    def take(self, n: int, end_at: float) -> Int16Array:
        """The reference for a captured frame of `n` samples that ended at `end_at` (zeros where nothing played),
        as played: on whole samples."""
        start = self._advance(n, end_at)
        out = self._read(start, n)
        if np.any(out):
            self.last_played = start + n
        return out

    def take_followed(self, n: int, end_at: float) -> list[Int16Array]:
        """`take`, once for each follower in the order they were made, each read at its own rate."""
        start = self._advance(n, end_at)
        refs: list[Int16Array] = []
        read: dict[float, Int16Array] = {}
        for f in self._followers:
            # Sample i of the frame sits at start + slip + i * ratio (slip already moved on by the frame). Over
            # one frame that differs from a constant fraction by under a twentieth of a sample at 100 ppm: the
            # frame is read at its middle's.
            at = start + f.slip - n / 2 * (f.ratio - 1.0)
            if at not in read:
                read[at] = self._read_at(at, n)
            refs.append(read[at])
        if any(np.any(r) for r in read.values()):
            self.last_played = start + n
        return refs

    def skip(self, n: int, end_at: float) -> None:
        """A captured frame the reader needs no reference for (nothing to cancel): the reader keeps in step
        all the same. Re-anchored from a stamp after a pause instead, the reference would move by the stamps'
        jitter (milliseconds, which a learned filter does not forgive), and by up to the whole pause where the
        pause was shorter than a restart (KEEP_S) looks."""
        self._advance(n, end_at)

    def _advance(self, n: int, end_at: float) -> int:
        """Step the reader (and its followers) over a frame: where its reference starts."""
        target = position(end_at) - n
        if self._pos is None or self._next_at is None or abs(target - self._next_at) > position(KEEP_S):
            self._anchor(target)  # the first frame, or capture paused: start again from the stamp
        assert self._pos is not None
        self._track_drift(target)
        start = self._pos
        self._pos += n
        self._next_at = target + n
        for f in self._followers:
            f.slip += n * (f.ratio - 1.0)
        return start

    def _read_at(self, at: float, n: int) -> Int16Array:
        first = int(np.floor(at))
        frac = at - first
        if frac < 1e-6:
            return self._read(first, n)
        half = SHIFT_TAPS // 2
        around = self._read(first - half + 1, n + SHIFT_TAPS - 1)
        return quantize(shift(around.astype(np.float64), frac))

    def _read(self, start: int, n: int) -> Int16Array:
        out = np.zeros(n, dtype=np.int16)
        with self._lock:
            while self._chunks and self._chunks[0][0] + len(self._chunks[0][1]) <= start - position(KEEP_S):
                self._chunks.popleft()
            for p, x in reversed(self._chunks):  # from the newest: what is read lies a few periods back
                if p + len(x) <= start:
                    break
                lo, hi = max(p, start), min(p + len(x), start + n)
                if lo < hi:
                    out[lo - start : hi - start] = x[lo - p : hi - p]
        return out

    @property
    def empty(self) -> bool:
        """Nothing played is kept (none yet, or all of it long behind the reader): a frame needs no reference,
        and `skip` keeps the reader in step over it."""
        return not self._chunks

    def silent_for(self, end_at: float) -> float:
        """Seconds since the reader last got a non-silent reference (inf if never)."""
        if self.last_played < 0:
            return float("inf")
        return max(0.0, (position(end_at) - self.last_played) / RATE)

    def _anchor(self, target: int) -> None:
        self._pos = target
        for f in self._followers:
            f.slip = 0.0
        self._min_off, self._window_start = None, target
        self.anchors += 1

    def _track_drift(self, target: int) -> None:
        assert self._pos is not None
        off = target - self._pos  # >= the true offset: a stamp is never early
        self._min_off = off if self._min_off is None else min(self._min_off, off)
        if target - self._window_start < position(ANCHOR_S):
            return
        if abs(self._min_off) > position(DRIFT_S):
            self._pos += self._min_off
            for f in self._followers:
                f.slip -= self._min_off  # they were already there
            self.reanchors += 1
        self._min_off, self._window_start = None, target
