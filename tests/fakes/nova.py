"""A fake Nova Sonic behind the AWS SDK client seam (not on the wire).

Nova Sonic is HTTP/2 over TLS with AWS event-stream framing; serving that needs an HTTP/2 server library
(`h2`), which the project does not depend on. So this fake replaces the `AsyncBedrockRuntimeClient` that
`strands.bidi.models.bedrock` instantiates (install it with `fake.install(monkeypatch)`), and speaks Nova's
JSON events at the level the SDK hands them over: `input_stream.send(chunk)` with the event in
`chunk.value.bytes_`, `await_output()` then `receive()` returning objects whose `.value.bytes_` is
`b'{"event": {...}}'`, or None at the end of the stream. It records the config the client was built with,
so a test sees that `model.endpoint` reached the client's `endpoint_uri`.

Hooks, as the websocket fakes have them: `close()` ends the output stream (what Nova's end of stream
looks like to the SDK), `kill(error)` ends it with `error` raised from `receive()` (None: ended quietly,
which is what the SDK does on END_STREAM, RST_STREAM and a TCP abort), `hang()` stops all output.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from types import SimpleNamespace
from typing import Any

import pytest

from .base import Recorded, Turn, b64, tone

OUTPUT_RATE = 16000  # Strands asks Nova for 16 kHz output by default

_END = object()


class _Output:
    def __init__(self, fake: FakeNovaSonic) -> None:
        self.fake = fake
        self.queue: asyncio.Queue[Any] = asyncio.Queue()

    async def receive(self) -> Any:
        item = await self.queue.get()
        if item is _END:
            self.queue.put_nowait(_END)  # every later receive() sees the end too, as a closed SDK stream does
            return None
        if isinstance(item, BaseException):
            raise item
        return SimpleNamespace(value=SimpleNamespace(bytes_=item))


class _Input:
    def __init__(self, fake: FakeNovaSonic, output: _Output) -> None:
        self.fake, self.output = fake, output

    async def send(self, chunk: Any) -> None:
        if self.output in self.fake._closed:
            raise RuntimeError("stream closed")  # what the SDK raises on a finished HTTP/2 stream, roughly
        event = json.loads(chunk.value.bytes_)["event"]
        self.fake.seen.messages.append(event)
        await self.fake._on_event(event, self.output)


class _Stream:
    def __init__(self, fake: FakeNovaSonic) -> None:
        self.output = _Output(fake)
        self.input_stream = _Input(fake, self.output)
        self.fake = fake

    async def await_output(self) -> tuple[None, _Output]:
        return None, self.output

    async def close(self) -> None:
        self.fake._closed.add(self.output)
        self.output.queue.put_nowait(_END)


class FakeNovaSonic:
    audio = tone(OUTPUT_RATE)

    def __init__(self, turns: list[Turn] | None = None) -> None:
        self.turns = list(turns or [Turn()])
        self.seen = Recorded()
        self.endpoints: list[str] = []  # config.endpoint_uri of each client, read at its first request
        self.model_ids: list[str] = []
        self._turn_index = 0
        self._streams: list[_Stream] = []
        self._closed: set[_Output] = set()
        self._pending = 0
        self._waiting_tool: Turn | None = None
        self._hung = False
        fake = self

        class Client:
            def __init__(self, config: Any = None, plugins: Any = None) -> None:
                self._config = config

            async def invoke_model_with_bidirectional_stream(self, operation: Any) -> _Stream:
                fake.endpoints.append(str(self._config.endpoint_uri))
                fake.model_ids.append(operation.model_id)
                fake.seen.connections += 1
                stream = _Stream(fake)
                fake._streams.append(stream)
                return stream

            async def close(self) -> None:
                pass

        self.client_class = Client

    def install(self, monkeypatch: pytest.MonkeyPatch) -> FakeNovaSonic:
        import strands.bidi.models.bedrock as bedrock

        monkeypatch.setattr(bedrock, "AsyncBedrockRuntimeClient", self.client_class)
        return self

    # --- hooks -----------------------------------------------------------------------------------------
    def close(self) -> None:
        for stream in self._streams:
            stream.output.queue.put_nowait(_END)

    def kill(self, error: BaseException | None = None) -> None:
        for stream in self._streams:
            self._closed.add(stream.output)
            stream.output.queue.put_nowait(_END if error is None else error)

    def hang(self) -> None:
        self._hung = True

    # --- the script ------------------------------------------------------------------------------------
    def _emit(self, output: _Output, event: dict[str, Any]) -> None:
        if not self._hung:
            output.queue.put_nowait(json.dumps({"event": event}).encode())

    async def _on_event(self, event: dict[str, Any], output: _Output) -> None:
        if "audioInput" in event:
            n = len(base64.b64decode(event["audioInput"]["content"]))
            self.seen.audio_in += n
            self._pending += n
            if self._turn_index < len(self.turns) and self._pending >= self.turns[self._turn_index].trigger_bytes:
                self._pending = 0
                turn = self.turns[self._turn_index]
                self._turn_index += 1
                self.play(output, turn)
        elif "toolResult" in event:
            self.seen.tool_results.append(event["toolResult"])
            if self._waiting_tool is not None:
                turn, self._waiting_tool = self._waiting_tool, None
                self.answer(output, turn)

    def _content(self, output: _Output, kind: str, role: str, body: dict[str, Any], stop: str, **extra: Any) -> None:
        cid = str(uuid.uuid4())
        self._emit(output, {"contentStart": {"contentId": cid, "type": kind, "role": role, **extra}})
        self._emit(output, {k: {**v, "contentId": cid} for k, v in body.items()})
        self._emit(output, {"contentEnd": {"contentId": cid, "type": kind, "stopReason": stop}})

    def play(self, output: _Output, turn: Turn) -> None:
        self._content(output, "TEXT", "USER", {"textOutput": {"role": "USER", "content": turn.user}}, "PARTIAL_TURN")
        if turn.tool is not None:
            name, args = turn.tool
            use = {"toolUseId": str(uuid.uuid4()), "toolName": name, "content": json.dumps(args)}
            self._content(output, "TOOL", "TOOL", {"toolUse": use}, "TOOL_USE")
            self._waiting_tool = turn
            return
        self.answer(output, turn)

    def answer(self, output: _Output, turn: Turn) -> None:
        speculative = {"additionalModelFields": json.dumps({"generationStage": "SPECULATIVE"})}
        said = {"textOutput": {"role": "ASSISTANT", "content": turn.assistant}}
        self._content(output, "TEXT", "ASSISTANT", said, "PARTIAL_TURN", **speculative)
        audio_id = str(uuid.uuid4())
        self._emit(output, {"contentStart": {"contentId": audio_id, "type": "AUDIO", "role": "ASSISTANT"}})
        for _ in range(1 if turn.interrupt else turn.audio_chunks):
            self._emit(output, {"audioOutput": {"contentId": audio_id, "content": b64(self.audio)}})
        if turn.interrupt:
            # Nova reports a barge-in as a TEXT contentEnd with stopReason INTERRUPTED (an AUDIO one is ignored
            # by Strands 1.62). What the user said over it would open the next turn, which this script leaves out.
            self._emit(output, {"contentEnd": {"contentId": audio_id, "type": "TEXT", "stopReason": "INTERRUPTED"}})
        else:
            self._emit(output, {"contentEnd": {"contentId": audio_id, "type": "AUDIO", "stopReason": "END_TURN"}})
        self.seen.turns_played += 1

    # Parity with the websocket fakes (nothing listens, so there is nothing to start).
    def start(self) -> FakeNovaSonic:
        return self

    def stop(self) -> None:
        self.close()
