"""Earcons (`edgevoice.daemon.earcons`): short, not speech to the gate (alone, in a quiet room, or over
the echo canceller), played on the state machine's events and on a new session, off with `audio.earcons`."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from edgevoice.config import Settings, parse
from edgevoice.daemon.earcons import NOTES, Earcons, make
from edgevoice.daemon.state import Event, StateMachine
from edgevoice.gate import make_gate
from edgevoice.gate.scan import scan
from edgevoice.pcm import RATE, to_bytes, to_float
from tests import audiogen as ag
from tests.alsa import AsoundRc, alsa_home
from tests.echoroom import Room, place


@pytest.fixture
def asound(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[AsoundRc]:
    yield from alsa_home(tmp_path, monkeypatch)


def turns(signal: np.ndarray) -> int:
    return len(scan(make_gate(Settings()), to_bytes(signal)))


@pytest.mark.parametrize("name", sorted(NOTES))
def test_each_is_short_quiet_and_ends_in_silence(name: str) -> None:
    x = to_float(make(name), np.float64)
    assert 0.1 < len(x) / RATE < 0.3
    assert 0.05 < np.max(np.abs(x)) <= 10 ** (-18 / 20) + 1e-4
    assert abs(x[0]) < 1e-3 and abs(x[-1]) < 1e-3  # faded: no click


def test_they_sound_different() -> None:
    sounds = {name: make(name) for name in NOTES}
    assert len(set(sounds.values())) == len(NOTES)


@pytest.mark.parametrize("gain", [1.0, 4.0])  # as played, and the loudest a room could bring it back
def test_the_gate_never_takes_them_for_speech(gain: float) -> None:
    """Each earcon a few times over, in a quiet room and in pink noise 20 dB under it: no turn. The same scene
    with a spoken sentence in it does open one (the gate is listening)."""
    parts = [(0.8 + 0.7 * i, to_float(make(name), np.float64) * gain) for i, name in enumerate(sorted(NOTES) * 3)]
    length = round((parts[-1][0] + 1.5) * RATE)
    scene = place(length, parts)
    noise = ag.pink_noise(length, seed=3) * ag.speech_level(scene) * 0.1
    assert turns(scene) == 0 and turns(scene + noise) == 0
    said = ag.speak("Is it going to rain?", "en-us+m3")
    said = said / ag.speech_level(said) * ag.speech_level(scene)  # as loud as the earcons
    assert turns(place(length, [*parts, (length / RATE - 1.5, said)]) + noise) >= 1


def test_over_the_echo_canceller_they_leave_nothing_the_gate_hears() -> None:
    far = place(4 * RATE, [(0.5 + i, to_float(make(n), np.float64)) for i, n in enumerate(sorted(NOTES))])
    _, out, cancel = Room(echo_gain=0.8, seed=2).run(far, ag.pink_noise(4 * RATE, seed=2) * 3e-4)
    assert cancel.processed > 0 and turns(out) == 0


def test_the_state_machines_events_play_them_once_each() -> None:
    played: list[tuple[bytes, int]] = []
    earcons = Earcons(lambda pcm, rate: played.append((pcm, rate)))
    sm = StateMachine()
    sm.when_fired(earcons.on_event)
    for event in (Event.TURN_STARTED, Event.MODEL_LOST, Event.TURN_ENDED, Event.MODEL_BACK, Event.PLAYBACK_STARTED):
        sm.fire(event)
    assert list(earcons.played) == ["lost", "back"]
    assert played == [(make("lost"), RATE), (make("back"), RATE)]


def test_the_voice_loop_plays_them_through_the_notice_path_unless_turned_off(asound: AsoundRc, tmp_path: Path) -> None:
    from edgevoice.daemon.voice import VoiceLoop

    out = tmp_path / "out.raw"
    asound.capture("mic", "/dev/zero").playback("spk", out).write()
    base = "[audio]\ncapture_device = 'mic'\nplayback_device = 'spk'\n{extra}[model]\nprovider = 'local'\n"

    async def body(extra: str) -> VoiceLoop:
        loop = VoiceLoop(parse(base.format(extra=extra)))
        loop.playback.start()
        try:
            loop.state.fire(Event.MODEL_LOST)
            loop.state.fire(Event.MODEL_BACK)
            assert loop.sessions.cue is None or loop.earcons is not None
            if loop.sessions.cue:
                loop.sessions.cue()
            await asyncio.wait_for(loop.playback.wait_idle(), 5)
        finally:
            loop.playback.stop()
        return loop

    loop = asyncio.run(body(""))
    assert loop.earcons is not None and list(loop.earcons.played) == ["lost", "back", "reset"]
    assert out.read_bytes() == make("lost") + make("back") + make("reset")
    out.unlink()
    loop = asyncio.run(body("earcons = false\n"))
    assert loop.earcons is None and loop.sessions.cue is None
    assert not out.exists() or out.read_bytes() == b""


def test_a_summons_plays_the_listening_cue_which_the_model_never_hears(asound: AsoundRc, tmp_path: Path) -> None:
    """A button press opens a turn: the listening cue plays, the state stays `listening` (the cue is no answer),
    and without echo cancellation the turn carries digital silence while the cue sounds and for its short
    ring-out after it, then the user's words (with it, the cue is cancelled like any playback). A turn the
    voice gate opens gets no cue."""
    from edgevoice.daemon.state import State
    from edgevoice.daemon.voice import VoiceLoop

    out = tmp_path / "out.raw"
    asound.capture("mic", "/dev/zero").playback("spk", out).write()
    conf = (
        "[audio]\ncapture_device = 'mic'\nplayback_device = 'spk'\necho_cancellation = {aec}\n[gate]\nmode = '{mode}'\n"
        "[model]\nprovider = 'local'\n"
    )
    words = to_bytes(ag.pink_noise(480, seed=5) * 0.1)

    async def summoned(aec: str = "false") -> tuple[VoiceLoop, list[bytes], list[State]]:
        loop = VoiceLoop(parse(conf.format(mode="push_to_talk", aec=aec)))
        states: list[State] = []
        loop.state.when_changed(lambda old, new: states.append(new))
        loop.playback.start()
        sent: list[bytes] = []
        try:
            loop.mic.press()
            assert loop.speaker.is_playing  # the cue, queued as the turn opened
            while loop.playback.is_playing:
                loop.mic.handle(words)
                await asyncio.sleep(0.03)
            for _ in range(15):  # the echo tail (300 ms), then the user's words
                loop.mic.handle(words)
                await asyncio.sleep(0.03)
            loop.mic.release()
            sent = [pcm for pcm, end in loop.mic._pending if not end]
        finally:
            loop.playback.stop()
        return loop, sent, states

    loop, sent, states = asyncio.run(summoned())
    assert loop.earcons is not None and list(loop.earcons.played) == ["listen"]
    assert out.read_bytes() == make("listen")
    assert states == [State.LISTENING, State.THINKING]  # never `speaking` for the cue
    silent = [pcm == bytes(len(words)) for pcm in sent]
    assert silent[0] and silent.count(True) >= 4  # the cue (130 ms) and its tail went as silence
    assert not silent[-1] and sent[-1] == words  # the words after it went as they are
    assert silent == sorted(silent, reverse=True)  # silence only at the start: nothing of the user's cut later
    # With echo cancellation the cue is cancelled like any playback: nothing of the turn is muted.
    loop, sent, states = asyncio.run(summoned("true"))
    assert loop.echo is not None and list(loop.earcons.played) == ["listen"] and states[0] is State.LISTENING
    assert sent and all(pcm == words for pcm in sent)

    async def voiced() -> VoiceLoop:
        loop = VoiceLoop(parse(conf.format(mode="vad", aec="false")))
        said = ag.speak("Is it going to rain?", "en-us+m3")
        data = to_bytes(place(len(said) + RATE, [(0.3, said / np.max(np.abs(said)) * 0.5)]))
        for i in range(0, len(data) - 959, 960):
            loop.mic.handle(data[i : i + 960])
        return loop

    loop = asyncio.run(voiced())
    assert loop.mic.turns_started == 1 and loop.earcons is not None and not loop.earcons.played


def test_an_answer_after_a_cue_alone_moves_the_state_to_speaking() -> None:
    """The cue's stretch marked no answer; an answer (or a notice) queued while it still plays does."""
    from edgevoice.daemon.speaker import SpeakerOutput
    from edgevoice.daemon.state import State

    class Player:
        is_playing = False
        rate = RATE
        buffer_frames = 1920

        def play(self, pcm: bytes, rate: int) -> None:
            self.is_playing = True

        def flush(self) -> int:
            return 0

    sm = StateMachine()
    sm.fire(Event.TURN_STARTED)
    speaker = SpeakerOutput(Player(), sm)
    speaker.play_cue(make("listen"), RATE)
    assert speaker.cue_only and sm.state is State.LISTENING
    speaker.play_notice(make("lost"), RATE)
    assert not speaker.cue_only and sm.state is State.SPEAKING
