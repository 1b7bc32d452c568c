"""The speaker side of the voice loop: BidiAgent output events -> playback, transcripts, state.

A Strands OutputStream (`start`, `stop`, `__call__`). Events are told apart by their `type`, the
field Strands' TypedEvents carry, so this module loads without importing Strands: the daemon gates
frames while Strands is still being imported.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from .state import Event, StateMachine

if TYPE_CHECKING:
    from strands.bidi import BidiAgent

log = logging.getLogger(__name__)


class Player(Protocol):
    @property
    def is_playing(self) -> bool: ...

    def play(self, pcm: bytes, rate: int) -> None: ...

    def flush(self) -> int: ...


class SpeakerOutput:
    """Plays model audio, stops it on the model's barge-in, reports transcripts and finished answers."""

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
        """Called when an answer ended (`bidi_response_stop`): nothing is owed any more."""
        self._muted: set[str] = set()
        self._current: str | None = None
        self.responses_done = 0
        self.audio_bytes = 0

    async def start(self, agent: BidiAgent) -> None:
        return

    async def stop(self) -> None:
        return

    @property
    def is_playing(self) -> bool:
        return self._player.is_playing

    def flush(self) -> int:
        """Barge-in: drop the answer being played and whatever of it still arrives; bytes dropped."""
        if self._current is not None:
            self._muted.add(self._current)
        return self._player.flush()

    async def __call__(self, event: Mapping[str, Any]) -> None:
        kind = event.get("type")
        if self.on_event:
            self.on_event()
        if kind == "bidi_audio_delta":
            if event["content_id"] in self._muted:
                return
            self._current = event["content_id"]
            pcm = base64.b64decode(event["audio"])
            self.audio_bytes += len(pcm)
            self._player.play(pcm, event["sample_rate"])
        elif kind == "bidi_barge_in":
            self.flush()
            self._state.fire(Event.BARGE_IN)
        elif kind == "bidi_transcript_block":
            # DEBUG only: the journal is readable by the `adm` group, the session files are 0600.
            log.debug("%s: %s", event["role"], event["transcript"])
            if self._on_transcript:
                self._on_transcript(event["role"], event["transcript"])
        elif kind == "bidi_response_start":
            self._muted.clear()
        elif kind == "bidi_response_stop":
            if self.on_answered:
                self.on_answered()
            self.responses_done += 1
            if not self._player.is_playing:
                self._state.fire(Event.RESPONSE_DONE)
            if self._on_response_done:
                self._on_response_done()
