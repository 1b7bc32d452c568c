"""The microphone side of the voice loop: capture frames -> gate -> AudioDelta for the BidiAgent.

A Strands InputStream (`start`, `stop`, `__call__`). Only gated turn audio reaches the model; after
each turn a short run of digital silence marks its end (cloud models and the local one endpoint on
trailing silence). A turn that opens while the speaker plays is a barge-in: playback stops first.
Echo guard (half-duplex): frames in the short tail after playback are dropped, not gated.

Turn audio waits in the mic at 16 kHz and is converted to the model's rate as the agent reads it, so it can
go to whichever model the connection runs (a cloud model, or the offline fallback at another rate). A turn
that was partly read by a connection that then dropped is read again, whole, by the next one
(`connection_lost`): the user does not have to repeat half a sentence.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from ..frontend.talk import LearningFrame, TalkFrame, UnsureFrame
from ..gate import GateEvent, TurnEnded, TurnFrame, TurnStarted
from ..pcm import END_OF_TURN, RATE, ms_bytes
from .state import Event, StateMachine

if TYPE_CHECKING:
    from strands.bidi import BidiAgent
    from strands.bidi.types.media import AudioDelta

log = logging.getLogger(__name__)

CUE_TAIL_S = 0.08
"""How long a quiet cue (-18 dBFS, 100 ms) still rings in the room after the speaker went quiet."""


class FrameSource(Protocol):
    async def read(self) -> bytes:
        """One capture period of 16 kHz mono S16_LE; b"" or CaptureEnded once the source has ended."""
        ...


class TurnGate(Protocol):
    @property
    def in_turn(self) -> bool: ...

    def process(self, frame: bytes, talk_over: bool = False) -> list[GateEvent]: ...

    def listen(self, frame: bytes) -> None: ...

    def press(self) -> list[GateEvent]: ...

    def release(self) -> list[GateEvent]: ...


class Speaker(Protocol):
    @property
    def is_playing(self) -> bool: ...

    def flush(self) -> int: ...


Converter = Callable[[bytes], bytes]


class GatedMic:
    """Reads frames, gates them, and hands turn audio to the agent one AudioDelta at a time."""

    def __init__(
        self,
        source: FrameSource,
        gate: TurnGate,
        speaker: Speaker,
        state: StateMachine,
        *,
        to_model_rate: Converter | None = None,
        end_padding_ms: int = 600,
        echo_tail_s: float = 0.3,
        on_ready: Callable[[], None] | None = None,
        on_end: Callable[[], None] | None = None,
        on_turn_sent: Callable[[], None] | None = None,
        on_turn_started: Callable[[], None] | None = None,
        max_pending: int = 1000,
    ) -> None:
        self._source = source
        self._gate = gate
        self._speaker = speaker
        self._state = state
        self.convert: Converter = to_model_rate or (lambda pcm: pcm)
        self._padding = bytes(ms_bytes(end_padding_ms))  # digital silence at 16 kHz, before conversion
        self._echo_tail_s = echo_tail_s
        self._on_ready = on_ready
        self._on_end = on_end
        self.on_turn_sent = on_turn_sent
        """Called when the agent took a turn's end marker: from now on an answer is due (the connection's watch)."""
        self.on_turn_started = on_turn_started
        """Called when a turn opens: the user has the floor."""
        self.on_turn_ended: Callable[[], None] | None = None
        """Called when a turn closes (its end marker queued): an answer is owed."""
        self.on_turn_dropped: Callable[[], None] | None = None
        """Called when an open turn is dropped for having no speech in it: nothing is owed."""
        self.on_summoned: Callable[[], None] | None = None
        """Called when the user summoned the device (a button press, the wake word): it plays the listening
        cue, after the turn opened (a barge-in has stopped the answer by then)."""
        self._cue_muted = False
        self._cue_until_quiet = False
        self.turns_dropped = 0
        # Turn audio (16 kHz) waiting for the agent, each chunk flagged when it is a turn's end marker; bounded
        # so a model that is down cannot grow it without end.
        self._pending: deque[tuple[bytes, bool]] = deque(maxlen=max_pending)
        # The chunks of the turn being read whose end marker has not been read yet: what a drop would cut.
        self._reading: list[bytes] = []
        self._wake = asyncio.Event()
        self._speaker_quiet_at = 0.0
        self.frames_seen = 0
        self.frames_sent = 0
        self.turns_started = 0
        self.turns_ended = 0
        self.turns_sent = 0
        """Turns whose end marker an agent has read: each is owed an answer."""
        self.barge_ins = 0
        self.echo_dropped = 0
        self.ended = False

    async def start(self, agent: BidiAgent) -> None:
        return

    async def stop(self) -> None:
        return

    def speaker_went_quiet(self) -> None:
        """Called on the loop when playback goes idle: the echo tail starts now."""
        self._speaker_quiet_at = time.monotonic()

    async def pump(self) -> None:
        """Read and gate frames until the source ends. Runs whether or not the model is connected."""
        from ..audio import CaptureEnded

        try:
            while frame := await self._source.read():
                self.handle(frame)
        except CaptureEnded:
            pass
        self.ended = True
        log.info("capture ended after %d frames", self.frames_seen)
        if self._on_end:
            self._on_end()

    async def __call__(self) -> AudioDelta:
        from strands.bidi.types.media import AudioDelta  # loaded by now: only the agent calls this

        while True:
            while not self._pending:
                self._wake.clear()
                await self._wake.wait()
            pcm, end = self._pending.popleft()
            if end:
                self._reading.clear()
                self.turns_sent += 1
            else:
                self._reading.append(pcm)
            out = self.convert(pcm)
            if end and self.on_turn_sent:
                self.on_turn_sent()
            if out:  # a resampler may hold back a short first chunk
                delta = AudioDelta(format="pcm", source={"bytes": out})
                if end:
                    delta.source[END_OF_TURN] = True  # type: ignore[literal-required]
                return delta

    def connection_lost(self) -> None:
        """The connection dropped: a turn it had read only in part is queued again, whole, for the next one."""
        if not self._reading:
            return
        log.info("mic: the turn cut off by the drop goes to the next connection (%d chunks)", len(self._reading))
        self._pending.extendleft((pcm, False) for pcm in reversed(self._reading))
        self._reading.clear()
        self._wake.set()

    @property
    def pending(self) -> int:
        return len(self._pending)

    def drop_waiting(self) -> int:
        """Drop the whole turns no agent has read (no model to take them); a turn still open stays. Returns
        the turns dropped."""
        items = list(self._pending)
        last_end = max((i for i, (_, end) in enumerate(items) if end), default=-1)
        if last_end < 0:
            return 0
        self._pending = deque(items[last_end + 1 :], maxlen=self._pending.maxlen)
        self._reading.clear()
        return sum(1 for _, end in items[: last_end + 1] if end)

    def turn_waiting(self) -> bool:
        """Whether a whole turn (its end marker) waits for the agent to read it."""
        return any(end for _, end in self._pending)

    def cue(self, *, mute: bool) -> None:
        """A cue starts playing inside the open turn, until the speaker has gone quiet and the cue's short
        ring-out has passed. `mute`: nothing cancels its echo, and the turn gets digital silence in its place.
        Not the answer's echo tail: a user who presses the button and talks straight away starts about 300 ms
        later, and those words must reach the model. Without `mute` the canceller's output goes to the turn as
        it is, even where it is not sure yet whether there is an echo (`UnsureFrame`): a fresh AEC3 takes a
        cue's echo about 40 dB down, and the user is not expected to talk over their own summons."""
        self._cue_until_quiet = True
        self._cue_muted = mute

    def _cue_sounding(self) -> bool:
        quiet = not self._speaker.is_playing and time.monotonic() - self._speaker_quiet_at >= CUE_TAIL_S
        if self._cue_until_quiet and quiet:
            self._cue_until_quiet = self._cue_muted = False
        return self._cue_until_quiet

    def _muted(self) -> bool:
        return self._cue_sounding() and self._cue_muted

    def _in_echo_tail(self) -> bool:
        return not self._speaker.is_playing and time.monotonic() - self._speaker_quiet_at < self._echo_tail_s

    def handle(self, frame: bytes) -> None:
        """Gate one frame; queue what the model must get. Plain code, driven frame by frame in tests."""
        self.frames_seen += 1
        if self.frames_seen == 1 and self._on_ready:
            self._on_ready()
        if isinstance(frame, UnsureFrame) and self._gate.in_turn and not self._cue_sounding():
            # The canceller does not know yet whether there is an echo, and AEC3 alone cuts into a user it
            # has nothing to cancel for: the user has the floor, so the turn takes their words whole.
            frame = frame.whole
        if isinstance(frame, LearningFrame) and not self._gate.in_turn:
            # The echo canceller has not learned the room yet (the first answer's first second or two): the
            # frame opens no turn, but the gate hears it, so that a barge-in right after has a background.
            self.echo_dropped += 1
            self._gate.listen(frame)
            return
        if self._in_echo_tail() and not self._gate.in_turn:
            # The room still rings with the answer's last words: they must not open a turn. (A turn already
            # open is the user's, who barged in: their words go on reaching it.)
            self.echo_dropped += 1
            return
        # The echo canceller marks a frame in which it heard the user talk over the speaker: the fast barge-in.
        talk = isinstance(frame, TalkFrame)
        self._apply(self._gate.process(frame, talk_over=talk), "talk-over" if talk else "voice")

    def press(self) -> None:
        """Push-to-talk button down (call on the event loop): a turn opens, barging in if needed."""
        self._apply(self._gate.press(), "button")

    def release(self) -> None:
        """Push-to-talk button up: the turn ends."""
        self._apply(self._gate.release(), "button")

    def _apply(self, decisions: list[GateEvent], how: str) -> None:
        for decision in decisions:
            if isinstance(decision, TurnStarted):
                self.turns_started += 1
                log.debug("turn opened at %.2f s of capture (%s)", decision.start_sample / RATE, how)
                if self._speaker.is_playing:
                    dropped = self._speaker.flush()
                    self.barge_ins += 1
                    log.info("barge-in: playback stopped, %d bytes dropped", dropped)
                    self._state.fire(Event.BARGE_IN)
                self._state.fire(Event.TURN_STARTED)
                if self.on_turn_started:
                    self.on_turn_started()
                for f in decision.preroll:
                    self._send(f)
                if decision.summoned and self.on_summoned:
                    self.on_summoned()
            elif isinstance(decision, TurnFrame):
                self._send(bytes(len(decision.frame)) if self._muted() else decision.frame)
            elif isinstance(decision, TurnEnded) and decision.reason == "empty":
                self._drop_open_turn()
            elif isinstance(decision, TurnEnded):
                self.turns_ended += 1
                log.debug("turn ended at %.2f s of capture (%s)", decision.end_sample / RATE, decision.reason)
                self._send(self._padding, end=True)
                if self.on_turn_ended:
                    self.on_turn_ended()
                self._state.fire(Event.TURN_ENDED)

    def _drop_open_turn(self) -> None:
        """A button press or a wake word with nothing said: what the agent has not read of it is dropped, no
        end marker goes (the model would be owed nothing it could answer; what it read was silence, which no
        model answers), and the state goes back to idle."""
        items = list(self._pending)
        last_end = max((i for i, (_, end) in enumerate(items) if end), default=-1)
        self._pending = deque(items[: last_end + 1], maxlen=self._pending.maxlen)
        self._reading.clear()
        self.turns_dropped += 1
        log.info("nothing was said in the turn (a button press or a wake word alone); it is dropped")
        if self.on_turn_dropped:
            self.on_turn_dropped()
        self._state.fire(Event.TURN_DROPPED)

    def _send(self, pcm: bytes, *, end: bool = False) -> None:
        self.frames_sent += 1
        self._pending.append((pcm, end))
        self._wake.set()

    def stats(self) -> dict[str, Any]:
        return {
            "frames_seen": self.frames_seen,
            "frames_sent": self.frames_sent,
            "turns": self.turns_ended,
            "barge_ins": self.barge_ins,
            "echo_dropped": self.echo_dropped,
        }
