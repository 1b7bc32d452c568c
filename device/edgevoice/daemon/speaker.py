"""The speaker side of the voice loop: BidiAgent output events -> playback, transcripts, state.

A Strands OutputStream (`start`, `stop`, `__call__`). Events are told apart by their `type`, the
field Strands' TypedEvents carry, so this module loads without importing Strands: the daemon gates
frames while Strands is still being imported.

Barge-in (`flush()`, called by the mic when a turn opens while an answer plays; or the model's own
`bidi_barge_in`): playback stops, the rest of that answer is muted, the model is told how much of it
was played (`played.Interruptible`, where the model can be told), and the answer's stored assistant
transcript is rewritten to the words that were played (`played.py`), through the agent's own update
path, so the session store rewrites the same message file.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from ..pcm import SAMPLE_BYTES
from .played import Answer, Interruptible, PlayedAudio, b64_size, cut_message, find_message, find_transcript
from .state import Event, StateMachine

if TYPE_CHECKING:
    from strands.bidi import BidiAgent

log = logging.getLogger(__name__)


class Player(Protocol):
    @property
    def is_playing(self) -> bool: ...

    @property
    def rate(self) -> int:
        """The device rate: `flush()` counts bytes at it."""
        ...

    @property
    def buffer_frames(self) -> int:
        """The device buffer, which a flush discards unplayed."""
        ...

    def play(self, pcm: bytes, rate: int) -> None: ...

    def flush(self) -> int: ...


class SpeakerOutput:
    """Plays model audio, stops it on barge-in, reports transcripts and finished answers."""

    def __init__(
        self,
        player: Player,
        state: StateMachine,
        *,
        on_transcript: Callable[[str, str], None] | None = None,
        on_response_done: Callable[[], None] | None = None,
        on_event: Callable[[], None] | None = None,
        on_answered: Callable[[], None] | None = None,
    ) -> None:
        self._player = player
        self._state = state
        self._on_transcript = on_transcript
        self._on_response_done = on_response_done
        self.on_event = on_event
        """Called for every event the agent puts out: the connection is alive (the connection's watch)."""
        self.on_answered = on_answered
        self.on_answering: Callable[[], None] | None = None
        """Called when an answer begins (`bidi_response_start`): it answers the turns sent so far."""
        """Called when an answer ended (`bidi_response_stop`): nothing is owed any more."""
        self._muted: set[str] = set()
        self._current: str | None = None
        self._agent: BidiAgent | None = None
        self._played = PlayedAudio()
        self._tasks: set[asyncio.Task[None]] = set()
        self.cue_only = False
        """The stretch playing holds nothing but a cue (`play_cue`): its start is no answer's."""
        self.responses_done = 0
        self.audio_bytes = 0
        self.answers_cut = 0

    async def start(self, agent: BidiAgent) -> None:
        # Answers of an earlier run may still play: cut later, they are stored through this agent, which has
        # the same messages (the same agent run again, or a fresh one restored from the store).
        self._agent = agent

    async def stop(self) -> None:
        self._played.connection_ended()

    @property
    def is_playing(self) -> bool:
        return self._player.is_playing

    def play_notice(self, pcm: bytes, rate: int) -> None:
        """Play audio that is no answer (`notices.py`): a barge-in over it must not count it as an answer's."""
        self._speaking()
        self._foreign(pcm, rate)

    def play_cue(self, pcm: bytes, rate: int) -> None:
        """Play a cue that only marks a moment (the listening earcon, inside the user's turn): no answer or
        notice starts, so the state machine must not go to speaking (`cue_only` until anything else plays)."""
        if not self._player.is_playing:
            self.cue_only = True
        self._foreign(pcm, rate)

    def playback_idle(self) -> None:
        """The player went idle: whatever plays next starts a new stretch."""
        self.cue_only = False

    def _speaking(self) -> None:
        """Something the user listens to is queued. If only a cue was playing, its stretch never moved the
        state machine: the speaking starts now."""
        if self.cue_only:
            self.cue_only = False
            if self._player.is_playing:
                self._state.fire(Event.PLAYBACK_STARTED)

    def _foreign(self, pcm: bytes, rate: int) -> None:
        self._played.foreign(len(pcm) / SAMPLE_BYTES / rate)
        self._player.play(pcm, rate)

    def flush(self) -> int:
        """Barge-in by the user: drop the answer being played and whatever of it still arrives, tell the
        model, and cut the stored transcript to what was played. Returns the bytes dropped."""
        return self._flush(tell=True)

    def _flush(self, *, tell: bool) -> int:
        if self._current is not None:
            self._muted.add(self._current)
        dropped = self._player.flush()
        rate = self._player.rate
        cut = self._played.flushed(dropped / SAMPLE_BYTES / rate, self._player.buffer_frames / rate)
        if cut:
            self._spawn(self._after_flush(cut, tell=tell))
        return dropped

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        try:
            task = asyncio.get_running_loop().create_task(work)
        except RuntimeError:  # flushed off the loop (nothing in the daemon does): nothing to tell or store
            work.close()
            return
        self._tasks.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(self._tasks.discard)

    async def _after_flush(self, answers: Sequence[Answer], *, tell: bool) -> None:
        model = self._agent.model if self._agent is not None else None
        # Only the newest answer is told: it is the one the model is generating, or generated last.
        played_ms = int((answers[0].played_s or 0.0) * 1000)
        if tell and isinstance(model, Interruptible):
            try:
                await model.interrupt(played_ms)
            except Exception as e:  # a connection that went away is the connection's business, not ours
                log.info("barge-in: could not tell the model: %s: %s", type(e).__name__, e)
        try:
            for answer in answers:
                await self._store_cuts(answer)
        except Exception:  # nobody awaits this task: say what went wrong rather than lose it
            log.exception("barge-in: the played share of an answer was not stored")

    async def _store_cuts(self, answer: Answer) -> None:
        """Rewrite the answer's transcript messages to the played share, once it was cut and has ended."""
        agent = self._agent
        if agent is None:
            return
        for tracking_id in answer.pending_cuts():
            answer.cut.add(tracking_id)
            message = find_message(agent.messages, tracking_id)
            cut = None if message is None else cut_message(message, answer.share)
            if cut is None:
                continue
            # Strands' own update path: MessageUpdatedEvent, on which the store rewrites the same file.
            await agent._update_message(cut, strict=False)  # type: ignore[arg-type]
            self.answers_cut += 1
            log.info("barge-in: answer stored as played: %.0f%% of %.1f s", answer.share * 100, answer.received_s)

    async def __call__(self, event: Mapping[str, Any]) -> None:
        kind = event.get("type")
        if self.on_event:
            self.on_event()
        if kind == "bidi_audio_delta":
            rate = event["sample_rate"]
            if event["content_id"] in self._muted:
                self._played.audio(b64_size(event["audio"]) / SAMPLE_BYTES / rate, queued=False)
                return
            self._current = event["content_id"]
            pcm = base64.b64decode(event["audio"])
            self.audio_bytes += len(pcm)
            self._played.audio(len(pcm) / SAMPLE_BYTES / rate, queued=True)
            self._speaking()
            self._player.play(pcm, rate)
        elif kind == "bidi_barge_in":
            self._flush(tell=False)  # the model interrupted itself: it knows
            self._state.fire(Event.BARGE_IN)
        elif kind == "bidi_transcript_block":
            # Its length only, even at DEBUG: the journal is readable by the `adm` group, and a debug log is
            # what gets pasted into a bug report; the words stay in the 0600 session files.
            log.debug("%s transcript: %d characters", event["role"], len(event["transcript"]))
            if event["role"] == "assistant":
                await self._assistant_transcript(event["transcript"])
            if self._on_transcript:
                self._on_transcript(event["role"], event["transcript"])
        elif kind == "bidi_response_start":
            if self.on_answering:
                self.on_answering()
            self._muted.clear()
            self._played.started(event.get("response_id", ""), playing=self._player.is_playing)
        elif kind == "bidi_response_stop":
            if self.on_answered:
                self.on_answered()
            self.responses_done += 1
            if not self._player.is_playing:
                self._state.fire(Event.RESPONSE_DONE)
            if self._on_response_done:
                self._on_response_done()
            answer = self._played.stopped(event.get("response_id", ""))
            if answer is not None:
                await self._store_cuts(answer)  # an answer cut while it streamed is all in now

    async def _assistant_transcript(self, text: str) -> None:
        if self._agent is None:
            return
        tracking_id = find_transcript(self._agent.messages, text)
        answer = None if tracking_id is None else self._played.transcript(tracking_id)
        if answer is not None:
            await self._store_cuts(answer)  # the answer may have been cut and ended already
