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
    assert earcons.played == ["lost", "back"]
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
    assert loop.earcons is not None and loop.earcons.played == ["lost", "back", "reset"]
    assert out.read_bytes() == make("lost") + make("back") + make("reset")
    out.unlink()
    loop = asyncio.run(body("earcons = false\n"))
    assert loop.earcons is None and loop.sessions.cue is None
    assert not out.exists() or out.read_bytes() == b""
