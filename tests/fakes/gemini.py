"""A fake Gemini Live endpoint: websocket over TLS (self-signed certificate for 127.0.0.1) on the path
google-genai dials, JSON messages in the API's camelCase (see /work/shared/providers.md).

Point a model at it with `model.endpoint = fake.url` and `SSL_CERT_FILE = fake.cert` (google-genai reads
SSL_CERT_FILE when the client is built). Each scripted Turn plays once `trigger_bytes` of realtime input
audio arrived, or a client text turn.
"""

from __future__ import annotations

import base64
import json
import re
import ssl
import tempfile
from pathlib import Path
from typing import Any

from websockets.asyncio.server import ServerConnection

from tests.cloudfake import self_signed

from .base import ThreadedFake, Turn, b64, tone

OUTPUT_RATE = 24000  # Gemini Live speaks 24 kHz PCM
PATH = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"


def _snake(key: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()


class FakeGeminiLive(ThreadedFake):
    audio = tone(OUTPUT_RATE)

    def __init__(self, turns: list[Turn] | None = None, directory: Path | None = None) -> None:
        self._tmp = None if directory else tempfile.TemporaryDirectory(prefix="fake-gemini-")
        where = directory or Path(self._tmp.name)  # type: ignore[union-attr]
        self.cert, key = self_signed(where)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, key)
        super().__init__(turns, tls=context)
        self._n = 0

    def stop(self) -> None:
        super().stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    async def converse(self, ws: ServerConnection) -> None:
        pending = 0
        waiting_tool: Turn | None = None
        async for raw in ws:
            msg = {_snake(k): v for k, v in json.loads(raw).items()}
            self.seen.messages.append(msg)
            if "setup" in msg:
                await self._send(ws, {"setupComplete": {}})
            elif "realtime_input" in msg:
                audio = msg["realtime_input"].get("audio") or {}
                n = len(base64.b64decode(audio.get("data", "")))
                self.seen.audio_in += n
                pending += n
                if self.turns[self._turn_index :] and pending >= self.turns[self._turn_index].trigger_bytes:
                    pending = 0
                    turn = self.next_turn()
                    assert turn is not None
                    waiting_tool = await self.play(ws, turn)
            elif "tool_response" in msg:
                body = msg["tool_response"]
                self.seen.tool_results.extend(body.get("function_responses") or body.get("functionResponses") or [])
                if waiting_tool is not None:
                    turn, waiting_tool = waiting_tool, None
                    await self.answer(ws, turn)
            elif "client_content" in msg and (turn := self.next_turn()):
                waiting_tool = await self.play(ws, turn, spoken=False)

    async def _send(self, ws: ServerConnection, message: dict[str, Any]) -> None:
        await self.pause()
        await ws.send(json.dumps(message))

    async def _content(self, ws: ServerConnection, **content: Any) -> None:
        await self._send(ws, {"serverContent": content})

    async def play(self, ws: ServerConnection, turn: Turn, *, spoken: bool = True) -> Turn | None:
        """Play `turn`; returns it when the answer waits for a tool response."""
        if spoken:
            await self._content(ws, inputTranscription={"text": turn.user, "finished": True})
        if turn.tool is not None:
            self._n += 1
            name, args = turn.tool
            call = {"id": f"call_{self._n}", "name": name, "args": args}
            await self._send(ws, {"toolCall": {"functionCalls": [call]}})
            return turn
        await self.answer(ws, turn)
        return None

    async def answer(self, ws: ServerConnection, turn: Turn) -> None:
        await self._content(ws, outputTranscription={"text": turn.assistant})
        for _ in range(1 if turn.interrupt else turn.audio_chunks):
            part = {"inlineData": {"mimeType": f"audio/pcm;rate={OUTPUT_RATE}", "data": b64(self.audio)}}
            await self._content(ws, modelTurn={"parts": [part]})
        if turn.interrupt:
            # Server VAD heard the user over the answer: `interrupted` (Strands' barge-in), the user's words,
            # then the cut-off turn completes.
            await self._content(ws, interrupted=True)
            await self._content(ws, inputTranscription={"text": turn.barge_in_user, "finished": True})
        await self._content(ws, turnComplete=True)
        self.seen.turns_played += 1
