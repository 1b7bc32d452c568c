"""Rigs for the tool-continuity and message-on-disk tests: every provider's real model (built by `make_model`)
pointed at its fake on 127.0.0.1, and fakes that, like a real service, answer a tool result on whichever
connection it arrives (the stock fakes forget a pending tool call when its connection goes).

A result from an earlier connection reaches OpenAI natively (`function_call_output`) and Gemini Live and Nova
Sonic as a user text turn (`edgevoice.daemon.tools.as_text`); `results` records both, with the connection
(1-based) it arrived on. Also: an input stream that speaks once (`Says`), a slow tool (`Lookup`), bounded
waits, and what the store must hold for one call (`check_store`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from strands import tool
from strands.bidi.types.media import AudioDelta
from websockets.asyncio.server import ServerConnection

from edgevoice import config
from tests.fakes.agent import message_files as message_files  # re-exported for the tests using the rig
from tests.fakes.agent import stored_messages
from tests.fakes.base import Turn
from tests.fakes.gemini import FakeGeminiLive
from tests.fakes.nova import FakeNovaSonic, _Output
from tests.fakes.nova_wire import WireNovaSonic
from tests.fakes.openai import FakeOpenAIRealtime

CLOUD_ENV = ("OPENAI_API_KEY", "GOOGLE_API_KEY", "GEMINI_API_KEY", "GOOGLE_GEMINI_BASE_URL", "AWS_PROFILE")
TEXT_RESULT = "A tool call finished after the connection was re-established."


class OpenAIAnswersAnywhere(FakeOpenAIRealtime):
    """FakeOpenAIRealtime whose pending tool call survives its connection."""

    def __init__(self, turns: list[Turn]) -> None:
        super().__init__(turns)
        self.waiting: Turn | None = None
        self.results: list[tuple[int, str]] = []  # (connection, what arrived)

    async def converse(self, ws: ServerConnection) -> None:
        conn = self.seen.connections
        pending = 0
        await self._send(ws, {"type": "session.created", "session": {}})
        async for raw in ws:
            msg = json.loads(raw)
            self.seen.messages.append(msg)
            kind = msg.get("type")
            if kind == "session.update":
                await self._send(ws, {"type": "session.updated", "session": msg.get("session", {})})
            elif kind == "input_audio_buffer.append":
                pending += len(base64.b64decode(msg["audio"]))
                self.seen.audio_in += len(base64.b64decode(msg["audio"]))
                if self.turns[self._turn_index :] and pending >= self.turns[self._turn_index].trigger_bytes:
                    pending = 0
                    turn = self.next_turn()
                    assert turn is not None
                    # Owed before the call goes out: the test may drop the connection as soon as the tool
                    # starts, before `play` has sent the rest (and a cancelled `play` returns nothing).
                    if turn.tool is not None:
                        self.waiting = turn
                    await self.play(ws, turn)
            elif kind == "conversation.item.create":
                item = msg["item"]
                added = {"id": self._id("item"), **item}  # Strands reads the id of every item added
                await self._send(ws, {"type": "conversation.item.added", "item": added})
                # Only what comes after session set-up counts: the history replay re-creates old items.
                if item.get("type") == "function_call_output" and item.get("id"):
                    self.seen.tool_results.append(item)
                    self.results.append((conn, item["output"]))
            elif kind == "response.create" and self.waiting is not None:
                turn, self.waiting = self.waiting, None
                await self.answer(ws, turn)
                self.seen.turns_played += 1


class SlowFirstAnswer(OpenAIAnswersAnywhere):
    """Takes `delay_s` to answer the first tool result: Strands' restart comes first and cuts the answer off."""

    delay_s = 3.0

    async def answer(self, ws: ServerConnection, turn: Turn) -> None:
        delay, self.delay_s = self.delay_s, 0.0
        if delay:
            self.waiting = turn  # not answered on this connection unless it lives that long
            await asyncio.sleep(delay)
            if ws.close_code is not None:
                return
            self.waiting = None
        await super().answer(ws, turn)


class GeminiAnswersAnywhere(FakeGeminiLive):
    """FakeGeminiLive that keeps which connection each client message came on. A late result comes as a text
    turn, which the stock fake answers with the next scripted turn: script the answer as its own Turn."""

    def __init__(self, turns: list[Turn], directory: Path) -> None:
        super().__init__(turns, directory)
        self.starts: list[int] = []  # index into seen.messages where each connection began

    async def converse(self, ws: ServerConnection) -> None:
        self.starts.append(len(self.seen.messages))
        await super().converse(ws)

    @property
    def results(self) -> list[tuple[int, str]]:
        found = []
        for i, msg in enumerate(self.seen.messages):
            conn = sum(1 for s in self.starts if s <= i)
            if "tool_response" in msg:
                found.append((conn, json.dumps(msg["tool_response"])))
            elif "client_content" in msg and TEXT_RESULT in json.dumps(msg["client_content"]):
                found.append((conn, json.dumps(msg["client_content"])))
        return found


class NovaAnswersText(FakeNovaSonic):
    """FakeNovaSonic (its pending tool call already survives its stream) that also takes a late result sent
    as a text turn."""

    def __init__(self, turns: list[Turn]) -> None:
        super().__init__(turns)
        self.results: list[tuple[int, str]] = []

    async def _on_event(self, event: dict[str, Any], output: _Output) -> None:
        conn = self.seen.connections
        if "toolResult" in event:
            self.results.append((conn, json.dumps(event["toolResult"])))
        elif "textInput" in event and TEXT_RESULT in event["textInput"]["content"]:
            self.results.append((conn, event["textInput"]["content"]))
            if self._waiting_tool is not None:
                turn, self._waiting_tool = self._waiting_tool, None
                self.answer(output, turn)
            return
        await super()._on_event(event, output)


@dataclass
class Rig:
    provider: str
    fake: Any
    settings: config.Settings


@contextmanager
def rig(
    name: str,
    turns: list[Turn],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    *,
    anywhere: bool = False,
    openai: type[OpenAIAnswersAnywhere] = OpenAIAnswersAnywhere,
) -> Iterator[Rig]:
    """The provider's fake started, credentials faked, settings pointing `model.endpoint` at it. `name` is a
    provider, or `nova_sonic_seam` (Nova's script behind the AWS SDK client seam, not on the wire).
    `anywhere`: the fakes above, which answer a tool result on any connection (`openai`: that fake's class)."""
    provider = name.removesuffix("_seam")
    for var in CLOUD_ENV:
        monkeypatch.delenv(var, raising=False)
    fake: Any
    if provider == "openai_realtime":
        monkeypatch.setenv("OPENAI_API_KEY", "sk-fake-edgevoice")
        fake = openai(turns) if anywhere else FakeOpenAIRealtime(turns)
    elif provider == "gemini_live":
        monkeypatch.setenv("GOOGLE_API_KEY", "AIzaFakeEdgevoice")
        fake = GeminiAnswersAnywhere(turns, tmp_path) if anywhere else FakeGeminiLive(turns, tmp_path)
        monkeypatch.setenv("SSL_CERT_FILE", str(fake.cert))  # read when make_model builds the genai client
    else:
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAFAKEEDGEVOICE")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "fake-secret")
        monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
        if name.endswith("_seam"):
            fake = (NovaAnswersText(turns) if anywhere else FakeNovaSonic(turns)).install(monkeypatch)
        else:
            fake = WireNovaSonic(turns, tmp_path)
            fake.trust(monkeypatch)
    fake.start()
    try:
        endpoint = fake.url if hasattr(fake, "url") else "https://127.0.0.1:9/nova"
        settings = config.replace(config.Settings(), model={"provider": provider, "endpoint": endpoint})
        yield Rig(name, fake, settings)
    finally:
        fake.stop()


def tool_pairs(messages: list[dict[str, Any]], tool_use_id: str) -> dict[str, int]:
    """How often the store holds, for one call, a toolUse message followed by its dispatch placeholder
    ("dispatch") or by its real result ("result"), and any toolUse or toolResult outside such a pair."""
    counts = {"dispatch": 0, "result": 0, "stray": 0}
    i = 0
    while i < len(messages):
        m = messages[i]
        uses = [b["toolUse"]["toolUseId"] for b in m["content"] if "toolUse" in b]
        results = [b["toolResult"]["toolUseId"] for b in m["content"] if "toolResult" in b]
        if tool_use_id in uses and i + 1 < len(messages):
            nxt = messages[i + 1]
            if tool_use_id in [b["toolResult"]["toolUseId"] for b in nxt["content"] if "toolResult" in b]:
                kind = nxt.get("metadata", {}).get("custom", {}).get("bidi", {}).get("kind")
                counts["dispatch" if kind == "tool_dispatch" else "result"] += 1
                i += 2
                continue
        if tool_use_id in uses or tool_use_id in results:
            counts["stray"] += 1
        i += 1
    return counts


class Says:
    """An input stream: `nbytes` of quiet PCM once (the user's turn), then nothing."""

    def __init__(self, nbytes: int = 3200) -> None:
        self.left = nbytes

    async def start(self, agent: object) -> None:
        return

    async def stop(self) -> None:
        return

    async def __call__(self) -> AudioDelta:
        if self.left <= 0:
            await asyncio.get_running_loop().create_future()
        n = min(640, self.left)
        self.left -= n
        return AudioDelta(format="pcm", source={"bytes": b"\x07\x00" * (n // 2)})


class Lookup:
    """A slow tool: in flight long enough for the connection to go under it."""

    def __init__(self, seconds: float = 1.0) -> None:
        self.started = asyncio.Event()
        self.finished = asyncio.Event()
        self.seconds = seconds

        @tool(name="lookup")
        async def lookup(city: str) -> str:
            """The weather in a city."""
            self.started.set()
            await asyncio.sleep(self.seconds)
            self.finished.set()
            return f"42 degrees in {city}"

        self.tool = lookup


async def until(cond: Callable[[], bool], timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


async def finish(run: asyncio.Future[None]) -> None:
    run.cancel()
    with contextlib.suppress(BaseException):
        await asyncio.wait_for(run, 15)


def drop(r: Rig) -> None:
    """The connection goes: the wire fakes reset TCP; the seam fake ends its stream with an error."""
    if r.provider == "nova_sonic_seam":
        r.fake.kill(ConnectionResetError("reset"))
    else:
        r.fake.kill()


def check_store(storage: Path, tool_use_id: str) -> list[dict[str, Any]]:
    """One real toolUse/toolResult pair for the call besides Strands' dispatch pair; numbering without gaps."""
    files = message_files(storage, "s1", "ev")
    assert [int(p.stem.split("_")[1]) for p in files] == list(range(len(files)))
    assert [json.loads(p.read_text())["message_id"] for p in files] == list(range(len(files)))
    messages = stored_messages(storage, "s1", "ev")
    assert tool_pairs(messages, tool_use_id) == {"dispatch": 1, "result": 1, "stray": 0}
    return messages


def tool_use_id(storage: Path) -> str:
    uses = [
        b["toolUse"]["toolUseId"] for m in stored_messages(storage, "s1", "ev") for b in m["content"] if "toolUse" in b
    ]
    assert uses, "the model called the tool"
    return str(uses[0])
