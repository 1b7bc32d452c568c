"""The local model's endpointer, driven 10 ms frame by frame."""

from __future__ import annotations

import numpy as np
import pytest

from edgevoice.models.endpoint import Endpointer, EndpointEvent, SpeechStarted, Utterance
from tests.audiogen import speak, to_s16

RATE = 16000
FRAME = RATE // 100  # samples in 10 ms


def tone(ms: int, rms: float, freq: float = 220.0) -> np.ndarray:
    t = np.arange(RATE * ms // 1000) / RATE
    return np.asarray(rms * np.sqrt(2) * np.sin(2 * np.pi * freq * t), dtype=np.float64)


def quiet(ms: int) -> np.ndarray:
    return np.zeros(RATE * ms // 1000)


def pcm(*parts: np.ndarray) -> bytes:
    x = np.concatenate(parts)
    return np.clip(np.round(x), -32768, 32767).astype("<i2").tobytes()


def by_frame(ep: Endpointer, data: bytes) -> list[tuple[int, EndpointEvent]]:
    """(index of the 10 ms frame that produced it, event)."""
    out = []
    step = FRAME * 2
    for i in range(0, len(data), step):
        out += [(i // step, e) for e in ep.push(data[i : i + step])]
    return out


def test_turn_starts_after_min_speech_and_ends_after_400_ms_of_quiet() -> None:
    ep = Endpointer()
    data = pcm(quiet(200), tone(500, 3000), quiet(600))
    events = by_frame(ep, data)
    assert [type(e) for _, e in events] == [SpeechStarted, Utterance]
    assert events[0][0] == 20 + 6 - 1  # the 6th loud frame (60 ms) opens the turn
    assert events[1][0] == 20 + 50 + 40 - 1  # the 40th quiet frame (400 ms) ends it
    utterance = events[1][1]
    assert isinstance(utterance, Utterance)
    assert len(utterance.pcm) == (200 + 500 + 400) * RATE // 1000 * 2  # 200 ms pre-roll kept, up to 300
    assert not ep.in_speech


def test_preroll_is_bounded() -> None:
    ep = Endpointer(preroll_ms=300)
    events = ep.push(pcm(tone(2000, 50), tone(300, 3000), quiet(400)))  # 2 s of faint hum first
    utterances = [e for e in events if isinstance(e, Utterance)]
    assert len(utterances) == 1
    assert len(utterances[0].pcm) == (300 + 300 + 400) * RATE // 1000 * 2


def test_pause_shorter_than_the_end_silence_does_not_split() -> None:
    ep = Endpointer()
    events = ep.push(pcm(tone(300, 3000), quiet(390), tone(300, 3000), quiet(400)))
    assert [type(e) for e in events] == [SpeechStarted, Utterance]
    ep2 = Endpointer()
    events = ep2.push(pcm(tone(300, 3000), quiet(410), tone(300, 3000), quiet(400)))
    assert [type(e) for e in events] == [SpeechStarted, Utterance, SpeechStarted, Utterance]


def test_a_click_is_not_a_turn() -> None:
    ep = Endpointer()
    assert ep.push(pcm(tone(30, 5000), quiet(1000))) == []
    assert not ep.in_speech
    # and the click's frames are gone: the next turn starts clean
    events = ep.push(pcm(tone(300, 3000), quiet(400)))
    utterance = events[-1]
    assert isinstance(utterance, Utterance)
    assert len(utterance.pcm) == (300 + 300 + 400) * RATE // 1000 * 2  # pre-roll is the click's quiet


def test_room_noise_keeps_the_turn_open_until_real_silence() -> None:
    ep = Endpointer()
    data = pcm(tone(300, 3000), tone(1000, 200), quiet(600))  # 200 RMS: neither speech nor quiet
    events = by_frame(ep, data)
    assert [type(e) for _, e in events] == [SpeechStarted, Utterance]
    assert events[1][0] == 30 + 100 + 40 - 1


def test_long_turns_are_cut() -> None:
    ep = Endpointer(max_utterance_ms=1000)
    events = ep.push(pcm(tone(2500, 3000)))
    # cut at 1 s and 2 s; the last 500 ms is a turn still open
    assert [type(e) for e in events] == [SpeechStarted, Utterance, SpeechStarted, Utterance, SpeechStarted]
    assert all(len(e.pcm) == RATE * 2 for e in events if isinstance(e, Utterance))


@pytest.mark.parametrize("chunk", [1, 7, 320, 961, 4800])
def test_chunking_does_not_matter(chunk: int) -> None:
    data = pcm(quiet(100), tone(400, 3000), quiet(200), tone(200, 2000), quiet(600))
    whole = Endpointer().push(data)
    ep = Endpointer()
    pieces: list[EndpointEvent] = []
    for i in range(0, len(data), chunk):
        pieces += ep.push(data[i : i + chunk])
    assert pieces == whole
    assert [type(e) for e in whole] == [SpeechStarted, Utterance]


def test_reset_drops_a_turn_in_progress() -> None:
    ep = Endpointer()
    assert ep.push(pcm(tone(300, 3000))) == [SpeechStarted()]
    ep.reset()
    assert not ep.in_speech
    assert ep.push(pcm(quiet(600))) == []


def test_espeak_sentence_followed_by_the_daemons_end_marker_is_one_utterance() -> None:
    speech = to_s16(speak("My name is Alice."))
    events = Endpointer().push(speech + bytes(RATE * 2 * 600 // 1000))
    assert [type(e) for e in events] == [SpeechStarted, Utterance]
    utterance = events[1]
    assert isinstance(utterance, Utterance)
    assert speech in utterance.pcm


def test_silence_threshold_must_not_exceed_speech_threshold() -> None:
    with pytest.raises(ValueError, match="silence_rms"):
        Endpointer(speech_rms=100, silence_rms=200)
