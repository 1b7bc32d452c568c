"""Where a user turn ends, from the audio the daemon forwards (plain code, driven frame by frame).

The daemon forwards only gated turn audio and then ~600 ms of digital silence as an end marker.
A turn opens once enough loud frames were heard and ends after `end_silence_ms` of quiet frames.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from ..pcm import frame_bytes, samples

FRAME_MS = 10


@dataclass(frozen=True)
class SpeechStarted:
    """Enough speech was heard to call this a turn (the model treats it as barge-in when speaking)."""


@dataclass(frozen=True)
class Utterance:
    """A finished turn: its audio, from a little before the speech to the end of the quiet."""

    pcm: bytes


EndpointEvent = SpeechStarted | Utterance


class Endpointer:
    """Splits 16 kHz mono S16_LE audio into utterances on trailing quiet.

    Frame RMS (full scale 32768) at or above `speech_rms` counts as speech, below `silence_rms` as
    quiet; anything between keeps the turn open without counting toward either.
    """

    def __init__(
        self,
        *,
        speech_rms: float = 300.0,
        silence_rms: float = 100.0,
        min_speech_ms: int = 60,
        end_silence_ms: int = 400,
        preroll_ms: int = 300,
        max_utterance_ms: int = 30_000,
    ) -> None:
        if not silence_rms <= speech_rms:
            raise ValueError("endpoint: silence_rms must not exceed speech_rms")
        self._speech_rms = speech_rms
        self._silence_rms = silence_rms
        self._min_speech = max(1, min_speech_ms // FRAME_MS)
        self._end_silence = max(1, end_silence_ms // FRAME_MS)
        self._max_frames = max(1, max_utterance_ms // FRAME_MS)
        self._frame_bytes = frame_bytes(FRAME_MS)
        self._preroll: deque[bytes] = deque(maxlen=max(0, preroll_ms // FRAME_MS))
        self._rest = b""
        self._frames: list[bytes] = []
        self._speech_frames = 0
        self._quiet_run = 0
        self._started = False

    @property
    def in_speech(self) -> bool:
        """A turn has opened and has not ended yet."""
        return self._started

    def reset(self) -> None:
        self._rest = b""
        self._preroll.clear()
        self._clear_turn()

    def push(self, pcm: bytes) -> list[EndpointEvent]:
        """Feed audio of any length; returns what happened, in order."""
        data = self._rest + pcm
        n = len(data) - len(data) % self._frame_bytes
        self._rest = data[n:]
        events: list[EndpointEvent] = []
        for i in range(0, n, self._frame_bytes):
            event = self._frame(data[i : i + self._frame_bytes])
            if event is not None:
                events.append(event)
        return events

    def _frame(self, frame: bytes) -> EndpointEvent | None:
        x = samples(frame).astype(np.float64)
        rms = float(np.sqrt(np.mean(x * x)))
        loud = rms >= self._speech_rms
        quiet = rms < self._silence_rms
        if not self._frames and not loud:
            self._preroll.append(frame)  # nothing heard yet: keep only a short pre-roll
            return None
        if not self._frames:
            self._frames.extend(self._preroll)
            self._preroll.clear()
        self._frames.append(frame)
        self._speech_frames += loud
        self._quiet_run = self._quiet_run + 1 if quiet else 0
        if not self._started:
            if self._speech_frames >= self._min_speech:
                self._started = True
                return SpeechStarted()
            if self._quiet_run >= self._end_silence or len(self._frames) >= self._max_frames:
                self._clear_turn()  # a click or a hum, not a turn
            return None
        if self._quiet_run >= self._end_silence or len(self._frames) >= self._max_frames:
            utterance = Utterance(b"".join(self._frames))
            self._clear_turn()
            return utterance
        return None

    def _clear_turn(self) -> None:
        self._frames = []
        self._speech_frames = 0
        self._quiet_run = 0
        self._started = False
