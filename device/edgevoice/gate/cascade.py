"""The judge run lazily: only when webrtcvad hears speech, catching up over the ring of recent frames."""

from __future__ import annotations

import itertools
from collections import deque

from ..pcm import ms_samples, samples, to_float
from .judge import SpeechJudge

# The longest skip the judge catches up exactly; after a longer one it is reset and warmed up.
CATCHUP_SAMPLES = ms_samples(400)
# Warm-up between turns: over the room since the last turn ended, at most this much. Silero's LSTM
# remembers for seconds, and a judge woken from zero state calls less of a command's onset speech
# than one run all along: with 400 ms of warm-up it did so for 11 of 48 onsets (pink, 10 and 5 dB),
# with 800 ms for 8, and "Stop." at 5 dB opened no turn. It costs about a fifth more judge chunks
# where people talk (the bench's noise+speech scene); steady noise alone never wakes the judge.
# Never from before the last turn's end: a state that still holds the talker's words called the
# noise stepping up just after the turn speech, and opened false turns on it.
WARMUP_SAMPLES = ms_samples(800)
# Warm-up within a turn (a pause in the talker's speech): the pause only, for the same reason:
# otherwise a noise that steps up in the hangover keeps the turn open.
TURN_WARMUP_SAMPLES = CATCHUP_SAMPLES


class LazyJudge:
    """A SpeechJudge fed the stream in its own chunk size, but only when a decision is asked for.

    The stream position the judge has reached is kept. When asked about the audio up to `end`,
    it is fed every whole chunk since then from the ring of recent frames, so after a short skip its
    context and recurrent state are exactly what running it on everything would give. After a skip
    longer than CATCHUP_SAMPLES (or past the ring) it is reset and warmed up over the recent audio
    instead: a long quiet stretch costs nothing and a wake-up costs a few chunks. When a turn ends
    (`forget`) it is reset too, and warmed up only on what came after: whether the next talker
    started is judged on the room, not on the last talker's words.
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
        self._forget = False
        self._fresh_from = 0  # a warm-up never reaches back before this stream sample

    @staticmethod
    def ring_frames(frame_samples: int, chunk_samples: int) -> int:
        """Frames the ring must hold so that a warm-up (plus a partial chunk) fits."""
        return -(-(WARMUP_SAMPLES + chunk_samples) // frame_samples) + 1

    def forget(self, at: int) -> None:
        """A turn ended at stream sample `at`: the next call starts afresh, warmed up on what came after."""
        self._forget = True
        self._fresh_from = at

    def speech(self, ring: deque[bytes], end: int, in_turn: bool = False) -> bool:
        """Is the audio up to stream sample `end` speech? `ring`'s last frame ends at `end`."""
        ring_start = end - len(ring) * self._frame
        if self._forget or self._pos < ring_start or end - self._pos > CATCHUP_SAMPLES + self._chunk:
            self.judge.reset()
            self.resets += 1
            self._forget = False
            warmup = TURN_WARMUP_SAMPLES if in_turn else WARMUP_SAMPLES
            self._pos = max(ring_start, end - warmup, self._fresh_from)
            self.prob = 0.0
        n = (end - self._pos) // self._chunk
        if n:
            first = (self._pos - ring_start) // self._frame
            skip = self._pos - (ring_start + first * self._frame)
            raw = b"".join(itertools.islice(ring, first, None))
            audio = to_float(samples(raw, skip + n * self._chunk)[skip:])
            c = self._chunk
            for i in range(n):
                self.prob = self.judge(audio[i * c : (i + 1) * c])
            self._pos += n * c
        return self.prob >= self.threshold
