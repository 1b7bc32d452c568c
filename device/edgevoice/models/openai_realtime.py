"""OpenAI Realtime on a URL of our choosing (`model.endpoint`), told about the device's barge-ins, ending each
user turn itself. Imported only when that provider is chosen."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any, cast

import strands.bidi.models.openai.realtime as realtime
from strands.bidi.models.openai.realtime import OpenAIRealtimeModel
from strands.bidi.types.content import BidiContentDelta, BidiMessage
from strands.bidi.types.events import BidiOutputEvent
from strands.bidi.types.media import AudioDelta
from strands.types.content import Messages
from strands.types.tools import ToolSpec

from ..pcm import END_OF_TURN

log = logging.getLogger(__name__)

VAD_SILENCE_MS = 2000
"""Server VAD's `silence_duration_ms` while the device ends turns itself (Strands' default is 500). Longer than
any silence the gate sends inside a turn at its defaults (a pause shorter than `gate.hangover_ms`, 700 ms; after
the speech the hangover and the 600 ms end marker, 1.3 s; 1.7 s with the next turn's 400 ms pre-roll), so the
server cannot end a turn the gate keeps open. Server VAD stays on: Strands requires it (start() raises without
it), and it still hears the user start talking over an answer (`interrupt_response`)."""
MIN_COMMIT_MS = 100
"""The real server refuses to commit less audio than this (`input_audio_buffer_commit_empty`)."""


class EndpointOpenAIRealtimeModel(OpenAIRealtimeModel):
    """OpenAIRealtimeModel that dials `endpoint` (a ws:// or wss:// URL; `?model=` is added) when it is set.

    Strands 1.62 builds the URL inside start() from the module constant OPENAI_REALTIME_URL and takes no
    URL argument. start() reads that constant before its first await, so we set it just before and put it
    back as soon as this task first yields (and again when start() ends): no other task ever runs while it
    holds our URL, so no other model in the process can dial it, and restart() (which calls start()) is
    covered too. The alternative, copying start(), would drift from Strands' session set-up.

    `interrupt(played_ms)` tells the server about a barge-in the device detected (`response.cancel`,
    `conversation.item.truncate`): Strands' `send()` takes only messages and audio, so the model says it itself.

    With `commit_turns` (the default) the device's gate ends each user turn, not the server's VAD: when the
    mic's end marker (the AudioDelta marked `END_OF_TURN`) reaches `send()`, the buffer is committed and an
    answer asked for at once (`_end_turn`), and the server's VAD waits `vad_silence_ms` of silence, more than
    a turn holds, so it does not end turns by itself. See `_end_turn` for why exactly one response follows.
    """

    _turn_open: bool  # audio of a turn was sent and its end marker not yet
    _sent_ms: float  # audio of the open turn sent so far
    _vad_ended: bool  # the server's VAD committed on its own since the open turn's speech began
    _commits_in_flight: int  # our commits whose `input_audio_buffer.committed` has not come yet

    def __init__(
        self, *, endpoint: str = "", commit_turns: bool = True, vad_silence_ms: int = VAD_SILENCE_MS, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.endpoint = endpoint
        self.commit_turns = commit_turns
        self.vad_silence_ms = vad_silence_ms
        self.turns_committed = 0
        """Turns the device committed (for tests and the bench)."""
        self._reset_turns()
        # The audio items of the last response that spoke: [item_id, content_index, ms received]. Strands
        # drops the item ids on the way to its events, and `conversation.item.truncate` needs them.
        self._spoken: list[tuple[str, int, float]] = []
        self._spoken_response: str | None = None

    async def start(
        self,
        system_prompt: str | None = None,
        tools: list[ToolSpec] | None = None,
        messages: Messages | None = None,
        **kwargs: Any,
    ) -> None:
        self._spoken, self._spoken_response = [], None  # item ids of an old connection mean nothing to a new one
        self._reset_turns()  # and its commits neither: a turn cut off by a drop is sent again whole
        if not self.endpoint:
            await super().start(system_prompt, tools, messages, **kwargs)
            return
        saved = realtime.OPENAI_REALTIME_URL

        def restore() -> None:
            if self.endpoint == realtime.OPENAI_REALTIME_URL:
                realtime.OPENAI_REALTIME_URL = saved

        realtime.OPENAI_REALTIME_URL = self.endpoint
        handle = asyncio.get_running_loop().call_soon(restore)
        try:
            await super().start(system_prompt, tools, messages, **kwargs)
        finally:
            handle.cancel()
            restore()

    def _build_session_config(self, system_prompt: str | None, tools: list[ToolSpec] | None) -> dict[str, Any]:
        config = super()._build_session_config(system_prompt, tools)
        detection = config["audio"]["input"]["turn_detection"]  # Strands checked: on, creating and interrupting
        if self.commit_turns and detection.get("type", "server_vad") == "server_vad":
            # Only ever longer: a shorter silence would let the server end a turn inside the user's pauses.
            detection["silence_duration_ms"] = max(int(detection.get("silence_duration_ms") or 0), self.vad_silence_ms)
        return config

    async def send(self, content: BidiMessage | BidiContentDelta) -> None:
        if self.commit_turns and isinstance(content, AudioDelta) and self._connection_id:
            if cast(Mapping[str, object], content.source).get(END_OF_TURN):
                # Before the marker's own audio (600 ms of digital silence): the commit need not wait for it
                # to be uploaded. The silence then opens the next buffer, where it is harmless.
                if self._sent_ms >= MIN_COMMIT_MS:
                    await self._end_turn()
                    await super().send(content)
                else:  # a tap of push-to-talk: the server commits no less than 100 ms, so the silence first
                    await super().send(content)
                    await self._end_turn()
                self._sent_ms = 0.0
                return
            self._sent_ms += len(content.source.get("bytes") or b"") / 2 / realtime.DEFAULT_SAMPLE_RATE * 1000
            if not self._turn_open:
                # A turn's first audio: a server commit that came before it ended earlier audio, not this turn.
                self._turn_open, self._vad_ended = True, False
        await super().send(content)

    async def _end_turn(self) -> None:
        """Commit the user's turn and ask for its answer: exactly one response per turn, because
        - a manual commit with server VAD on creates no response (OpenAI's `input_audio_buffer.commit`: "it will
          not create a response from the model"), so `response.create` is sent with it, in order on the socket:
          the response includes the committed audio;
        - the server's VAD does not end the turn as well: it waits `vad_silence_ms`, longer than the turn holds;
          where it did end it anyway (a `gate.hangover_ms` longer than that), its own commit arrived before the
          end marker (`_vad_ended`) and the turn is left to it (`create_response` answers it);
        - Strands' bookkeeping is kept as its `_flush_response_request` keeps it for a response it asks for
          (under the same lock, `response_requested` set until `response.created`), so it sends no second
          `response.create`; while an answer is still running the server refuses ours with
          `conversation_already_has_active_response`, and Strands then asks again once that answer is done."""
        self._turn_open = False
        if self._vad_ended:
            self._vad_ended = False
            log.debug("openai: the server's VAD already ended this turn")
            return
        state = self._session_state
        async with state.lock:
            await self._send_event({"type": "input_audio_buffer.commit"})
            self._commits_in_flight += 1
            state.response_pending = False
            state.response_requested = True
            state.pending_input_ids.clear()  # in order on the socket: our request covers them
            try:
                await self._send_event({"type": "response.create"})
            except BaseException:
                state.response_requested = False
                state.response_pending = True
                raise
        self.turns_committed += 1
        log.debug("openai: turn committed by the device")

    def _reset_turns(self) -> None:
        self._turn_open, self._sent_ms, self._vad_ended, self._commits_in_flight = False, 0.0, False, 0

    def _note_turn_event(self, event: dict[str, Any]) -> None:
        """Tell the server's own turn ends from the answers to ours (`_vad_ended`)."""
        kind = event.get("type")
        if kind == "input_audio_buffer.speech_started":
            self._vad_ended = False  # speech after a server commit: the turn goes on, and ours will end it
        elif kind == "input_audio_buffer.committed":
            if self._commits_in_flight:
                self._commits_in_flight -= 1
            else:
                self._vad_ended = True
        elif kind == "error" and (event.get("error") or {}).get("code") == "input_audio_buffer_commit_empty":
            self._commits_in_flight = max(0, self._commits_in_flight - 1)

    def _convert_openai_event(self, openai_event: dict[str, Any], state: Any = None) -> list[BidiOutputEvent] | None:
        if openai_event.get("type") == "response.output_audio.delta":
            self._note_audio(openai_event)
        if self.commit_turns and (state is None or state is self._session_state):  # not a superseded reader's
            self._note_turn_event(openai_event)
        return super()._convert_openai_event(openai_event, state)

    def _note_audio(self, event: dict[str, Any]) -> None:
        if event.get("response_id") != self._spoken_response:
            self._spoken_response, self._spoken = event.get("response_id"), []
        key = (str(event.get("item_id")), int(event.get("content_index", 0)))
        delta: str = event.get("delta", "")
        ms = (len(delta) * 3 // 4 - delta[-2:].count("=")) / 2 / realtime.DEFAULT_SAMPLE_RATE * 1000
        if self._spoken and self._spoken[-1][:2] == key:
            ms += self._spoken.pop()[2]
        self._spoken.append((*key, ms))

    async def interrupt(self, played_ms: int) -> None:
        """The device's barge-in (`daemon/played.Interruptible`): cancel the response if it still runs, and
        truncate the last spoken response's audio to the `played_ms` the user heard, so the server's context
        holds only that (it drops the transcript of the truncated part). Items the user never heard are
        truncated to 0 ms; items heard whole are left alone."""
        if not self._connection_id:
            return
        if self._session_state.active_responses:  # else the server answers `response_cancel_not_active`
            await self._send_event({"type": "response.cancel"})
        offset = 0.0
        for item_id, index, ms in self._spoken:
            end = int(min(max(played_ms - offset, 0.0), ms))  # beyond the item's audio is an error
            offset += ms
            if end < int(ms):
                truncate = {"type": "conversation.item.truncate", "item_id": item_id, "content_index": index}
                await self._send_event({**truncate, "audio_end_ms": end})
        self._spoken, self._spoken_response = [], None
