"""The foreground check: the talker the speaker serves must stand out of the room's background.

Silero calls any speech speech, the TV's and the next table's too. The talker near the speaker is
louder than that background, so a frame counts only if the mean power of the last SMOOTH_MS rises
above what the background itself reaches: its PEAK_QUANTILE over the last HISTORY_S heard outside
turns (smoothed the same way), plus `over_peak_db`, and at least FLOOR_DB above its mean. A steady
noise peaks just above its mean, so quiet speech in it still counts; babble peaks high, so the bar
rises with it. Within a turn the bar is KEEP_EXTRA_DB higher, and each frame must also beat most
background frames (FRAME_QUANTILE) and be within TALKER_DROP_DB of the talker's level in this turn:
babble just after the talker stops must not stretch the turn's end.

What the background is made of: only frames heard outside turns. A frame waits in probation (set by
the gate) before it joins, so the onset of a turn, heard before the turn opened, is dropped when it
opens; frames of an open turn, its hangover included, never join. The room's level can change (a TV
turned down, a fan switched on), and a high quantile of 3 s is slow to follow it down: the old, louder
frames hold the bar for up to HISTORY_S, and a command spoken in the now quieter room does not reach
it (issue 10: commands missed at 5 dB after the noise stepped 6 dB down, and each missed command
then joined the background and raised the bar for the next). So every frame that joins is checked:
when the latest STEP_MS of background all lie below the quietest STEP_QUANTILE of the history before
them (or all above its loudest), by STEP_DB, the level has stepped, and the history is dropped and
learned afresh from those frames. Its own spread sets how far a background must move to count as a
step: steady pink noise and babble did not once in 6 minutes each, every 6 dB step of pink noise did,
within 0.5 s. A step up would lift the quantile soon enough by itself (5% of louder frames do), but
learning it afresh too keeps the history at one level, so that a later step down still stands out.

Frames are measured lazily over the ring (only when webrtcvad hears speech), so a quiet room costs
nothing; when frames went by unmeasured the background is stale and is learned again from the ring.
"""

from __future__ import annotations

import itertools
from collections import deque

import numpy as np

from ..pcm import FULL_SCALE, samples

HISTORY_S = 3.0
SMOOTH_MS = 90  # about a syllable's core
PEAK_QUANTILE = 0.95
FLOOR_DB = 3.0
KEEP_EXTRA_DB = 0.5
FRAME_QUANTILE = 0.9
TALKER_DROP_DB = 15.0
# The room's level stepped when the latest STEP_MS of background are all quieter than the quietest
# STEP_QUANTILE of the history before them (or all louder than its loudest), by STEP_DB. Measured on
# 30 ms frames, 6 minutes of each: steady pink noise's latest 180 ms never went below that tenth
# (nor babble's, whose own spread sets it low) nor above the loudest tenth, while after a 6 dB step
# of pink they were 2 dB or more beyond it. STEP_MS is six 30 ms frames: a step is followed within
# 0.5 s (probation included), half the shortest pause between two commands.
STEP_MS = 180
STEP_QUANTILE = 0.1
STEP_DB = 1.0
BLOCK_MS = 30  # shorter frames are pooled to about this for the step test (their spread is wider)
_MIN_HISTORY = 4  # fewer background frames than this: the room is not known yet, nothing is loud
_SILENCE = 1e-9  # power of digital silence (-90 dBFS)


def _power_ratio(db: float) -> float:
    return float(10.0 ** (db / 10.0))


class Foreground:
    """Level of the latest frames against the background, with the background learned lazily.

    Frames wait in probation (`probation` frames) before they join the background, so the onset of
    a turn, heard before the turn opened, is dropped by `turn_opened()` instead of raising the bar.
    """

    def __init__(self, over_peak_db: float, frame_samples: int, period_ms: int, probation: int) -> None:
        self._open = _power_ratio(over_peak_db)
        self._keep = _power_ratio(over_peak_db + KEEP_EXTRA_DB)
        self._floor = _power_ratio(FLOOR_DB)
        self._drop = _power_ratio(-TALKER_DROP_DB)
        self._frame = frame_samples
        self._scale = 1.0 / (frame_samples * FULL_SCALE * FULL_SCALE)  # mean power, full scale = 1
        self._smooth = max(1, -(-SMOOTH_MS // period_ms))
        self._hist: deque[float] = deque(maxlen=max(_MIN_HISTORY, int(HISTORY_S * 1000 / period_ms)))
        self._block = max(1, round(BLOCK_MS / period_ms))
        # Frames in the latest STEP_MS (whole blocks); also what is kept when the level stepped.
        self._step_n = max(_MIN_HISTORY, -(-STEP_MS // (period_ms * self._block)) * self._block)
        self._step = _power_ratio(-STEP_DB)
        self._recent: deque[tuple[float, bool]] = deque()  # (power, learnable), newest last
        self._probation = max(probation, self._smooth)
        self._measured = 0  # stream sample up to which frames were measured
        self._stale = True  # the statistics below need recomputing from _hist
        self._mean = 0.0
        self._peak = 0.0  # PEAK_QUANTILE of smoothed background levels
        self._frame_q = 0.0  # FRAME_QUANTILE of background frame levels
        self._talker_sum = 0.0
        self._talker_n = 0

    @property
    def ring_frames(self) -> int:
        """Frames the ring must hold to learn a background afresh after a skip."""
        return self._probation + 2 * _MIN_HISTORY

    def background(self) -> float | None:
        """Mean power of the background, or None while it is not known."""
        h = self._hist
        return sum(h) / len(h) if len(h) >= _MIN_HISTORY else None

    def loud(self, ring: deque[bytes], end: int, in_turn: bool) -> bool:
        """Does the audio ending at `end` (the ring's last frame) stand out of the background?"""
        self._measure(ring, end, learn=not in_turn)
        if len(self._hist) < _MIN_HISTORY:
            return False
        if self._stale:
            self._refresh()
        recent = self._recent
        n = self._smooth
        smoothed = sum(p for p, _ in itertools.islice(recent, len(recent) - n, None)) / n
        bar = max(self._floor * self._mean, (self._keep if in_turn else self._open) * self._peak)
        if smoothed < bar:
            return False
        if not in_turn:
            return True
        own = recent[-1][0]
        if own < self._frame_q or own < self._drop * self._talker_sum / max(self._talker_n, 1):
            return False
        self._talker_sum += own
        self._talker_n += 1
        return True

    def listen(self, ring: deque[bytes], end: int) -> None:
        """Measure the frames up to `end` as background, deciding nothing: while no frame can open a turn
        (the wake_word gate armed), the background is still learned, at the cost of measuring alone."""
        self._measure(ring, end, learn=True)

    def turn_opened(self) -> None:
        """The frames in probation belong to the turn: they never join the background, and the
        loud ones give the talker's first level."""
        bar = self._floor * max(self._mean, _SILENCE)
        loud = [p for p, _ in self._recent if p >= bar]
        self._talker_sum = sum(loud)
        self._talker_n = len(loud)
        self._recent = deque((p, False) for p, _ in self._recent)

    def _refresh(self) -> None:
        h = list(self._hist)
        self._mean = max(sum(h) / len(h), _SILENCE)
        ordered = sorted(h)
        self._frame_q = ordered[min(len(h) - 1, int(FRAME_QUANTILE * len(h)))]
        n = self._smooth
        if len(h) > n:
            c = np.cumsum([0.0, *h])
            ordered = sorted(((c[n:] - c[:-n]) / n).tolist())
        self._peak = max(ordered[min(len(ordered) - 1, int(PEAK_QUANTILE * len(ordered)))], _SILENCE)
        self._stale = False

    def _join(self, power: float) -> None:
        """A frame joins the background; tested at every frame, as frames join in batches after
        webrtcvad was silent and a step inside a batch must still be seen where it happened."""
        hist = self._hist
        hist.append(power)
        self._stale = True
        if len(hist) >= 2 * self._step_n:
            h = list(hist)
            if self._stepped(h):
                self._hist = deque(h[-self._step_n :], maxlen=hist.maxlen)

    def _stepped(self, h: list[float]) -> bool:
        """Has the background's level stepped (down or up) in its latest STEP_MS?"""
        r, b = self._step_n, self._block
        if len(h) < 2 * r:
            return False
        if b > 1:
            a = np.asarray(h)
            k = (len(h) - r) // b * b
            older: list[float] = a[len(h) - r - k : len(h) - r].reshape(-1, b).mean(axis=1).tolist()
            latest: list[float] = a[-r:].reshape(-1, b).mean(axis=1).tolist()
        else:
            older, latest = h[:-r], h[-r:]
        # Against the frames before them only: a bar that included the newest would move with them.
        older.sort()
        i = int(STEP_QUANTILE * (len(older) - 1))
        return max(latest) < self._step * older[i] or min(latest) * self._step > older[-1 - i]

    def _measure(self, ring: deque[bytes], end: int, learn: bool) -> None:
        ring_start = end - len(ring) * self._frame
        if self._measured < ring_start:
            # Frames went by unmeasured (webrtcvad heard nothing): what was learned is stale.
            self._hist.clear()
            self._recent.clear()
            self._measured = ring_start
        count = (end - self._measured) // self._frame
        if count <= 0:
            return
        raw = b"".join(itertools.islice(ring, len(ring) - count, None))
        # Powers on the int16 scale (scaled once, by _scale): the same float32 sums as ever.
        x = samples(raw).reshape(count, self._frame).astype(np.float32)
        powers: list[float] = (np.einsum("ij,ij->i", x, x) * self._scale).tolist()
        recent = self._recent
        for p in powers:
            recent.append((p, learn))
            if len(recent) > self._probation:
                old, ok = recent.popleft()
                if ok:
                    self._join(old)
        self._measured = end
