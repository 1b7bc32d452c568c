"""The device ends each user turn itself (OpenAI Realtime): the gate's turn end commits the turn at once, one
answer per turn follows, and the server's VAD can no longer cut a turn the gate keeps open.

Real parts from the gate to the wire: espeak-ng speech gated by the real gate in the real `GatedMic` (its end
marker marked `END_OF_TURN`), a real `BidiAgent` running the real `EndpointOpenAIRealtimeModel` against the
OpenAI fake, whose server VAD ends a turn on digital silence as long as the session asks. `TurnRig` is also
what bench/rows_turn_end.py measures with."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from strands.bidi import BidiAgent

from edgevoice import config
from edgevoice.daemon.mic import GatedMic
from edgevoice.daemon.state import StateMachine
from edgevoice.gate import make_gate
from edgevoice.models import DEFAULT_MODEL_IDS, OPENAI_TRANSCRIPTION_MODEL
from edgevoice.models.openai_realtime import VAD_SILENCE_MS, EndpointOpenAIRealtimeModel
from edgevoice.pcm import StreamResampler
from tests import audiogen as ag
from tests.fakes.base import Turn
from tests.fakes.openai import FakeOpenAIRealtime

PERIOD_S = 0.03
MARKER_BYTES = 24000 * 2 * 600 // 1000  # the mic's 600 ms end marker at the model's 24 kHz


class NoFrames:
    async def read(self) -> bytes:
        return b""


class Quiet:
    """The speaker, never playing: these turns are never barge-ins."""

    is_playing = False

    def flush(self) -> int:
        return 0


class Heard:
    """An output stream that keeps every event the agent puts out."""

    def __init__(self) -> None:
        self.events: list[Any] = []

    async def start(self, agent: BidiAgent) -> None:
        return

    async def stop(self) -> None:
        return

    async def __call__(self, event: Any) -> None:
        self.events.append(event)

    def of(self, kind: str) -> list[Any]:
        return [e for e in self.events if e.get("type") == kind]

    def said(self, role: str) -> list[str]:
        return [e["transcript"] for e in self.of("bidi_transcript_block") if e["role"] == role]


class TurnRig:
    """The mic, gate, agent and model of one conversation against `fake` (or `endpoint`, a way to it).
    `turn_ended_at` holds when the gate ended each turn (the mic's `on_turn_ended`), `fed_at` when each frame
    was handed to the mic."""

    def __init__(
        self,
        fake: FakeOpenAIRealtime,
        *,
        commit: bool = True,
        hangover_ms: int | None = None,
        endpoint: str | None = None,
    ) -> None:
        settings = config.Settings()
        if hangover_ms is not None:
            settings = config.replace(settings, gate={"hangover_ms": hangover_ms})
        self.fake = fake
        self.model = EndpointOpenAIRealtimeModel(
            model_id=DEFAULT_MODEL_IDS["openai_realtime"],
            transcription_model_id=OPENAI_TRANSCRIPTION_MODEL,
            api_key="sk-fake-edgevoice-end-of-turn",
            endpoint=endpoint or fake.url,
            commit_turns=commit,
        )
        to_model = StreamResampler(16000, 24000).process
        self.mic = GatedMic(NoFrames(), make_gate(settings), Quiet(), StateMachine(), to_model_rate=to_model)
        self.turn_ended_at: list[float] = []
        self.mic.on_turn_ended = lambda: self.turn_ended_at.append(time.monotonic())
        self.fed_at: list[float] = []
        self.heard = Heard()
        self.agent = BidiAgent(model=self.model)

    async def talk(self, frames: Sequence[bytes], answers: int, pace: float = 1.0, timeout: float = 30) -> None:
        """Run the agent, say `frames` through the gate (`pace` times real time), and wait for `answers`."""
        task = asyncio.create_task(self.agent.run(inputs=[self.mic], outputs=[self.heard]))
        try:
            await until(lambda: bool(self.heard.of("bidi_connection_start")), 10, "the connection")
            t0 = time.monotonic()
            for i, frame in enumerate(frames):
                self.fed_at.append(time.monotonic())
                self.mic.handle(frame)
                await asyncio.sleep(max(0.0, t0 + (i + 1) * PERIOD_S / pace - time.monotonic()))
            await until(lambda: len(self.heard.of("bidi_response_stop")) >= answers, timeout, f"{answers} answers")
            await asyncio.sleep(0.3)  # whatever would still come (a second answer, a late commit) has its chance
            assert not task.done(), task
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(task, 10)

    def commit_delays_ms(self) -> list[float]:
        """For each turn: from the gate's turn end to the fake's end of that turn (its commit, or its VAD)."""
        ends = [t for t, _ in self.fake.ends]
        return [(end - start) * 1000 for start, end in zip(self.turn_ended_at, ends, strict=True)]


async def until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.005)


def speech(says: Sequence[ag.Say], noise: str | None = None, snr_db: float = 30.0) -> tuple[list[bytes], ag.Scene]:
    """30 ms frames of espeak-ng utterances; between them digital silence (`noise` None: what a server's VAD
    hears as silence) or a noise floor `snr_db` below the speech."""
    scene = ag.sequence(says, noise, snr_db, lead_s=1.0, tail_s=1.5)
    return ag.frames(scene.s16(), 30), scene


@pytest.fixture
def fake_for() -> Iterator[Any]:
    fakes: list[FakeOpenAIRealtime] = []

    def make(turns: list[Turn], **kwargs: Any) -> FakeOpenAIRealtime:
        fake = FakeOpenAIRealtime(turns, **kwargs)
        fake.start()
        fakes.append(fake)
        return fake

    yield make
    for fake in fakes:
        fake.stop()


def vad_turns(*answers: str, chunks: int = 3) -> list[Turn]:
    """Scripted turns that the fake's server VAD may end (on the session's silence), or a commit."""
    return [Turn(user=f"heard {i}", assistant=a, audio_chunks=chunks, silence_ms=500) for i, a in enumerate(answers)]


def kinds(fake: FakeOpenAIRealtime) -> list[str]:
    return [kind for _, kind in fake.ends]


def test_each_turn_is_committed_once_by_the_device_and_answered_once(fake_for: Any) -> None:
    fake = fake_for(vad_turns("It is noon.", "Hello Alice."))
    frames, _ = speech([ag.Say("What time is it?"), ag.Say("My name is Alice.", "en-us+f3", gap_s=1.5)])
    rig = TurnRig(fake)
    asyncio.run(asyncio.wait_for(rig.talk(frames, answers=2, pace=2.0), 60))

    assert rig.mic.turns_ended == 2 and rig.model.turns_committed == 2
    assert kinds(fake) == ["commit", "commit"], fake.ends
    assert len(fake.client("input_audio_buffer.commit")) == 2
    assert len(fake.client("response.create")) == 2
    assert rig.heard.said("assistant") == ["It is noon.", "Hello Alice."]
    assert rig.heard.said("user") == ["heard 0", "heard 1"]
    assert len(rig.heard.of("bidi_response_start")) == 2 and fake.errors == []
    # Server VAD stays on as Strands requires, but waits longer than a turn holds.
    [update] = fake.client("session.update")
    detection = update["session"]["audio"]["input"]["turn_detection"]
    assert detection["type"] == "server_vad" and detection["silence_duration_ms"] == VAD_SILENCE_MS
    assert detection.get("create_response", True) and detection.get("interrupt_response", True)
    # The commit goes before the end marker's silence, which then opens the next buffer.
    sent = [m["type"] for m in fake.seen.messages]
    first = sent.index("input_audio_buffer.commit")
    assert sent[first : first + 3] == ["input_audio_buffer.commit", "response.create", "input_audio_buffer.append"]
    marker = base64.b64decode(fake.seen.messages[first + 2]["audio"])  # the resampler's delay shifts it a little
    assert abs(len(marker) - MARKER_BYTES) < MARKER_BYTES // 10 and not any(marker[len(marker) // 2 :])
    # From the gate's turn end to the commit: the agent's hop, not the server's 500 ms of silence.
    assert max(rig.commit_delays_ms()) < 150, rig.commit_delays_ms()


def test_a_pause_the_gate_keeps_is_not_cut_by_the_server(fake_for: Any) -> None:
    """'Set a timer for ... ten minutes' with a 0.55 s pause: shorter than the gate's 0.7 s hangover, so one turn
    on the device; longer than Strands' default 500 ms of server VAD silence, which cut it in two before."""
    says = [ag.Say("Set a timer for"), ag.Say("ten minutes.", gap_s=0.55)]
    frames, _ = speech(says)

    fake = fake_for(vad_turns("Timer set.", "Cut off."))
    rig = TurnRig(fake)
    asyncio.run(asyncio.wait_for(rig.talk(frames, answers=1, pace=2.0), 60))
    assert rig.mic.turns_ended == 1
    assert kinds(fake) == ["commit"] and rig.heard.said("assistant") == ["Timer set."]

    # The same speech with the server's VAD ending turns at Strands' default: cut at the pause.
    before = fake_for(vad_turns("Timer set.", "Cut off."))
    old = TurnRig(before, commit=False)
    asyncio.run(asyncio.wait_for(old.talk(frames, answers=2, pace=2.0), 60))
    assert old.mic.turns_ended == 1 and kinds(before) == ["vad", "vad"]
    assert before.client("input_audio_buffer.commit") == []


def test_a_turn_the_servers_vad_already_ended_is_not_committed_again(fake_for: Any) -> None:
    """With a gate hangover longer than the server's silence, the server's VAD ends the turn inside the
    hangover and answers it: the device's end marker comes later and asks for nothing more."""
    fake = fake_for(vad_turns("It is noon."))
    frames, _ = speech([ag.Say("What time is it?")])
    rig = TurnRig(fake, hangover_ms=VAD_SILENCE_MS + 500)
    frames += [bytes(960)] * 50  # digital silence: the long hangover runs out before the input does
    asyncio.run(asyncio.wait_for(rig.talk(frames, answers=1, pace=2.0), 60))
    assert rig.mic.turns_ended == 1 and rig.model.turns_committed == 0
    assert kinds(fake) == ["vad"] and fake.client("input_audio_buffer.commit") == []
    assert fake.client("response.create") == [] and rig.heard.said("assistant") == ["It is noon."]


def test_a_turn_that_ends_while_an_answer_still_streams_gets_one_answer(fake_for: Any) -> None:
    """The second turn ends while the first answer is still being sent: the server refuses the device's
    `response.create` (one response at a time), Strands asks again once that answer is done: one answer each."""
    fake = fake_for(vad_turns("Once upon a time.", "It is noon.", chunks=60), pace_s=0.05)
    frames, _ = speech([ag.Say("Tell me a story."), ag.Say("What time is it?", "en-gb", gap_s=1.2)])
    rig = TurnRig(fake)
    asyncio.run(asyncio.wait_for(rig.talk(frames, answers=2, pace=2.0), 60))

    assert kinds(fake) == ["commit", "commit"]
    assert [e["code"] for e in fake.errors] == ["conversation_already_has_active_response"]
    assert rig.heard.said("assistant") == ["Once upon a time.", "It is noon."]
    assert len(rig.heard.of("bidi_response_start")) == 2 and fake.seen.turns_played == 2
    # The second answer was asked for after the first one was done, not while it ran.
    assert len(fake.client("response.create")) == 3
