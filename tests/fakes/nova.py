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

The script (shared with the wire fake, nova_wire.py): a Turn plays once its input audio arrived
(`ThreadedFake.turn_ends`: with `Turn.silence_ms`, once the input ends in that much digital silence, as the
daemon's end-of-turn padding does). A live user text (a `textInput` under an interactive USER contentStart,
not the non-interactive history a connection starts with) is a turn too: it answers the tool call still
waiting for its result (a result from an earlier connection arrives as such a text, `daemon/tools.py`),
else it plays the next scripted turn without a user transcript. A tool call waits for its result on any
connection, as Nova's model would still want it. `pace_s` spaces an answer's audio chunks as they are sent
(the fake keeps reading meanwhile), so a test can drop the connection mid-answer; `tool_delay_s` holds the answer to a
tool result that long, so a test can drop it mid tool call.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pytest

from .base import Recorded, ThreadedFake, Turn, b64, tone

OUTPUT_RATE = 16000  # Strands asks Nova for 16 kHz output by default
INPUT_RATE = 16000  # and sends it 16 kHz input

_END = object()


@dataclass
class _Mark:
    """Queued between a paced answer's events and acted on by whoever sends them, in order: `then()` (a count
    of what was sent before it), then `sleep_s` of pause. Pacing in the queue, not in the script, keeps the
    order of events: a turn that ends while an answer still streams is answered after it, as Nova does."""

    then: Callable[[], None]
    sleep_s: float = 0.0


class _Output:
    def __init__(self, fake: FakeNovaSonic) -> None:
        self.fake = fake
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.dead = False  # the connection under it was dropped: what it had not sent yet is lost

    async def take(self) -> Any:
        """The next item to send: an encoded event, or the end of the stream (`_END`, an error, None)."""
        while True:
            item = await self.queue.get()
            if isinstance(item, _Mark):
                if not self.dead:
                    item.then()
                    await asyncio.sleep(item.sleep_s)
            elif not (self.dead and isinstance(item, bytes)):
                return item

    async def receive(self) -> Any:
        item = await self.take()
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

    def __init__(self, turns: list[Turn] | None = None, *, pace_s: float = 0.0, tool_delay_s: float = 0.0) -> None:
        self.turns = list(turns or [Turn()])
        self.pace_s = pace_s
        self.tool_delay_s = tool_delay_s
        self.seen = Recorded()
        self.chunks_out = 0  # audio chunks sent, all answers together (a test waits for one mid-answer)
        self.texts: list[str] = []  # live user texts received (late tool results among them)
        self.endpoints: list[str] = []  # config.endpoint_uri of each client, read at its first request
        self.model_ids: list[str] = []
        self._turn_index = 0
        self._streams: list[_Stream] = []
        self._closed: set[_Output] = set()
        self._pending = 0
        self._silent_bytes = 0  # for `turn_ends`
        self._voiced_bytes = 0
        self._live_text: dict[str, bool] = {}  # contentName -> an interactive USER text (not history)
        self._waiting_tool: Turn | None = None
        self._hung = False
        self._tasks: set[asyncio.Future[None]] = set()  # held tool answers
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
            stream.output.dead = True
            stream.output.queue.put_nowait(_END if error is None else error)

    def hang(self) -> None:
        self._hung = True

    # --- the script ------------------------------------------------------------------------------------
    # The websocket fakes' end-of-turn rule, shared rather than copied (it only reads `turns`, `_turn_index`,
    # `_silent_bytes` and `_voiced_bytes`, which this script has too).
    turn_ends = ThreadedFake.turn_ends
    next_turn = ThreadedFake.next_turn

    def _emit(self, output: _Output, event: dict[str, Any]) -> None:
        if not self._hung:
            output.queue.put_nowait(json.dumps({"event": event}).encode())
            self.chunks_out += "audioOutput" in event and not self.pace_s  # paced: counted as it is sent

    def _spawn(self, work: Any) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _on_event(self, event: dict[str, Any], output: _Output) -> None:
        if "contentStart" in event:
            start = event["contentStart"]
            live = start.get("type") == "TEXT" and start.get("role") == "USER" and start.get("interactive") is True
            self._live_text[start.get("contentName", "")] = live
        elif "audioInput" in event:
            pcm = base64.b64decode(event["audioInput"]["content"])
            self.seen.audio_in += len(pcm)
            self._pending += len(pcm)
            if self.turn_ends(self._pending, pcm, INPUT_RATE):
                self._pending = 0
                turn = self.next_turn()
                assert turn is not None
                self.play(output, turn)
        elif "textInput" in event and self._live_text.pop(event["textInput"].get("contentName", ""), False):
            self.texts.append(event["textInput"]["content"])
            if self._waiting_tool is not None:
                turn, self._waiting_tool = self._waiting_tool, None
                self.answer(output, turn)
            elif (turn := self.next_turn()) is not None:
                self.play(output, turn, spoken=False)
        elif "toolResult" in event:
            self.seen.tool_results.append(event["toolResult"])
            if self._waiting_tool is not None and self.tool_delay_s:
                self._spawn(self._answer_later(output, self._waiting_tool))
            elif self._waiting_tool is not None:
                turn, self._waiting_tool = self._waiting_tool, None
                self.answer(output, turn)

    async def _answer_later(self, output: _Output, turn: Turn) -> None:
        """The answer to a tool result, `tool_delay_s` late; a connection dropped meanwhile leaves the call
        waiting for the result to come again on the next one."""
        await asyncio.sleep(self.tool_delay_s)
        if not output.dead and self._waiting_tool is turn:
            self._waiting_tool = None
            self.answer(output, turn)

    def _content(self, output: _Output, kind: str, role: str, body: dict[str, Any], stop: str, **extra: Any) -> None:
        cid = str(uuid.uuid4())
        self._emit(output, {"contentStart": {"contentId": cid, "type": kind, "role": role, **extra}})
        self._emit(output, {k: {**v, "contentId": cid} for k, v in body.items()})
        self._emit(output, {"contentEnd": {"contentId": cid, "type": kind, "stopReason": stop}})

    def play(self, output: _Output, turn: Turn, *, spoken: bool = True) -> None:
        if spoken:
            user = {"textOutput": {"role": "USER", "content": turn.user}}
            self._content(output, "TEXT", "USER", user, "PARTIAL_TURN")
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
        for event in self._audio(turn):
            self._emit(output, event)
            if self.pace_s and "audioOutput" in event and not self._hung:
                output.queue.put_nowait(_Mark(self._chunk_sent, self.pace_s))
        if not self.pace_s:
            self.seen.turns_played += 1
        elif not self._hung:
            output.queue.put_nowait(_Mark(self._played))

    def _chunk_sent(self) -> None:
        self.chunks_out += 1

    def _played(self) -> None:
        self.seen.turns_played += 1

    def _audio(self, turn: Turn) -> Iterator[dict[str, Any]]:
        """The spoken part of an answer: audio content, its chunks, its end."""
        audio_id = str(uuid.uuid4())
        yield {"contentStart": {"contentId": audio_id, "type": "AUDIO", "role": "ASSISTANT"}}
        for _ in range(1 if turn.interrupt else turn.audio_chunks):
            yield {"audioOutput": {"contentId": audio_id, "content": b64(self.audio)}}
        if turn.interrupt:
            # Nova reports a barge-in as a TEXT contentEnd with stopReason INTERRUPTED (an AUDIO one is ignored
            # by Strands 1.62). What the user said over it would open the next turn, which this script leaves out.
            yield {"contentEnd": {"contentId": audio_id, "type": "TEXT", "stopReason": "INTERRUPTED"}}
        else:
            yield {"contentEnd": {"contentId": audio_id, "type": "AUDIO", "stopReason": "END_TURN"}}

    # Parity with the websocket fakes (nothing listens, so there is nothing to start).
    def start(self) -> FakeNovaSonic:
        return self

    def stop(self) -> None:
        self.close()
