"""The gate: frames in, turn decisions out. Plain code, no I/O; the caller drives it frame by frame.

vad mode: webrtcvad on every frame, the judge only where webrtcvad hears speech (cascade), N-of-M
smoothing to open a turn, the pre-roll ring sent with it, hangover to end it, a cap on its length.
push_to_talk mode: `press()` opens a turn, every frame until `release()` goes through.
The button works in vad mode too (`gpio.talk_pin` beside the voice gate): a press opens a held turn, or
holds open the turn the voice gate already opened; release ends it and the voice gate takes over again.
A wake-word mode will be a third branch of `process` with its own states (armed by the detector).
"""

from __future__ import annotations

import enum
from collections import deque

import webrtcvad

from ..config import GateSettings, Settings
from ..pcm import RATE, check_period, frame_bytes, frame_samples
from .cascade import LazyJudge
from .events import GateEvent, TurnEnded, TurnFrame, TurnStarted
from .judge import SpeechJudge, make_judge
from .level import Foreground

FOREGROUND_DB = 2.0  # default of gate.foreground_db: how far over the background's peaks speech must rise
PROBATION_MS = 300  # audio heard just before a turn opens is the turn's onset, not background


class GateState(enum.Enum):
    IDLE = "idle"  # no turn; vad: listening, push_to_talk: button up
    SPEAKING = "speaking"  # vad: turn open, the last frame was speech
    HANGOVER = "hangover"  # vad: turn open, counting non-speech towards its end
    COOLDOWN = "cooldown"  # a turn was cut at max length: vad waits for a pause, push_to_talk for release
    HELD = "held"  # push_to_talk: turn open while the button is held


_OPEN = (GateState.SPEAKING, GateState.HANGOVER, GateState.HELD)


def _frames(ms: float, period_ms: int) -> int:
    """Whole periods in `ms`, rounded up (pre-roll: at least that much)."""
    return max(0, -(-round(ms) // period_ms))


class Gate:
    """Decides which frames of 16 kHz mono S16_LE audio are a user's turn.

    `process(frame)` takes one capture period (10, 20 or 30 ms) and returns what it decided.
    Sample positions count from the first frame the gate saw.
    """

    def __init__(
        self,
        settings: GateSettings,
        judge: SpeechJudge | None,
        period_ms: int = 30,
        foreground_db: float | None = FOREGROUND_DB,
    ) -> None:
        check_period(period_ms)  # webrtcvad takes 10, 20 or 30 ms frames only
        if settings.start_frames > settings.window_frames:
            raise ValueError("start_frames must not exceed window_frames")
        self.settings = settings
        self.period_ms = period_ms
        self._ptt = settings.mode == "push_to_talk"
        self._fs = frame_samples(period_ms)
        self._frame_bytes = frame_bytes(period_ms)
        self._vad = webrtcvad.Vad(settings.webrtcvad_mode)
        self._judge = None if judge is None else LazyJudge(judge, settings.threshold, self._fs)
        self._fg = (
            None
            if foreground_db is None
            else Foreground(foreground_db, self._fs, period_ms, probation=_frames(PROBATION_MS, period_ms))
        )
        self._preroll = _frames(settings.preroll_ms, period_ms)
        # Rounded down: the turn ends at most hangover_ms + one period after the speech did.
        self._hangover = max(1, settings.hangover_ms // period_ms)
        self._max = int(settings.max_utterance_s * RATE)
        self._n = settings.start_frames
        self._keep_n = max(1, settings.start_frames - 1)
        self._mask = (1 << settings.window_frames) - 1
        ring = max(self._preroll, settings.window_frames) + 1
        if judge is not None:
            ring = max(ring, LazyJudge.ring_frames(self._fs, judge.chunk_samples))
        if self._fg is not None:
            ring = max(ring, self._fg.ring_frames)
        self._ring: deque[bytes] = deque(maxlen=ring)
        self._state = GateState.IDLE
        self._pos = 0  # samples seen
        self._window = 0  # N-of-M: bit i set when the frame i frames ago was speech
        self._silent = 0  # non-speech frames in a row (hangover, cooldown)
        self._turn_start = 0
        self._forwarded_end = 0  # frames before this were sent in a turn: never pre-roll again
        self._held = False
        self._voiced = 0  # speech frames webrtcvad heard in the held turn (up to start_frames)

    @property
    def state(self) -> GateState:
        return self._state

    @property
    def in_turn(self) -> bool:
        return self._state in _OPEN

    @property
    def position(self) -> int:
        """Samples seen so far."""
        return self._pos

    def process(self, frame: bytes) -> list[GateEvent]:
        if len(frame) != self._frame_bytes:
            raise ValueError(f"a frame must be {self._frame_bytes} bytes (got {len(frame)})")
        start = self._pos
        self._pos = end = start + self._fs
        self._ring.append(frame)
        if self._ptt or self._state is GateState.HELD:
            return self._ptt_frame(frame, start, end)
        state = self._state
        speech = self._vad.is_speech(frame, RATE)
        if speech and self._fg is not None:
            speech = self._fg.loud(self._ring, end, in_turn=state is GateState.SPEAKING or state is GateState.HANGOVER)
        if speech and self._judge is not None:
            speech = self._judge.speech(self._ring, end, in_turn=state is not GateState.IDLE)
        # N-of-M: a frame counts only where at least N of the last M were speech (blips don't);
        # inside a turn N-1 do, so quiet stretches of the talker's speech keep it open.
        self._window = w = ((self._window << 1) | speech) & self._mask
        speech = speech and w.bit_count() >= (self._n if state is GateState.IDLE else self._keep_n)
        if state is GateState.IDLE:
            return self._open(frame, start) if speech else []
        if state is GateState.COOLDOWN:
            self._silent = 0 if speech else self._silent + 1
            if self._silent >= self._hangover:
                self._to_idle(GateState.IDLE)
            return []
        events: list[GateEvent] = [TurnFrame(frame)]
        if speech:
            self._state = GateState.SPEAKING
            self._silent = 0
        else:
            self._state = GateState.HANGOVER
            self._silent += 1
            if self._silent >= self._hangover:
                events.append(self._close(end, "silence", GateState.IDLE))
                return events
        if end - self._turn_start >= self._max:
            events.append(self._close(end, "max_length", GateState.COOLDOWN))
        return events

    def press(self) -> list[GateEvent]:
        """Push-to-talk button down: the turn opens now; frames go through until `release()`. In vad mode a
        turn the voice gate opened is held open from here (no hangover ends it) rather than opened again."""
        self._held = True
        if self._state in (GateState.SPEAKING, GateState.HANGOVER):
            self._state = GateState.HELD
            self._voiced = self._n  # the voice gate heard speech: this turn is the user's
            return []
        if self._state is not GateState.IDLE:
            return []
        self._state = GateState.HELD
        self._turn_start = self._pos
        self._voiced = 0
        return [TurnStarted([], self._pos)]

    def release(self) -> list[GateEvent]:
        """Push-to-talk button up: the turn (if still open) ends after the last frame processed."""
        self._held = False
        state = self._state
        if state is GateState.HELD:
            return [self._close(self._pos, self._held_reason("released"), GateState.IDLE)]
        if state is GateState.COOLDOWN:
            self._state = GateState.IDLE
        return []

    def _ptt_frame(self, frame: bytes, start: int, end: int) -> list[GateEvent]:
        if self._state is not GateState.HELD:
            return []
        if self._voiced < self._n and self._vad.is_speech(frame, RATE):
            self._voiced += 1
        events: list[GateEvent] = [TurnFrame(frame)]
        if end - self._turn_start >= self._max:
            # Held past the cap: wait for the release (push_to_talk), or, beside the voice gate, for a pause.
            events.append(self._close(end, self._held_reason("max_length"), GateState.COOLDOWN))
        return events

    def _held_reason(self, reason: str) -> str:
        """`reason`, or `empty` when webrtcvad heard fewer than start_frames speech frames in the held turn."""
        return reason if self._voiced >= self._n else "empty"

    def _open(self, frame: bytes, start: int) -> list[GateEvent]:
        ring = self._ring
        avail = min(len(ring) - 1, self._preroll, (start - self._forwarded_end) // self._fs)
        preroll = [ring[i] for i in range(len(ring) - 1 - avail, len(ring) - 1)]
        self._turn_start = start - avail * self._fs
        if self._fg is not None:
            self._fg.turn_opened()
        self._state = GateState.SPEAKING
        self._silent = 0
        return [TurnStarted(preroll, self._turn_start), TurnFrame(frame)]

    def _close(self, end: int, reason: str, then: GateState) -> TurnEnded:
        self._forwarded_end = end
        if self._judge is not None:
            self._judge.forget(end)  # the next turn is judged on the room after this one
        self._to_idle(then)
        return TurnEnded(end, reason)

    def _to_idle(self, state: GateState) -> None:
        self._state = state
        self._window = 0
        self._silent = 0


def make_gate(settings: Settings, judge: SpeechJudge | None = None) -> Gate:
    """The gate the settings describe; the judge is built from them unless one is given."""
    g = settings.gate
    if judge is None and g.mode == "vad":
        judge = make_judge(g)
    return Gate(g, judge, settings.audio.period_ms, g.foreground_db)
