"""The gate: frames in, turn decisions out. Plain code, no I/O; the caller drives it frame by frame.

vad mode: webrtcvad on every frame, the judge only where webrtcvad hears speech (cascade), N-of-M
smoothing to open a turn, the pre-roll ring sent with it, hangover to end it, a cap on its length.
push_to_talk mode: `press()` opens a turn, every frame until `release()` goes through.
wake_word mode: armed, the gate only feeds a wake-word detector (and keeps learning the room's level); when
it fires, a turn opens from just after the wake word and waits for the command, which the cascade then ends
as in vad mode; a wake word with nothing said after it ends `empty`.
The button works in vad and wake_word modes too (`gpio.talk_pin` beside the voice gate): a press opens a held
turn, or holds open the turn the voice gate already opened; release ends it and the voice gate takes over again.
"""

from __future__ import annotations

import enum
from collections import deque
from typing import Protocol

import numpy as np
import webrtcvad

from ..config import GateSettings, Settings
from ..pcm import RATE, check_period, frame_bytes, frame_samples, ms_samples, samples
from .cascade import LazyJudge
from .events import GateEvent, TurnEnded, TurnFrame, TurnStarted
from .judge import SpeechJudge, make_judge
from .level import Foreground

FOREGROUND_DB = 2.0  # default of gate.foreground_db: how far over the background's peaks speech must rise
PROBATION_MS = 300  # audio heard just before a turn opens is the turn's onset, not background
# wake_word mode: the wake word must never join the background (the command, as loud as the wake word, would
# then not stand out of it). It is heard whole before the detector fires: up to about a second of word plus
# up to 0.45 s until the detector is sure (measured on espeak-ng voices), so frames wait this long instead.
WAKE_PROBATION_MS = 2000
# wake_word mode: a pause this long, this far under the loudest 10 ms of the detector's lookback, is taken as
# the end of the wake word (see Gate._wake_up). Longer than the closure of a stop consonant (the "b" of
# "nabu", the "t" of "stop"), so that neither the word nor a command said in one breath is cut at one; in
# noise 10 dB under the speech no pause is that quiet and the whole lookback is sent.
WAKE_PAUSE_MS = 90
WAKE_PAUSE_DB = 20.0
_BLOCK = ms_samples(10)


class GateState(enum.Enum):
    IDLE = "idle"  # no turn; vad: listening, push_to_talk: button up
    ARMED = "armed"  # wake_word: no turn, listening for the wake word
    WOKEN = "woken"  # wake_word: turn open after the wake word, no speech of the command heard yet
    SPEAKING = "speaking"  # vad, wake_word: turn open, the last frame was speech
    HANGOVER = "hangover"  # vad, wake_word: turn open, counting non-speech towards its end
    COOLDOWN = "cooldown"  # a turn was cut at max length: vad waits for a pause, push_to_talk for release
    HELD = "held"  # push_to_talk: turn open while the button is held


_OPEN = (GateState.WOKEN, GateState.SPEAKING, GateState.HANGOVER, GateState.HELD)
_VOICE_TURN = (GateState.WOKEN, GateState.SPEAKING, GateState.HANGOVER)  # the foreground's frames of a turn
_ONSET = (GateState.IDLE, GateState.WOKEN)  # states where speech must be clear to count


class WakeDetector(Protocol):
    """Hears a wake word in 16 kHz mono S16_LE audio fed frame by frame; keeps its own streaming state."""

    lookback_samples: int
    """How far before the end of the frame it fires in the wake word can have ended: where the turn starts."""

    def reset(self) -> None: ...

    def __call__(self, frame: bytes) -> bool:
        """Feed the stream's next frame; True in the frame where the wake word is recognised (once per saying)."""
        ...


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
        detector: WakeDetector | None = None,
    ) -> None:
        check_period(period_ms)  # webrtcvad takes 10, 20 or 30 ms frames only
        if settings.start_frames > settings.window_frames:
            raise ValueError("start_frames must not exceed window_frames")
        self.settings = settings
        self.period_ms = period_ms
        self._ptt = settings.mode == "push_to_talk"
        self._detector = detector if settings.mode == "wake_word" else None
        if settings.mode == "wake_word" and detector is None:
            raise ValueError("wake_word mode needs a wake-word detector")
        if self._detector is not None:
            self._detector.reset()  # a new stream: what it heard before is not this audio's past
        self._rest = GateState.IDLE if self._detector is None else GateState.ARMED  # where a turn ends up
        self._wake_timeout = int(settings.wake_timeout_s * RATE)
        probation = WAKE_PROBATION_MS if self._detector is not None else PROBATION_MS
        self._fs = frame_samples(period_ms)
        self._frame_bytes = frame_bytes(period_ms)
        self._vad = webrtcvad.Vad(settings.webrtcvad_mode)
        self._judge = None if judge is None else LazyJudge(judge, settings.threshold, self._fs)
        self._fg = (
            None
            if foreground_db is None
            else Foreground(foreground_db, self._fs, period_ms, probation=_frames(probation, period_ms))
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
        if self._detector is not None:
            ring = max(ring, -(-self._detector.lookback_samples // self._fs) + 1)
        self._ring: deque[bytes] = deque(maxlen=ring)
        self._state = self._rest
        self._pos = 0  # samples seen
        self._window = 0  # N-of-M: bit i set when the frame i frames ago was speech
        self._silent = 0  # non-speech frames in a row (hangover, cooldown)
        self._turn_start = 0
        self._woke_at = 0  # where the detector fired: the wake timeout counts from there
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

    def process(self, frame: bytes, talk_over: bool = False) -> list[GateEvent]:
        """`talk_over`: the echo canceller heard the user talk over the speaker in this frame
        (`frontend.TalkFrame`). In vad mode that opens a turn at once, before the cascade would (it needs
        three frames and Silero's say): a barge-in must stop the answer within 100 ms of the user's first
        word. The canceller's test is its own (the user's level over what it predicts of the echo), so it
        is not repeated here; the turn then goes on, and ends, as any other."""
        start, end, heard = self._take(frame)
        if self._ptt or self._state is GateState.HELD:
            return self._ptt_frame(frame, start, end)
        state = self._state
        if talk_over and state is GateState.IDLE:
            if self._fg is not None:
                # The room as the ring heard it, which webrtcvad may not have let it measure (behind the
                # canceller it is near silence): the turn's frames are then judged against it. This frame
                # and its probation go to the turn, not the background (`_open`).
                self._fg.listen(self._ring, end)
            self._window = ((self._window << 1) | 1) & self._mask
            return self._open(frame, start)
        speech = self._vad.is_speech(frame, RATE)
        woke: list[GateEvent] = []
        if state is GateState.ARMED:
            if speech and self._fg is not None:
                self._fg.listen(self._ring, end)  # the room's level, which the command must beat
            if not heard:
                # webrtcvad alone (the judge would cost CPU in every sentence said near the speaker): its
                # latest calls seed the N-of-M window when the wake word is heard.
                self._window = ((self._window << 1) | speech) & self._mask
                return []
            woke = self._wake_up(start, end)
            state = GateState.WOKEN  # and this frame is the first judged for the command
        if speech and self._fg is not None:
            loud = self._fg.loud(self._ring, end, in_turn=state in _VOICE_TURN)
            # The wake word came before the room was known (in the stream's first WAKE_PROBATION_MS, as in a
            # recording that starts with it): the turn's frames never teach it, so the stage abstains.
            speech = loud or (self._detector is not None and state in _VOICE_TURN and self._fg.background() is None)
        if speech and self._judge is not None:
            # Woken, Silero warms up as before a turn (800 ms, over the wake word): a one-word command in
            # noise ("two") stayed under its threshold after a warm-up over the pause alone.
            speech = self._judge.speech(self._ring, end, in_turn=state not in _ONSET)
        # N-of-M: a frame counts only where at least N of the last M were speech (blips don't);
        # inside a turn N-1 do, so quiet stretches of the talker's speech keep it open. After the wake word
        # the command's onset must be as clear as one that opens a turn.
        self._window = w = ((self._window << 1) | speech) & self._mask
        speech = speech and w.bit_count() >= (self._n if state in _ONSET else self._keep_n)
        if state is GateState.IDLE:
            return self._open(frame, start) if speech else []
        if state is GateState.COOLDOWN:
            self._silent = 0 if speech else self._silent + 1
            if self._silent >= self._hangover:
                self._to_idle(self._rest)
            return []
        events: list[GateEvent] = [*woke, TurnFrame(frame)]
        if state is GateState.WOKEN and not speech:
            if end - self._woke_at >= self._wake_timeout or end - self._turn_start >= self._max:
                events.append(self._close(end, "empty", self._rest))
            return events
        if speech:
            self._state = GateState.SPEAKING
            self._silent = 0
        else:
            self._state = GateState.HANGOVER
            self._silent += 1
            if self._silent >= self._hangover:
                events.append(self._close(end, "silence", self._rest))
                return events
        if end - self._turn_start >= self._max:
            # wake_word: the next turn needs the wake word anyway, so no pause need be waited for.
            events.append(self._close(end, "max_length", self._rest if self._detector else GateState.COOLDOWN))
        return events

    def listen(self, frame: bytes) -> None:
        """Hear a frame that may open no turn (the echo canceller has not learned the room: echo may be left
        in it) outside a turn: the stream position, the ring and the room's level follow it, nothing is
        decided. A turn the user opens right after then has its pre-roll, and a background to stand out of."""
        _, end, _ = self._take(frame)  # a wake word heard in it is echo: it wakes nothing
        if self._fg is not None and self._vad.is_speech(frame, RATE):
            self._fg.listen(self._ring, end)
        self._window = (self._window << 1) & self._mask

    def _take(self, frame: bytes) -> tuple[int, int, bool]:
        """The stream's next frame into the position and the ring: (its start, its end, whether the wake-word
        detector recognised the word in it)."""
        if len(frame) != self._frame_bytes:
            raise ValueError(f"a frame must be {self._frame_bytes} bytes (got {len(frame)})")
        start = self._pos
        self._pos = end = start + self._fs
        self._ring.append(frame)
        # Fed every frame, turns included: its streaming state follows the whole stream (a reset reloads the
        # model), and a press or a turn may end at any frame.
        heard = self._detector is not None and self._detector(frame)
        return start, end, heard

    def press(self) -> list[GateEvent]:
        """Push-to-talk button down: the turn opens now; frames go through until `release()`. In vad mode a
        turn the voice gate opened is held open from here (no hangover ends it) rather than opened again."""
        self._held = True
        if self._state in (GateState.SPEAKING, GateState.HANGOVER):
            self._state = GateState.HELD
            self._voiced = self._n  # the voice gate heard speech: this turn is the user's
            return []
        if self._state is GateState.WOKEN:
            self._state = GateState.HELD
            self._voiced = 0  # the wake word is not the command: empty unless something is said now
            return []
        if self._state is not self._rest:
            return []
        self._state = GateState.HELD
        self._turn_start = self._pos
        self._voiced = 0
        return [TurnStarted([], self._pos, summoned=True)]

    def release(self) -> list[GateEvent]:
        """Push-to-talk button up: the turn (if still open) ends after the last frame processed."""
        self._held = False
        state = self._state
        if state is GateState.HELD:
            return [self._close(self._pos, self._held_reason("released"), self._rest)]
        if state is GateState.COOLDOWN:
            self._state = self._rest
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

    def _wake_up(self, start: int, end: int) -> list[GateEvent]:
        """The wake word was heard: a turn opens from where it ended (whole frames reaching back to
        the detector's lookback, never into audio already sent) and waits for the command."""
        assert self._detector is not None
        ring = self._ring
        back = max(0, -(-(self._detector.lookback_samples - self._fs) // self._fs))
        avail = min(len(ring) - 1, back, (start - self._forwarded_end) // self._fs)
        recent = [ring[i] for i in range(len(ring) - 1 - avail, len(ring))]  # the lookback and this frame
        # The lookback reaches into the word when the detector was quick; a pause after the word shows
        # where it ended. Without one (a command in one breath, or noise) the whole lookback goes.
        skip = _frames_before_pause(recent, self._fs)
        preroll = recent[skip:-1]
        self._turn_start = start - len(preroll) * self._fs
        self._woke_at = end
        if self._fg is not None:
            self._fg.turn_opened()  # the wake word waits in probation: the talker's level, never the room's
        self._state = GateState.WOKEN
        # A command said in one breath has begun before the detector fired (and a short one may be nearly
        # over): webrtcvad's calls on the N-1 frames before this one count towards its onset. Those are after
        # the word (the detector fires about 120 ms or more after its end, see gate/wake.py), and at least one
        # frame from this one on must pass the whole cascade, so the wake word alone, or noise, stays empty.
        self._window &= (1 << (self._n - 1)) - 1
        self._silent = 0
        return [TurnStarted(preroll, self._turn_start, summoned=True)]

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


def _frames_before_pause(frames: list[bytes], frame_samples: int) -> int:
    """Whole frames before the first pause in `frames` (WAKE_PAUSE_MS, all WAKE_PAUSE_DB or more under the
    loudest 10 ms of them), or 0 if there is none."""
    x = samples(b"".join(frames)).astype(np.float32)
    n = len(x) // _BLOCK
    blocks = x[: n * _BLOCK].reshape(n, _BLOCK)
    power = np.einsum("ij,ij->i", blocks, blocks)
    quiet = (power <= power.max() * 10 ** (-WAKE_PAUSE_DB / 10)).tolist()
    run = -(-WAKE_PAUSE_MS // 10)
    for i in range(n - run + 1):
        if all(quiet[i : i + run]):
            return i * _BLOCK // frame_samples
    return 0


def make_gate(settings: Settings, judge: SpeechJudge | None = None, detector: WakeDetector | None = None) -> Gate:
    """The gate the settings describe; the judge (and in wake_word mode the detector) is built from them unless
    one is given."""
    g = settings.gate
    if judge is None and g.mode != "push_to_talk":
        judge = make_judge(g)
    if detector is None and g.mode == "wake_word":
        # Imported here only: the TFLite runtime behind it costs RSS the other modes must not pay.
        from .wake import load_detector

        detector = load_detector(g.wake_word)
    return Gate(g, judge, settings.audio.period_ms, g.foreground_db, detector)
