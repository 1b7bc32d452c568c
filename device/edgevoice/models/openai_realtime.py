"""OpenAI Realtime on a URL of our choosing (`model.endpoint`). Imported only when that provider is chosen."""

from __future__ import annotations

import asyncio
from typing import Any

import strands.bidi.models.openai.realtime as realtime
from strands.bidi.models.openai.realtime import OpenAIRealtimeModel
from strands.types.content import Messages
from strands.types.tools import ToolSpec


class EndpointOpenAIRealtimeModel(OpenAIRealtimeModel):
    """OpenAIRealtimeModel that dials `endpoint` (a ws:// or wss:// URL; `?model=` is added) when it is set.

    Strands 1.62 builds the URL inside start() from the module constant OPENAI_REALTIME_URL and takes no
    URL argument. start() reads that constant before its first await, so we set it just before and put it
    back as soon as this task first yields (and again when start() ends): no other task ever runs while it
    holds our URL, so no other model in the process can dial it, and restart() (which calls start()) is
    covered too. The alternative, copying start(), would drift from Strands' session set-up.
    """

    def __init__(self, *, endpoint: str = "", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.endpoint = endpoint

    async def start(
        self,
        system_prompt: str | None = None,
        tools: list[ToolSpec] | None = None,
        messages: Messages | None = None,
        **kwargs: Any,
    ) -> None:
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
