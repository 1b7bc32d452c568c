"""Barge-in through the daemon's wiring: a user turn that opens while the answer plays stops
playback within one period, drops the queue, and mutes what still arrives of that answer."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from strands.bidi.types.events import BidiAudioDeltaEvent, BidiBargeInEvent, BidiResponseStartEvent

from edgevoice import config
from edgevoice.audio import Playback
from edgevoice.daemon.mic import GatedMic
from edgevoice.daemon.speaker import SpeakerOutput
from edgevoice.daemon.state import Event, State, StateMachine
from edgevoice.gate import make_gate
from tests import audiogen as ag
from tests.alsa import AsoundRc, alsa_home

RATE = 16000
PERIOD_MS = 30
FRAME = RATE * PERIOD_MS // 1000 * 2


@pytest.fixture
def alsa(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[AsoundRc]:
    yield from alsa_home(tmp_path, monkeypatch)


class NoFrames:
    async def read(self) -> bytes:
        return b""


def tone(seconds: float) -> bytes:
    t = np.arange(int(RATE * seconds)) / RATE
    return (np.sin(2 * np.pi * 440 * t) * 8000).astype("<i2").tobytes()


def delta(pcm: bytes, content_id: str) -> BidiAudioDeltaEvent:
    return BidiAudioDeltaEvent(base64.b64encode(pcm).decode(), "pcm", RATE, 1, content_id)


async def playing_answer(out: Path) -> tuple[Playback, StateMachine, SpeakerOutput, GatedMic, asyncio.Event]:
    state = StateMachine()
    idle = asyncio.Event()
    pb = Playback("spk", rate=RATE, period_ms=PERIOD_MS, pace=True)
    pb.on_start = lambda: state.fire(Event.PLAYBACK_STARTED)
    pb.on_idle = lambda: (state.fire(Event.PLAYBACK_IDLE), idle.set())
    pb.start()
    speaker = SpeakerOutput(pb, state)
    mic = GatedMic(NoFrames(), make_gate(config.Settings()), speaker, state)
    state.fire(Event.TURN_STARTED)
    state.fire(Event.TURN_ENDED)
    await speaker(BidiResponseStartEvent("r1"))
    long_answer = tone(6.0)
    for i in range(0, len(long_answer), 3200):
        await speaker(delta(long_answer[i : i + 3200], "a1"))
    deadline = time.monotonic() + 5
    while state.state is not State.SPEAKING and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert state.state is State.SPEAKING
    return pb, state, speaker, mic, idle


def user_speech_frames() -> list[bytes]:
    x = np.concatenate([np.zeros(RATE // 2), ag.speak("Stop. What time is it?"), np.zeros(RATE)])
    return ag.frames(ag.to_s16(x * 0.5), PERIOD_MS)


def test_user_speech_during_playback_stops_it_within_one_period(alsa: AsoundRc, tmp_path: Path) -> None:
    out = tmp_path / "out.raw"
    alsa.playback("spk", out).write()

    async def main() -> None:
        pb, state, speaker, mic, idle = await playing_answer(out)
        await asyncio.sleep(0.6)
        t_play = time.monotonic()
        for frame in user_speech_frames():
            mic.handle(frame)
            if mic.barge_ins:
                break
        assert mic.barge_ins == 1, "the gate never opened on the user's speech"
        t_cut = time.monotonic()
        assert not speaker.is_playing
        assert state.state is State.LISTENING
        await asyncio.wait_for(idle.wait(), 1.0)
        assert time.monotonic() - t_cut <= PERIOD_MS / 1000 + 0.02, "on_idle came later than one period"
        # What still arrives of the interrupted answer is not played.
        await speaker(delta(tone(1.0), "a1"))
        assert not pb.is_playing
        # The user's turn (with its pre-roll) is queued for the model.
        assert mic.pending > 0 and mic.turns_started == 1
        size_after_cut = out.stat().st_size
        await asyncio.sleep(0.3)
        assert out.stat().st_size == size_after_cut, "playback went on after the barge-in"
        pb.stop()
        played_s = size_after_cut / 2 / RATE
        # Paced playback is at most one ALSA buffer (4 periods) + one period ahead of real time.
        elapsed = t_cut - t_play + 0.6
        assert played_s <= elapsed + 5 * PERIOD_MS / 1000 + 0.05, (played_s, elapsed)

    asyncio.run(main())


def test_model_barge_in_event_stops_playback(alsa: AsoundRc, tmp_path: Path) -> None:
    alsa.playback("spk", tmp_path / "out.raw").write()

    async def main() -> None:
        pb, state, speaker, _mic, idle = await playing_answer(tmp_path / "out.raw")
        await speaker(BidiBargeInEvent())
        assert not pb.is_playing
        assert state.state is State.LISTENING
        await asyncio.wait_for(idle.wait(), 1.0)
        await speaker(delta(tone(0.5), "a1"))  # late audio of the interrupted answer
        assert not pb.is_playing
        await speaker(BidiResponseStartEvent("r2"))
        await speaker(delta(tone(0.5), "a2"))
        assert pb.is_playing
        pb.stop()

    asyncio.run(main())


def guarded_mic() -> tuple[Playback, GatedMic]:
    """Paced playback on "spk" and a mic behind the real gate with the 300 ms half-duplex tail."""
    state = StateMachine()
    pb = Playback("spk", rate=RATE, period_ms=PERIOD_MS, pace=True)
    speaker = SpeakerOutput(pb, state)
    return pb, GatedMic(NoFrames(), make_gate(config.Settings()), speaker, state, echo_tail_s=0.3)


def test_echo_tail_drops_frames_after_playback(alsa: AsoundRc, tmp_path: Path) -> None:
    alsa.playback("spk", tmp_path / "out.raw").write()

    async def main() -> None:
        pb, mic = guarded_mic()
        quiet = asyncio.Event()

        def went_quiet() -> None:
            mic.speaker_went_quiet()
            quiet.set()

        pb.on_idle = went_quiet
        pb.start()
        pb.play(tone(0.2), RATE)
        await asyncio.wait_for(pb.wait_idle(), 3)
        await asyncio.wait_for(quiet.wait(), 3)  # on_idle comes through the loop: a busy machine takes a while
        frames = user_speech_frames()
        for f in frames[:5]:
            mic.handle(f)
        assert mic.echo_dropped == 5
        await asyncio.sleep(0.35)
        for f in frames:
            mic.handle(f)
        assert mic.echo_dropped == 5 and mic.turns_started == 1
        pb.stop()

    asyncio.run(main())


def test_the_echo_tail_never_cuts_into_a_turn_already_open(alsa: AsoundRc, tmp_path: Path) -> None:
    """The user barged in: the flush makes the speaker quiet, but their turn is open and every frame of it
    reaches the gate (the tail guards against echo opening a turn, not against the user)."""
    alsa.playback("spk", tmp_path / "out.raw").write()

    async def main() -> None:
        pb, mic = guarded_mic()
        pb.start()
        pb.play(tone(2.0), RATE)
        frames = user_speech_frames()
        k = 0
        while mic.turns_started == 0:
            mic.handle(frames[k])
            k += 1
        assert mic.barge_ins == 1
        mic.speaker_went_quiet()  # what the flush's on_idle does, on the loop
        for f in frames[k : k + 10]:
            mic.handle(f)
        assert mic.echo_dropped == 0
        pb.stop()

    asyncio.run(main())
