"""Supervision end to end: the voice loop on real parts (ALSA file PCMs, the real gate, a real BidiAgent with
Strands' OpenAI Realtime model, the durable store) against the OpenAI fake on 127.0.0.1, which hangs or
drops the connection in the middle of its first answer. The loop reconnects (a hang through the watch for a
due response; the hung peer's stop waits out websockets' 10 s close timeout, so it is abandoned after the
stop deadline and a fresh agent takes over from the store), answers the next turn, and the store holds the
conversation with no gap and no duplicate."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection

from edgevoice import config
from edgevoice.audio import Capture
from edgevoice.commands.demo import speak_to_raw
from edgevoice.daemon.voice import VoiceLoop
from tests.alsa import AsoundRc, alsa_home
from tests.fakes.agent import stored_messages, texts
from tests.fakes.base import Turn
from tests.fakes.openai import FakeOpenAIRealtime

END_MARKER_BYTES = 24000 * 2 * 500 // 1000  # the mic's 600 ms of digital silence, at 24 kHz: at least 500 ms


class MidAnswer(FakeOpenAIRealtime):
    """Plays a turn when the mic's end-of-turn marker arrives (one append of digital silence), and breaks
    the connection in the middle of the answers named in `breaks` (turn index -> "hang" or "kill"), after
    the first audio delta. History replayed into a new connection is recorded, never answered."""

    def __init__(self, turns: list[Turn], breaks: dict[int, str]) -> None:
        super().__init__(turns)
        self.breaks = breaks
        self.replayed: list[list[dict[str, Any]]] = []  # per connection: the conversation items it was given

    async def converse(self, ws: ServerConnection) -> None:
        items: list[dict[str, Any]] = []
        self.replayed.append(items)
        await self._send(ws, {"type": "session.created", "session": {}})
        async for raw in ws:
            msg = json.loads(raw)
            kind = msg.get("type")
            if kind == "session.update":
                await self._send(ws, {"type": "session.updated", "session": msg.get("session", {})})
            elif kind == "conversation.item.create":
                items.append(msg["item"])
                added = {"id": self._id("item"), **msg["item"]}
                await self._send(ws, {"type": "conversation.item.added", "item": added})
            elif kind == "input_audio_buffer.append":
                pcm = base64.b64decode(msg["audio"])
                self.seen.audio_in += len(pcm)
                if len(pcm) >= END_MARKER_BYTES and not any(pcm) and (turn := self.next_turn()) is not None:
                    await self.user_said(ws, turn.user)
                    await self._answer_or_break(ws, turn, self.breaks.get(self._turn_index - 1))

    async def _answer_or_break(self, ws: ServerConnection, turn: Turn, how: str | None) -> None:
        if how is None:
            await self.answer(ws, turn)
            self.seen.turns_played += 1
            return
        response, item = self._id("resp"), self._id("item")
        ids = {"response_id": response, "item_id": item, "output_index": 0, "content_index": 0}
        await self._send(ws, {"type": "response.created", "response": {"id": response, "status": "in_progress"}})
        await self._send(ws, {"type": "response.output_audio_transcript.delta", **ids, "delta": turn.assistant})
        audio = base64.b64encode(self.audio).decode()
        await self._send(ws, {"type": "response.output_audio.delta", **ids, "delta": audio})
        if how == "kill":  # TCP reset, no close frame
            sock = ws.transport.get_extra_info("socket")
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            ws.transport.abort()
            raise ConnectionAbortedError("killed mid-answer")
        ws.transport.pause_reading()  # hang: no more output, no reads, no pong, no close handshake
        assert self._stopping is not None
        await self._stopping.wait()
        raise ConnectionAbortedError("hung mid-answer")


@pytest.fixture
def alsa(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[AsoundRc]:
    yield from alsa_home(tmp_path, monkeypatch)


TURNS = [
    Turn(user="my name is alice", assistant="hello alice"),
    Turn(user="what is my name", assistant="your name is alice"),
]


def two_utterances(tmp: Path, gap_s: float) -> tuple[Path, int]:
    """'My name is Alice.', `gap_s` of silence, 'What is my name?': raw 16 kHz S16_LE; (path, 30 ms frames)."""
    one, two = tmp / "one.raw", tmp / "two.raw"
    speak_to_raw("My name is Alice.", "en-us", one)
    speak_to_raw("What is my name?", "en-us", two)
    frame = 16000 * 30 // 1000 * 2
    gap = bytes(int(16000 * gap_s) * 2 // frame * frame)
    raw = tmp / "mic.raw"
    raw.write_bytes(one.read_bytes() + gap + two.read_bytes())
    return raw, raw.stat().st_size // frame


def run_through(
    how: str, alsa: AsoundRc, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gap_s: float
) -> tuple[VoiceLoop, MidAnswer, float]:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-fake-edgevoice")
    raw, frames = two_utterances(tmp_path, gap_s)
    alsa.capture("mic", raw).playback("spk", tmp_path / "answer.raw").write()
    fake = MidAnswer(TURNS, {0: how})
    fake.start()
    try:
        s = config.replace(
            config.Settings(),
            audio={"capture_device": "mic", "playback_device": "spk"},
            model={"provider": "openai_realtime", "endpoint": fake.url, "response_timeout_s": 1.0},
            session={"dir": str(tmp_path / "sessions")},
        )
        capture = Capture("mic", period_ms=30, pace=1.0, max_frames=frames)
        loop = VoiceLoop(s, capture=capture)

        async def main() -> float:
            task = asyncio.create_task(loop.run())
            started = time.monotonic()
            try:
                # The second answer reached the speaker: the loop reconnected and answered the next turn.
                while ("assistant", "your name is alice") not in loop.transcripts:
                    assert not task.done(), task
                    assert time.monotonic() - started < 60, (loop.transcripts, fake.seen.closed)
                    await asyncio.sleep(0.05)
                return time.monotonic() - started
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait_for(task, 15)

        took = asyncio.run(main())
    finally:
        fake.stop()
    return loop, fake, took


def check_store(tmp_path: Path) -> list[dict[str, Any]]:
    directory = tmp_path / "sessions" / "session_default" / "agents" / "agent_edgevoice" / "messages"
    numbers = sorted(int(p.stem.split("_")[1]) for p in directory.glob("message_*.json"))
    assert numbers == list(range(len(numbers))), f"numbering has a gap: {numbers}"
    msgs = stored_messages(tmp_path / "sessions", "default", "edgevoice")
    assert texts(msgs, "user") == ["my name is alice", "what is my name"], msgs
    said = texts(msgs, "assistant")
    # The cut-off answer is stored once, as Strands 1.62 closes a transcript that never completed (OpenAI's
    # transcript arrives whole at its end; storing what was played is a later step of issue 11); the next
    # answer once.
    assert said == ["[Transcript unavailable.]", "your name is alice"], msgs
    assert [m["role"] for m in msgs] == ["user", "assistant", "user", "assistant"], msgs
    return msgs


def test_a_hang_mid_answer_reconnects_with_a_fresh_agent_and_answers_the_next_turn(
    alsa: AsoundRc, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="edgevoice")
    loop, fake, _took = run_through("hang", alsa, tmp_path, monkeypatch, gap_s=9.0)
    lines = [r.getMessage() for r in caplog.records if r.name == "edgevoice.daemon.connection"]
    assert [x for x in lines if x.startswith("model stopped")] == [
        x for x in lines if x.startswith("model stopped: hung: no model event for 1 s while a response was due")
    ]
    assert len([x for x in lines if x.startswith("model stopped")]) == 1, lines
    # The hung peer never answers the close: websockets waits 10 s, the stop deadline 3 s.
    assert sum("abandoned" in x for x in lines) == 1, lines
    assert loop.agents.builds == 2 and fake.seen.connections == 2  # a fresh agent for the second connection
    assert loop.connection.reconnects == 1
    msgs = check_store(tmp_path)
    # The fresh agent restored the whole history from the store and Strands replayed it to the new connection.
    replayed = [c["text"] for item in fake.replayed[1] for c in item.get("content", []) if "text" in c]
    assert replayed == [text for m in msgs[:2] for text in texts([m], m["role"])], fake.replayed[1]


def test_a_drop_mid_answer_reconnects_and_answers_the_next_turn(
    alsa: AsoundRc, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="edgevoice")
    loop, fake, _took = run_through("kill", alsa, tmp_path, monkeypatch, gap_s=4.0)
    lines = [r.getMessage() for r in caplog.records if r.name == "edgevoice.daemon.connection"]
    stopped = [x for x in lines if x.startswith("model stopped")]
    assert len(stopped) == 1 and stopped[0].startswith("model stopped: ConnectionClosedError"), lines
    assert not any("abandoned" in x for x in lines), lines
    assert fake.seen.connections == 2 and loop.connection.reconnects == 1
    assert loop.agents.builds == 1  # its stop returned: the same agent started again
    check_store(tmp_path)


def test_a_fresh_agent_takes_over_the_store_with_the_whole_history(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the connection relies on after abandoning a stop: a second BidiAgent on the same durable store
    (Strands refuses a second agent with the same id, so the old one is detached first) restores every
    message, those the flash has not taken yet (held in memory) included, and the old agent's late messages
    are not stored: numbering goes on without a gap or a duplicate."""
    from strands.types.exceptions import SessionException

    from edgevoice.session import DurableFileSessionManager
    from edgevoice.session import held as held_module
    from edgevoice.session.durable import detach
    from tests.talk import agent_for, exchange

    storage = tmp_path / "store"
    sm = DurableFileSessionManager("s1", storage_dir=str(storage))
    real_write = held_module.write_bytes

    def full(path: Any, data: bytes) -> None:
        if "message_" in str(path):
            raise OSError(28, "No space left on device")
        real_write(path, data)

    async def main() -> None:
        first = agent_for(sm)
        await first.start()
        await exchange(first, "my name is alice")
        monkeypatch.setattr(held_module, "write_bytes", full)  # the flash fills up: messages held in memory
        await exchange(first, "what time is it")
        assert sm.pending_writes >= 2
        with pytest.raises(SessionException, match="unique"):
            agent_for(sm)  # what Strands does without the detach
        detach(sm, first)
        second = agent_for(sm)
        assert [(m["role"], m["content"]) for m in second.messages] == [
            (m["role"], m["content"]) for m in first.messages
        ]
        await exchange(first, "this is not stored")  # the abandoned agent talks on: ignored by the store
        monkeypatch.setattr(held_module, "write_bytes", real_write)  # space again
        await second.start()
        await exchange(second, "what is my name")
        await asyncio.wait_for(first.stop(), 10)
        await asyncio.wait_for(second.stop(), 10)
        sm.retry_pending()
        assert sm.pending_writes == 0

    asyncio.run(asyncio.wait_for(main(), 60))
    directory = storage / "session_s1" / "agents" / "agent_edgevoice" / "messages"
    numbers = sorted(int(p.stem.split("_")[1]) for p in directory.glob("message_*.json"))
    assert numbers == list(range(6)), numbers  # three exchanges, user and assistant each
    said = texts(stored_messages(storage, "s1", "edgevoice"), "user")
    assert said == ["my name is alice", "what time is it", "what is my name"], said
