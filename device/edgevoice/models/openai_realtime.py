"""OpenAI Realtime on a URL of our choosing (`model.endpoint`), told about the device's barge-ins. Imported only
when that provider is chosen."""

from __future__ import annotations

import asyncio
from typing import Any

import strands.bidi.models.openai.realtime as realtime
from strands.bidi.models.openai.realtime import OpenAIRealtimeModel
from strands.bidi.types.events import BidiOutputEvent
from strands.types.content import Messages
from strands.types.tools import ToolSpec


class EndpointOpenAIRealtimeModel(OpenAIRealtimeModel):
    """OpenAIRealtimeModel that dials `endpoint` (a ws:// or wss:// URL; `?model=` is added) when it is set.

    Strands 1.62 builds the URL inside start() from the module constant OPENAI_REALTIME_URL and takes no
    URL argument. start() reads that constant before its first await, so we set it just before and put it
    back as soon as this task first yields (and again when start() ends): no other task ever runs while it
    holds our URL, so no other model in the process can dial it, and restart() (which calls start()) is
    covered too. The alternative, copying start(), would drift from Strands' session set-up.

    `interrupt(played_ms)` tells the server about a barge-in the device detected (`response.cancel`,
    `conversation.item.truncate`): Strands' `send()` takes only messages and audio, so the model says it itself.
    """

    def __init__(self, *, endpoint: str = "", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.endpoint = endpoint
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

    def _convert_openai_event(self, openai_event: dict[str, Any], state: Any = None) -> list[BidiOutputEvent] | None:
        if openai_event.get("type") == "response.output_audio.delta":
            self._note_audio(openai_event)
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
