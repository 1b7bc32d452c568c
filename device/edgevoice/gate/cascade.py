"""The judge run lazily: only when webrtcvad hears speech, catching up over the ring of recent frames."""

from __future__ import annotations

import itertools
from collections import deque

import numpy as np

from .judge import SpeechJudge

RATE = 16000
# Audio the judge is warmed up over after a reset; also the longest stretch it catches up exactly.
WARMUP_SAMPLES = RATE * 400 // 1000


class LazyJudge:
    """A SpeechJudge fed the stream in its own chunk size, but only when a decision is asked for.

    The stream position the judge has reached is kept. When asked about the audio up to `end`,
    it is fed every whole chunk since then from the ring of recent frames, so after a short skip its
    context and recurrent state are exactly what running it on everything would give. After a skip
    longer than the warm-up (or past the ring) it is reset and warmed up over the last
    WARMUP_SAMPLES instead: a long quiet stretch costs nothing and a wake-up costs a few chunks.
    """

    def __init__(self, judge: SpeechJudge, threshold: float, frame_samples: int) -> None:
        self.judge = judge
        judge.reset()  # a new stream: whatever it judged before is not this audio's past
        self.threshold = threshold
        self._chunk = judge.chunk_samples
        self._frame = frame_samples
        self._pos = 0  # next stream sample the judge needs
        self.prob = 0.0  # of the last chunk judged
        self.resets = 0

    @staticmethod
    def ring_frames(frame_samples: int, chunk_samples: int) -> int:
        """Frames the ring must hold so that a warm-up (plus a partial chunk) fits."""
        return -(-(WARMUP_SAMPLES + chunk_samples) // frame_samples) + 1

    def speech(self, ring: deque[bytes], end: int) -> bool:
        """Is the audio up to stream sample `end` speech? `ring`'s last frame ends at `end`."""
        ring_start = end - len(ring) * self._frame
        if self._pos < ring_start or end - self._pos > WARMUP_SAMPLES + self._chunk:
            self.judge.reset()
            self.resets += 1
            self._pos = max(ring_start, end - WARMUP_SAMPLES)
            self.prob = 0.0
        n = (end - self._pos) // self._chunk
        if n:
            first = (self._pos - ring_start) // self._frame
            skip = self._pos - (ring_start + first * self._frame)
            raw = b"".join(itertools.islice(ring, first, None))
            x = np.frombuffer(raw, dtype="<i2", count=skip + n * self._chunk)[skip:]
            audio = x.astype(np.float32) * np.float32(1 / 32768)
            c = self._chunk
            for i in range(n):
                self.prob = self.judge(audio[i * c : (i + 1) * c])
            self._pos += n * c
        return self.prob >= self.threshold
