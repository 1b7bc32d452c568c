"""A fake OpenAI Realtime endpoint: plain websocket on 127.0.0.1, JSON text frames (the GA event names that
Strands 1.62's OpenAIRealtimeModel parses; see /work/shared/providers.md).

Point a model at it with `model.endpoint = fake.url`. Each scripted Turn plays once the client has appended
`trigger_bytes` of input audio (server VAD, faked) or created a user text item.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from websockets.asyncio.server import ServerConnection

from .base import ThreadedFake, Turn, b64, tone

OUTPUT_RATE = 24000  # OpenAI Realtime speaks 24 kHz PCM


class FakeOpenAIRealtime(ThreadedFake):
    audio = tone(OUTPUT_RATE)

    def __init__(self, turns: list[Turn] | None = None) -> None:
        super().__init__(turns)
        self._n = 0  # ids for items, responses and calls, unique across connections

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/realtime"

    async def converse(self, ws: ServerConnection) -> None:
        pending = 0
        waiting_tool: Turn | None = None
        await self._send(ws, {"type": "session.created", "session": {}})
        async for raw in ws:
            msg = json.loads(raw)
            self.seen.messages.append(msg)
            kind = msg.get("type")
            if kind == "session.update":
                await self._send(ws, {"type": "session.updated", "session": msg.get("session", {})})
            elif kind == "input_audio_buffer.append":
                n = len(base64.b64decode(msg["audio"]))
                self.seen.audio_in += n
                pending += n
                if self.turns[self._turn_index :] and pending >= self.turns[self._turn_index].trigger_bytes:
                    pending = 0
                    turn = self.next_turn()
                    assert turn is not None
                    waiting_tool = await self.play(ws, turn)
            elif kind == "conversation.item.create":
                item = msg["item"]
                await self._send(ws, {"type": "conversation.item.added", "item": item})
                if item.get("type") == "function_call_output":
                    self.seen.tool_results.append(item)
                elif item.get("type") == "message" and item.get("role") == "user" and (turn := self.next_turn()):
                    waiting_tool = await self.play(ws, turn, spoken=False)
            elif kind == "response.create" and waiting_tool is not None:
                turn, waiting_tool = waiting_tool, None
                await self.answer(ws, turn)
                self.seen.turns_played += 1

    async def _send(self, ws: ServerConnection, event: dict[str, Any]) -> None:
        await self.pause()
        await ws.send(json.dumps(event))

    def _id(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}_{self._n}"

    async def user_said(self, ws: ServerConnection, text: str) -> None:
        item = self._id("item")
        await self._send(ws, {"type": "input_audio_buffer.speech_started", "item_id": item, "audio_start_ms": 0})
        await self._send(ws, {"type": "input_audio_buffer.committed", "item_id": item, "previous_item_id": None})
        await self._send(
            ws,
            {
                "type": "conversation.item.input_audio_transcription.completed",
                "item_id": item,
                "content_index": 0,
                "transcript": text,
            },
        )

    async def play(self, ws: ServerConnection, turn: Turn, *, spoken: bool = True) -> Turn | None:
        """Play `turn`; returns it when the answer waits for a tool result (then `response.create`)."""
        if spoken:
            await self.user_said(ws, turn.user)
        if turn.tool is not None:
            response = self._id("resp")
            name, args = turn.tool
            call = {
                "id": self._id("item"),
                "type": "function_call",
                "status": "completed",
                "call_id": self._id("call"),
                "name": name,
                "arguments": json.dumps(args),
            }
            await self._send(ws, {"type": "response.created", "response": {"id": response, "status": "in_progress"}})
            await self._send(ws, {"type": "response.output_item.done", "response_id": response, "item": call})
            await self._send(
                ws, {"type": "response.done", "response": {"id": response, "status": "completed", "output": [call]}}
            )
            return turn
        await self.answer(ws, turn)
        self.seen.turns_played += 1
        return None

    async def answer(self, ws: ServerConnection, turn: Turn) -> None:
        response, item = self._id("resp"), self._id("item")
        ids = {"response_id": response, "item_id": item, "output_index": 0, "content_index": 0}
        await self._send(ws, {"type": "response.created", "response": {"id": response, "status": "in_progress"}})
        await self._send(ws, {"type": "response.output_audio_transcript.delta", **ids, "delta": turn.assistant})
        chunks = 1 if turn.interrupt else turn.audio_chunks
        for _ in range(chunks):
            await self._send(ws, {"type": "response.output_audio.delta", **ids, "delta": b64(self.audio)})
        output = [
            {
                "id": item,
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_audio", "transcript": turn.assistant}],
            }
        ]
        if turn.interrupt:
            # Server VAD hears the user over the answer: speech_started, then the response is cancelled
            # with reason turn_detected (Strands' barge-in), then the interrupting utterance is transcribed.
            barge = self._id("item")
            await self._send(ws, {"type": "input_audio_buffer.speech_started", "item_id": barge, "audio_start_ms": 0})
            done = {"id": response, "status": "cancelled", "status_details": {"reason": "turn_detected"}}
            await self._send(ws, {"type": "response.done", "response": {**done, "output": output}})
            await self._send(ws, {"type": "input_audio_buffer.committed", "item_id": barge, "previous_item_id": None})
            await self._send(
                ws,
                {
                    "type": "conversation.item.input_audio_transcription.completed",
                    "item_id": barge,
                    "content_index": 0,
                    "transcript": turn.barge_in_user,
                },
            )
            return
        await self._send(ws, {"type": "response.output_audio.done", **ids})
        done = {"id": response, "status": "completed", "output": output}
        await self._send(ws, {"type": "response.done", "response": done})
