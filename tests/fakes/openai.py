"""A fake OpenAI Realtime endpoint: plain websocket on 127.0.0.1, JSON text frames (the GA event names that
Strands 1.62's OpenAIRealtimeModel parses; see /work/shared/providers.md).

Point a model at it with `model.endpoint = fake.url`. Each scripted Turn plays once the client has appended
`trigger_bytes` of input audio (server VAD, faked) or created a user text item.

Turn ends, as the real server has them: server VAD (a `Turn.silence_ms` turn ends on trailing digital silence,
as long as the session's `turn_detection.silence_duration_ms` when the client set one: the real server uses the
session's value) commits the buffer and answers at once (`create_response`); a client's
`input_audio_buffer.commit` commits it (`input_audio_buffer.committed`, or the error
`input_audio_buffer_commit_empty` under 100 ms of audio) and answers nothing until `response.create` (answered
with `conversation_already_has_active_response` while an answer streams). `ends` records when and how each
turn ended (`time.monotonic()`, "vad" or "commit").

Client barge-in: `response.cancel` stops the answer being streamed (`response.done` with status `cancelled`,
reason `client_cancelled`) or, with none streaming, is answered with the error `response_cancel_not_active`, as
the real server does; `conversation.item.truncate` is answered with `conversation.item.truncated`, or with an
error when `audio_end_ms` lies beyond the item's audio (`cancel_lag_chunks`: audio chunks still sent after a cancel,
as a real server's in-flight audio). With `pace_s` the audio chunks of a spoken answer are
spaced by that many seconds and the answer streams while the fake keeps reading, so a cancel can land mid-answer.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import time
from typing import Any

from websockets.asyncio.server import ServerConnection

from .base import ThreadedFake, Turn, b64, tone

OUTPUT_RATE = 24000  # OpenAI Realtime speaks 24 kHz PCM
INPUT_RATE = 24000  # and hears 24 kHz PCM
MIN_COMMIT_BYTES = INPUT_RATE * 2 // 10  # the real server refuses to commit less than 100 ms of audio


class FakeOpenAIRealtime(ThreadedFake):
    audio = tone(OUTPUT_RATE)

    def __init__(self, turns: list[Turn] | None = None, *, pace_s: float = 0.0, cancel_lag_chunks: int = 0) -> None:
        super().__init__(turns)
        self._n = 0  # ids for items, responses and calls, unique across connections
        self.pace_s = pace_s
        self.cancel_lag_chunks = cancel_lag_chunks  # chunks still sent after a cancel (already in flight)
        self.item_audio_ms: dict[str, float] = {}  # audio sent per assistant item
        self.errors: list[dict[str, Any]] = []  # error events the fake sent
        self._streaming: str | None = None  # the response whose audio is being sent
        self._active: dict[ServerConnection, str] = {}  # per connection (a session's): the response being
        # answered, from its response.created until its response.done
        self._cancel = False  # the client's response.cancel
        self._vad_barge = False  # barge_in(): server VAD heard the user
        self.ends: list[tuple[float, str]] = []  # (time.monotonic(), "vad" | "commit") of each turn's end
        self.vad_silence_ms: int | None = None  # the session's turn_detection.silence_duration_ms
        self.vad_on = True  # turn_detection null in the session turns server VAD off

    def barge_in(self) -> None:
        """Server VAD hears the user over the answer being streamed (run with `pace_s`): it is cut off as a
        `Turn(interrupt=True)` answer is, and the interrupting utterance is transcribed."""

        async def hear() -> None:
            self._vad_barge = True

        self._call(hear())

    def client(self, kind: str) -> list[dict[str, Any]]:
        """The client messages of one type, in order."""
        return [m for m in self.seen.messages if isinstance(m, dict) and m.get("type") == kind]

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/realtime"

    async def converse(self, ws: ServerConnection) -> None:
        pending = 0
        waiting_tool: Turn | None = None
        committed: Turn | None = None  # a turn the client committed: answered on its response.create
        text_waiting = False
        await self._send(ws, {"type": "session.created", "session": {}})
        async for raw in ws:
            msg = json.loads(raw)
            self.seen.messages.append(msg)
            kind = msg.get("type")
            if kind == "session.update":
                self._configure(msg.get("session", {}))
                await self._send(ws, {"type": "session.updated", "session": msg.get("session", {})})
            elif kind == "input_audio_buffer.append":
                pcm = base64.b64decode(msg["audio"])
                self.seen.audio_in += len(pcm)
                pending += len(pcm)
                if self.vad_on and self.turn_ends(pending, pcm, INPUT_RATE):
                    self.ends.append((time.monotonic(), "vad"))
                    pending = 0
                    turn = self.next_turn()
                    assert turn is not None
                    if self.pace_s and turn.tool is None:
                        task = asyncio.ensure_future(self.play(ws, turn))  # keeps reading meanwhile
                        task.add_done_callback(lambda t: t.cancelled() or t.exception())  # a drop ends it
                        self._tasks.add(task)
                    else:
                        waiting_tool = await self.play(ws, turn)
            elif kind == "input_audio_buffer.commit":
                if pending < MIN_COMMIT_BYTES:
                    await self._error(ws, "input_audio_buffer_commit_empty", "buffer too small")
                    continue
                self.ends.append((time.monotonic(), "commit"))
                pending = 0
                self._silent_bytes = self._voiced_bytes = 0  # the buffer VAD listens to starts afresh
                committed = self.next_turn()
                if committed is not None:
                    await self.user_said(ws, committed.user)
                else:  # unscripted speech: committed all the same, and nothing to answer with
                    await self._send(ws, {"type": "input_audio_buffer.committed", "item_id": self._id("item")})
            elif kind == "response.create" and committed is not None and waiting_tool is None:
                if ws in self._active:
                    await self._error(ws, "conversation_already_has_active_response", "a response is in progress")
                    continue
                turn, committed = committed, None
                if self.pace_s and turn.tool is None:
                    task = asyncio.ensure_future(self.play(ws, turn, spoken=False))
                    task.add_done_callback(lambda t: t.cancelled() or t.exception())
                    self._tasks.add(task)
                else:
                    waiting_tool = await self.play(ws, turn, spoken=False)
            elif kind == "response.cancel":
                if self._streaming is not None:
                    self._cancel = True
                else:
                    await self._error(ws, "response_cancel_not_active", "no active response")
            elif kind == "conversation.item.truncate":
                await self._truncate(ws, msg)
            elif kind == "conversation.item.create":
                item = {"id": self._id("item"), **msg["item"]}  # the server names items the client did not
                await self._send(ws, {"type": "conversation.item.added", "item": item})
                if item.get("type") == "function_call_output":
                    self.seen.tool_results.append(item)
                elif item.get("type") == "message" and item.get("role") == "user":
                    # A typed turn, or history replayed at the start of a connection: only a response.create
                    # asks for an answer (the real server answers nothing else).
                    text_waiting = True
            elif kind == "response.create" and waiting_tool is not None:
                turn, waiting_tool = waiting_tool, None
                await self.answer(ws, turn)
                self.seen.turns_played += 1
            elif kind == "response.create" and text_waiting and (turn := self.next_turn()):
                text_waiting = False
                waiting_tool = await self.play(ws, turn, spoken=False)

    def _configure(self, session: dict[str, Any]) -> None:
        """What the real server takes from `session.update` for its VAD."""
        audio_in = session.get("audio", {}).get("input", {})
        if "turn_detection" in audio_in:
            detection = audio_in["turn_detection"]
            self.vad_on = detection is not None
            self.vad_silence_ms = (detection or {}).get("silence_duration_ms")

    def turn_ends(self, pending: int, pcm: bytes, rate: int) -> bool:
        """The base's faked VAD, with the session's silence duration when it set one (the real server's)."""
        i = self._turn_index
        if self.vad_silence_ms is None or i >= len(self.turns) or not self.turns[i].silence_ms:
            return super().turn_ends(pending, pcm, rate)
        scripted = self.turns[i]
        self.turns[i] = dataclasses.replace(scripted, silence_ms=self.vad_silence_ms)
        try:
            return super().turn_ends(pending, pcm, rate)
        finally:
            self.turns[i] = scripted

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
        response = self._id("resp")
        self._active[ws] = response  # until its response.done is sent, or the answer is cut off by a drop
        try:
            await self._answer(ws, turn, response)
        finally:
            if self._active.get(ws) == response:
                del self._active[ws]

    async def _answer(self, ws: ServerConnection, turn: Turn, response: str) -> None:
        item = self._id("item")
        ids = {"response_id": response, "item_id": item, "output_index": 0, "content_index": 0}
        await self._send(ws, {"type": "response.created", "response": {"id": response, "status": "in_progress"}})
        await self._send(ws, {"type": "response.output_audio_transcript.delta", **ids, "delta": turn.assistant})
        chunks = 1 if turn.interrupt else turn.audio_chunks
        self._streaming, self._cancel, self._vad_barge = response, False, False
        self.item_audio_ms[item] = 0.0
        lag = self.cancel_lag_chunks
        for _ in range(chunks):
            if self._vad_barge or (self._cancel and lag == 0):
                break
            if self._cancel:
                lag -= 1
            await self._send(ws, {"type": "response.output_audio.delta", **ids, "delta": b64(self.audio)})
            self.item_audio_ms[item] += len(self.audio) / 2 / OUTPUT_RATE * 1000
            if self.pace_s:
                await asyncio.sleep(self.pace_s)
        self._streaming = None
        output = [
            {
                "id": item,
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_audio", "transcript": turn.assistant}],
            }
        ]
        if turn.interrupt or self._vad_barge:
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
        if self._cancel:
            done = {"id": response, "status": "cancelled", "status_details": {"reason": "client_cancelled"}}
            await self._send(ws, {"type": "response.done", "response": {**done, "output": output}})
            return
        await self._send(ws, {"type": "response.output_audio.done", **ids})
        done = {"id": response, "status": "completed", "output": output}
        await self._send(ws, {"type": "response.done", "response": done})

    async def _truncate(self, ws: ServerConnection, msg: dict[str, Any]) -> None:
        item, end = msg.get("item_id"), msg.get("audio_end_ms")
        if item not in self.item_audio_ms or not isinstance(end, int) or not 0 <= end <= self.item_audio_ms[item]:
            await self._error(ws, "invalid_value", f"cannot truncate {item} at {end} ms")
            return
        ids = {"item_id": item, "content_index": msg.get("content_index", 0), "audio_end_ms": end}
        await self._send(ws, {"type": "conversation.item.truncated", **ids})

    async def _error(self, ws: ServerConnection, code: str, message: str) -> None:
        error = {"type": "invalid_request_error", "code": code, "message": message}
        self.errors.append(error)
        await self._send(ws, {"type": "error", "error": error})
