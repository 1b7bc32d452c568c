"""The offline `local` model inside a real Strands BidiAgent: real pocketsphinx, real espeak-ng."""

from __future__ import annotations

import asyncio
import base64
import copy
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soxr
from strands.bidi import BidiAgent
from strands.bidi.models import AudioCapable
from strands.bidi.types import AudioDelta, BidiMessage, BidiOutputEvent
from strands.types.content import Messages, TextBlock
from strands.types.media import ImageBlock

from edgevoice.config import LocalModelSettings
from edgevoice.models import tts
from edgevoice.models.local import MODEL_ID, LocalModel
from edgevoice.models.responder import OFFLINE_CANNOT, OFFLINE_FIRST
from tests.audiogen import speak, to_s16

RATE = 16000
END_MARKER = bytes(RATE * 2 * 600 // 1000)  # what the daemon sends after each turn


def clock() -> datetime:
    return datetime(2025, 11, 25, 15, 7)


def run[T](coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, 60))


def speech(text: str, voice: str = "en-us") -> bytes:
    return to_s16(speak(text, voice))


async def say(agent: BidiAgent, pcm: bytes, chunk_ms: int = 30) -> None:
    """Send a turn as the daemon does: 16 kHz PCM in capture periods, then the end marker."""
    data = pcm + END_MARKER
    step = RATE * 2 * chunk_ms // 1000
    for i in range(0, len(data), step):
        await agent.send(AudioDelta(format="pcm", source={"bytes": data[i : i + step]}))


async def until(events: AsyncIterator[BidiOutputEvent], done: Callable[[BidiOutputEvent], bool]) -> list[Any]:
    out = []
    while True:
        event = await asyncio.wait_for(anext(events), 20)
        out.append(event)
        if done(event):
            return out


def is_response_stop(e: BidiOutputEvent) -> bool:
    return bool(e["type"] == "bidi_response_stop")


def kinds(events: list[Any]) -> list[str]:
    """Event types without the audio deltas, with the role on transcript events."""
    return [
        f"{e['type'].removeprefix('bidi_')}:{e['role']}" if "role" in e else e["type"].removeprefix("bidi_")
        for e in events
        if e["type"] != "bidi_audio_delta"
    ]


def transcript(events: list[Any], role: str) -> str:
    return "".join(e["delta"] for e in events if e["type"] == "bidi_transcript_delta" and e["role"] == role)


def audio(events: list[Any]) -> bytes:
    return b"".join(base64.b64decode(e["audio"]) for e in events if e["type"] == "bidi_audio_delta")


def texts(messages: list[Any]) -> list[tuple[str, str]]:
    return [(m["role"], " ".join(b.get("text", "") for b in m["content"])) for m in messages]


TURN = [
    "transcript_start:user",
    "transcript_delta:user",
    "transcript_stop:user",
    "transcript_block:user",  # added by the agent
    "response_start",
    "transcript_start:assistant",
    "transcript_delta:assistant",
    "audio_start",
    "audio_stop",
    "transcript_stop:assistant",
    "transcript_block:assistant",
    "response_stop",
]


@dataclass
class FirstRun:
    turns: list[list[Any]]
    messages: list[Any]


@pytest.fixture(scope="module")
def first_run() -> FirstRun:
    """One spoken conversation: "My name is Alice." then "What is my name?"."""

    async def go() -> FirstRun:
        agent = BidiAgent(model=LocalModel(clock=clock, pace_lead_s=None))
        await agent.start()
        events = agent.receive()
        turns = []
        try:
            for text in ("My name is Alice.", "What is my name?"):
                await say(agent, speech(text))
                turns.append(await until(events, is_response_stop))
        finally:
            await agent.stop()
        return FirstRun(turns, copy.deepcopy(agent.messages))

    return run(go())


def test_spoken_turn_events_in_cloud_order(first_run: FirstRun) -> None:
    first, second = first_run.turns
    assert kinds(first) == ["connection_start", *TURN]
    assert kinds(second) == TURN
    assert "alice" in transcript(first, "user").lower()
    assert transcript(first, "user") == "My name is Alice."
    assert transcript(first, "assistant") == "Nice to meet you, Alice."
    assert transcript(second, "user") == "What is my name?"
    assert "Alice" in transcript(second, "assistant")
    for turn in (first, second):
        start = next(e for e in turn if e["type"] == "bidi_audio_start")["content_id"]
        deltas = [e for e in turn if e["type"] == "bidi_audio_delta"]
        assert deltas and all(e["content_id"] == start for e in deltas)
        assert {(e["format"], e["sample_rate"], e["channels"]) for e in deltas} == {("pcm", 16000, 1)}
        assert max(len(base64.b64decode(e["audio"])) for e in deltas) == RATE * 2 // 10  # 100 ms chunks


def test_audio_is_the_spoken_answer(first_run: FirstRun) -> None:
    for turn in first_run.turns:
        answer = transcript(turn, "assistant")
        assert audio(turn) == tts.TextToSpeech().synthesize(answer)


def test_transcripts_land_in_agent_messages_with_final_text(first_run: FirstRun) -> None:
    assert texts(first_run.messages) == [
        ("user", "My name is Alice."),
        ("assistant", "Nice to meet you, Alice."),
        ("user", "What is my name?"),
        ("assistant", "Your name is Alice."),
    ]
    assert all(m["metadata"]["custom"]["bidi"]["status"] == "complete" for m in first_run.messages)


def test_restored_history_answers_the_name(first_run: FirstRun) -> None:
    async def go() -> list[Any]:
        model = LocalModel(clock=clock, pace_lead_s=None)
        agent = BidiAgent(model=model, messages=copy.deepcopy(first_run.messages))
        await agent.start()
        try:
            await say(agent, speech("What is my name?", "en-us+m3"))
            return await until(agent.receive(), is_response_stop)
        finally:
            await agent.stop()

    events = run(go())
    assert transcript(events, "user") == "What is my name?"
    assert transcript(events, "assistant") == "Your name is Alice."


def test_text_input_is_answered_without_a_user_transcript() -> None:
    async def go() -> tuple[list[Any], list[Any]]:
        agent = BidiAgent(model=LocalModel(clock=clock, pace_lead_s=None))
        await agent.start()
        events = agent.receive()
        try:
            seen = []
            for text in ("my name is Bob", "what is my name", "what time is it"):
                await agent.send(text)
                seen += await until(events, is_response_stop)
            return seen, copy.deepcopy(agent.messages)
        finally:
            await agent.stop()

    events, messages = run(go())
    assert "transcript_start:user" not in kinds(events)
    assert texts(messages) == [
        ("user", "my name is Bob"),
        ("assistant", "Nice to meet you, Bob."),
        ("user", "what is my name"),
        ("assistant", "Your name is Bob."),
        ("user", "what time is it"),
        ("assistant", "It is 3:07 PM."),
    ]


def test_barge_in_stops_the_answer() -> None:
    full = tts.TextToSpeech().synthesize(
        "I'm working offline. I can remember your name, tell you the time and the date, "
        "repeat what you said, and tell a joke."
    )

    async def go() -> tuple[list[Any], list[Any], float, list[Any]]:
        agent = BidiAgent(model=LocalModel(clock=clock, pace_lead_s=0.5))
        await agent.start()
        events = agent.receive()
        try:
            await agent.send("What can you do?")
            before = await until(events, lambda e: e["type"] == "bidi_audio_delta")
            sent = time.monotonic()
            await say(agent, speech("Stop."))
            cut = await until(events, is_response_stop)
            latency = time.monotonic() - sent
            after = await until(events, is_response_stop)
            return before + cut, after, latency, copy.deepcopy(agent.messages)
        finally:
            await agent.stop()

    first, second, latency, messages = run(go())
    assert kinds(first)[-5:] == [
        "barge_in",
        "audio_stop",
        "transcript_stop:assistant",
        "transcript_block:assistant",
        "response_stop",
    ]
    assert kinds(first).count("barge_in") == 1
    assert latency < 0.5
    assert 0 < len(audio(first)) < len(full) / 2
    assert transcript(first, "assistant") == "I'm working offline."
    assert transcript(second, "user") == "Stop."
    assert transcript(second, "assistant") == "Okay."
    assert texts(messages)[1:] == [
        ("assistant", "I'm working offline."),  # only what was sent before the barge-in
        ("user", "Stop."),
        ("assistant", "Okay."),
    ]


def test_stop_ends_receive_promptly_and_start_again_uses_history() -> None:
    alice: Messages = [
        {"role": "user", "content": [{"text": "My name is Alice."}]},
        {"role": "assistant", "content": [{"text": "Nice to meet you, Alice."}]},
    ]

    async def go() -> list[Any]:
        model = LocalModel(pace_lead_s=None)
        with pytest.raises(RuntimeError, match="not started"):
            await model.send(BidiMessage([TextBlock("hello")]))
        await model.start()
        with pytest.raises(RuntimeError, match="already started"):
            await model.start()
        stream = model.receive()
        assert (await anext(stream))["type"] == "bidi_connection_start"
        reader = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(0.05)
        t0 = time.monotonic()
        await model.stop()
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(reader, 1)
        assert time.monotonic() - t0 < 0.5

        await model.start(messages=alice)
        try:
            stream = model.receive()
            await model.send(BidiMessage([TextBlock("What is my name?")]))
            return await until(stream, is_response_stop)
        finally:
            await model.stop()

    events = run(go())
    assert transcript(events, "assistant") == "Your name is Alice."


def test_agent_restart_keeps_the_conversation() -> None:
    async def go() -> list[Any]:
        agent = BidiAgent(model=LocalModel(pace_lead_s=None))
        await agent.start()
        await agent.send("call me Max")
        await until(agent.receive(), is_response_stop)
        await agent.stop()
        await agent.start()
        try:
            await agent.send("who am i")
            return await until(agent.receive(), is_response_stop)
        finally:
            await agent.stop()

    assert transcript(run(go()), "assistant") == "Your name is Max."


def test_other_input_and_output_rates() -> None:
    settings = LocalModelSettings(output_rate=24000)
    model = LocalModel(settings, input_rate=48000, pace_lead_s=None)
    config = model.get_config()
    assert config["model_id"] == MODEL_ID
    assert config["audio"]["input"] == {"sample_rate": 48000, "channels": 1, "format": "pcm"}
    assert config["audio"]["output"] == {"sample_rate": 24000, "channels": 1, "format": "pcm"}
    assert model.get_audio_config() == config["audio"]
    assert isinstance(model, AudioCapable)  # what Strands' own AudioIO checks for
    assert "restart_after_s" not in model.get_connection_config()
    pcm48 = np.asarray(soxr.resample(np.frombuffer(speech("My name is Alice."), "<i2"), RATE, 48000), "<i2")
    end48 = bytes(48000 * 2 * 600 // 1000)

    async def go() -> list[Any]:
        agent = BidiAgent(model=model)
        await agent.start()
        try:
            data = pcm48.tobytes() + end48
            for i in range(0, len(data), 2880):
                await agent.send(AudioDelta(format="pcm", source={"bytes": data[i : i + 2880]}))
            return await until(agent.receive(), is_response_stop)
        finally:
            await agent.stop()

    events = run(go())
    assert transcript(events, "user") == "My name is Alice."
    deltas = [e for e in events if e["type"] == "bidi_audio_delta"]
    assert {e["sample_rate"] for e in deltas} == {24000}
    assert audio(events) == tts.TextToSpeech(rate=24000).synthesize("Nice to meet you, Alice.")


def test_update_config_changes_the_voice_only() -> None:
    model = LocalModel()
    model.update_config(params={"voice": "en-us+f2", "words_per_minute": 140})
    assert model.get_config()["params"] == {"voice": "en-us+f2", "words_per_minute": 140}
    with pytest.raises(ValueError, match="cannot update model_id"):
        model.update_config(model_id="other")


def test_unsupported_content_is_refused() -> None:
    async def go() -> None:
        model = LocalModel()
        await model.start()
        try:
            with pytest.raises(ValueError, match="ImageBlock"):
                await model.send(BidiMessage([ImageBlock(format="png", source={"bytes": b"x"})]))
            with pytest.raises(ValueError, match="raw PCM"):
                await model.send(AudioDelta(format="mp3", source={"bytes": b"x"}))
        finally:
            await model.stop()

    run(go())


def test_missing_espeak_fails_at_start_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))

    async def go() -> None:
        await BidiAgent(model=LocalModel()).start()

    with pytest.raises(tts.SpeechError, match=r"^local model: espeak-ng is not installed"):
        run(go())


def test_as_the_offline_fallback_it_says_so_once_and_what_it_cannot_do() -> None:
    async def go() -> list[str]:
        agent = BidiAgent(model=LocalModel(clock=clock, pace_lead_s=None, offline_fallback=True))
        await agent.start()
        events = agent.receive()
        answers = []
        try:
            await say(agent, speech("What time is it?"))
            answers.append(transcript(await until(events, is_response_stop), "assistant"))
            await agent.send("Who won the football match yesterday?")  # typed: the recogniser knows no football
            answers.append(transcript(await until(events, is_response_stop), "assistant"))
        finally:
            await agent.stop()
        return answers

    first, second = run(go())
    assert first.startswith(OFFLINE_FIRST + " It is ")  # why the answers got simpler, once
    assert second == OFFLINE_CANNOT
