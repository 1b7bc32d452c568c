"""Earcons: short sounds the speaker makes about itself (it listens, the connection went, it is back, a new
conversation).

Generated at start from a few notes (no binary assets), each under 300 ms, quiet (-18 dBFS peak) and with
raised-cosine edges so they click neither in the speaker nor in the echo canceller. They are not speech:
pure tones with no syllable rhythm, which Silero does not take for a voice (tests/test_earcons.py runs the
gate on them), and they go through the speaker's notice path (`SpeakerOutput.play_notice`), so a barge-in
stops them and they are never stored or sent to a model.

The listening cue plays when the user summons the device (the push-to-talk button, the wake word: a turn
opened with `TurnStarted.summoned`), not on a turn `vad` opened, where the user is already talking and a chime
would only talk over them. It sounds inside the open turn, so it must not reach the model through the air:
without echo cancellation the mic sends digital silence in its place while it plays and for its short
ring-out after (`GatedMic.cue`), and its playback is no answer starting (`SpeakerOutput.play_cue`).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable

import numpy as np

from ..pcm import RATE, to_bytes
from .state import Event

log = logging.getLogger(__name__)

PEAK = 10 ** (-18 / 20)
"""Peak level: clearly heard over a quiet room, far below an answer's level."""
EDGE_S = 0.008
"""Raised-cosine fade in and out of each note."""

# name -> notes (frequency Hz, seconds); a rising pair is good news, a falling pair bad, three notes a change.
NOTES: dict[str, tuple[tuple[float, float], ...]] = {
    "listen": ((784.0, 0.05), (1046.5, 0.08)),  # short and high: over before a user starts the command
    "lost": ((659.3, 0.11), (440.0, 0.15)),
    "back": ((440.0, 0.09), (659.3, 0.12)),
    "reset": ((523.3, 0.07), (659.3, 0.07), (784.0, 0.1)),
}
EVENTS: dict[Event, str] = {Event.MODEL_LOST: "lost", Event.MODEL_BACK: "back"}
"""State machine events with a sound (`StateMachine.when_fired`)."""


def note(freq: float, seconds: float) -> np.ndarray:
    """One note: a sine with a soft second harmonic (audible on a small speaker), faded at both ends."""
    t = np.arange(round(seconds * RATE)) / RATE
    x = np.sin(2 * np.pi * freq * t) + 0.3 * np.sin(4 * np.pi * freq * t)
    edge = round(EDGE_S * RATE)
    ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(edge) / edge)
    x[:edge] *= ramp
    x[-edge:] *= ramp[::-1]
    return x


def make(name: str) -> bytes:
    """The earcon `name` as 16 kHz mono S16_LE."""
    x = np.concatenate([note(f, s) for f, s in NOTES[name]])
    return to_bytes(x / np.max(np.abs(x)) * PEAK)


class Earcons:
    """Plays earcons through `play(pcm, rate)` (the speaker's notice path; the listening cue through
    `play_cue`, which marks no answer starting). `on_event` is a state machine listener; `cue(name)` plays one
    directly (the reset button's new session, the listening cue). `played` holds the latest played, newest
    last."""

    def __init__(
        self, play: Callable[[bytes, int], None], play_cue: Callable[[bytes, int], None] | None = None
    ) -> None:
        self._play = play
        self._play_cue = play_cue or play
        self._sounds = {name: make(name) for name in NOTES}  # about a millisecond: made once, at start
        self.played: deque[str] = deque(maxlen=32)  # bounded: a daemon runs for months

    def cue(self, name: str) -> None:
        self.played.append(name)
        log.debug("earcon %s", name)
        (self._play_cue if name == "listen" else self._play)(self._sounds[name], RATE)

    def on_event(self, event: Event) -> None:
        if (name := EVENTS.get(event)) is not None:
            self.cue(name)
