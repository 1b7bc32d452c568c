"""Echo cancellation (`edgevoice.frontend`): the far end's timeline, AEC3 in a simulated room (tests/echoroom.py)
on speech it was not tuned on, the gate behind it, and the wiring through real alsa-lib file PCMs."""

from __future__ import annotations

import asyncio
import importlib.util
import itertools
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from edgevoice.audio import Capture, Playback
from edgevoice.config import Settings
from edgevoice.frontend import EchoCancel, FarEnd
from edgevoice.frontend.aec import attach
from edgevoice.gate import make_gate
from edgevoice.gate.scan import scan
from edgevoice.pcm import RATE, samples, to_bytes
from tests import audiogen as ag
from tests.alsa import AsoundRc, alsa_home
from tests.echoroom import T0, Room, erle_db, place


@pytest.fixture
def asound(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[AsoundRc]:
    yield from alsa_home(tmp_path, monkeypatch)


def tone(n: int, value: int = 1000) -> bytes:
    return np.full(n, value, dtype="<i2").tobytes()


# -- the far end's timeline -------------------------------------------------------------------------------


def test_chunks_that_continue_a_stretch_are_placed_end_to_end_whatever_their_stamps() -> None:
    far = FarEnd()
    far.played(tone(480, 1), RATE, T0)
    far.played(tone(480, 2), RATE, T0 + 0.030 + 0.007)  # a stamp 7 ms late: still the same stretch
    got = far.take(960, T0 + 0.060)
    assert list(got[:480]) == [1] * 480 and list(got[480:]) == [2] * 480


def test_a_new_stretch_starts_at_its_stamp_and_silence_reads_as_zeros() -> None:
    far = FarEnd()
    far.played(tone(160, 5), RATE, T0 + 0.5)  # more than CONTINUE_S after nothing: placed at its stamp
    assert not far.take(8000, T0 + 0.5).any()  # the half second before it
    assert list(far.take(160, T0 + 0.51)) == [5] * 160
    assert far.silent_for(T0 + 0.51) == 0.0
    assert not far.take(160, T0 + 0.52).any() and far.silent_for(T0 + 0.52) == pytest.approx(0.01)


def test_the_reader_is_sample_locked_through_jittered_stamps() -> None:
    far = FarEnd()
    x = np.arange(RATE, dtype="<i2")
    far.played(x.tobytes(), RATE, T0)
    rng = np.random.default_rng(3)
    got = [far.take(480, T0 + (k + 1) * 0.030 + rng.uniform(0, 0.015)) for k in range(30)]
    a = int(got[0][0])  # anchored by the first stamp, late by its jitter (the reference leads: harmless)
    assert 0 <= a < 0.015 * RATE
    assert np.array_equal(np.concatenate(got), x[a : a + 30 * 480]) and far.reanchors == 0  # no seam after


def test_the_reader_follows_a_drifting_clock() -> None:
    """A mic clock 2% fast (a big drift, to see it in seconds): the reader moves when its offset passes
    DRIFT_S, and stays within it."""
    far = FarEnd()
    far.played(np.zeros(10 * RATE, dtype="<i2").tobytes(), RATE, T0)
    for k in range(300):  # 9 s of mic frames that each take 29.4 ms of the speaker's clock
        far.take(480, T0 + (k + 1) * 0.030 / 1.02)
    assert far.reanchors >= 3


def test_the_reader_steps_by_its_ratio_reading_between_samples() -> None:
    """A follower at a ratio of 1 - 100 ppm (the mic's clock fast): frame after frame it falls behind one at 1
    (which reads as played) by 100 ppm, and what it reads is the played sine at those fractional places, not
    the nearest sample."""
    far = FarEnd()
    hz = 1000.0
    far_x = 0.5 * np.sin(2 * np.pi * hz * np.arange(3 * RATE) / RATE)
    far.played(to_bytes(far_x), RATE, T0)
    far.follower()  # one at 1: as played
    follower = far.follower()
    follower.ratio = 1 - 100e-6
    both = [far.take_followed(480, T0 + (k + 1) * 0.030) for k in range(60)]
    assert np.array_equal(np.concatenate([a for a, _ in both]), samples(to_bytes(far_x))[: 60 * 480])
    got = np.concatenate([b for _, b in both]) / 32768.0
    at = np.arange(len(got)) * follower.ratio  # where each sample was read: the first stamp anchors it at T0
    want = 0.5 * np.sin(2 * np.pi * hz * at / RATE)
    # Measured 0.0047 (a frame is read at its middle's fraction); reading the nearest sample errs by up to 0.1.
    assert np.max(np.abs(got - want)) < 0.01


def test_a_reader_that_skips_frames_keeps_its_place() -> None:
    """Frames the canceller needs no reference for (`skip`) still move the reader, stamps or no: after a pause it
    reads on where it would have, where a fresh anchor would move the reference by the stamps' jitter."""
    x = np.arange(2 * RATE, dtype="<i2")
    rng = np.random.default_rng(7)
    stamps = [T0 + (k + 1) * 0.030 + rng.uniform(0, 0.015) for k in range(60)]
    steady, skipping = FarEnd(), FarEnd()
    for far in (steady, skipping):
        far.played(x.tobytes(), RATE, T0)
    for k, at in enumerate(stamps):
        a = steady.take(480, at)
        if 10 <= k < 50:
            skipping.skip(480, at)  # 1.2 s with nothing to cancel
        else:
            assert np.array_equal(a, skipping.take(480, at))
    assert skipping.anchors == 1


def test_a_barge_in_cuts_what_never_sounded() -> None:
    far = FarEnd()
    far.played(tone(1600, 7), RATE, T0)  # 100 ms queued
    far.cut(T0 + 0.050)
    got = far.take(1600, T0 + 0.100)
    assert list(got[:800]) == [7] * 800 and not got[800:].any()


def test_audio_played_at_48k_is_taken_at_16k() -> None:
    far = FarEnd()
    t = np.arange(48000) / 48000
    far.played(to_bytes(0.3 * np.sin(2 * np.pi * 440 * t)), 48000, T0)
    got = far.take(RATE, T0 + 1.0)
    spec = np.abs(np.fft.rfft(got * np.hanning(len(got))))
    assert np.argmax(spec) == pytest.approx(440, abs=2)  # 1 Hz bins over one second


# -- AEC3 in a room, on material it was not tuned on -------------------------------------------------------

FAR_VOICES = ("en-us+m3", "en-gb-scotland+f2")


def far_speech(voice: str, level: float = 0.5) -> np.ndarray:
    x = np.concatenate([ag.speak(s, voice) for s in ag.BABBLE_SENTENCES[3:6]])
    return x / np.max(np.abs(x)) * level


@pytest.mark.parametrize(
    "room",
    [
        Room(),
        Room(delay_s=0.09, codec_s=0.04, jitter_s=0.015, seed=4),
        Room(period_ms=10, drift_ppm=150, echo_gain=0.8, seed=5),
        Room(period_ms=20, seed=6),
    ],
    ids=["near", "far_and_late", "10ms_drifting_loud", "20ms"],
)
def test_the_echo_is_cancelled_by_25_db(room: Room) -> None:
    speech = far_speech(FAR_VOICES[room.seed % 2])
    length = len(speech) + RATE
    far = place(length, [(0.5, speech)])
    near = ag.pink_noise(length, seed=room.seed) * 3e-4
    mic, out, cancel = room.run(far, near)
    mask = np.zeros(length, bool)
    mask[3 * RATE : round(0.5 * RATE) + len(speech)] = True  # after AEC3's first seconds of learning
    assert erle_db(mic, out, mask) >= 25
    assert cancel.processed > 0 and cancel.passed > 0  # quiet before the answer, and after it died away


def gate_opens(signal: np.ndarray) -> list[float]:
    """When the gate (30 ms periods) decided to open each turn, in seconds."""
    return [t.opened_s for t in scan(make_gate(Settings()), to_bytes(signal))]


@pytest.mark.parametrize(("voice", "sentence"), [("en-us", 0), ("en-029+m1", 3), ("en-us-nyc+f4", 4)])
def test_the_gate_hears_the_user_over_the_answer_and_never_the_answer(voice: str, sentence: int) -> None:
    """Without cancellation the answer opens a turn at once (the device would answer itself); with it, the
    first turn is the user's, said at the echo's own level (0 dB speech-to-echo) half-way through."""
    room = Room(seed=sentence)
    speech = far_speech(FAR_VOICES[sentence % 2])
    length = len(speech) + 2 * RATE
    far = place(length, [(0.5, speech)])
    user = ag.speak(ag.HELD_OUT_SENTENCES[sentence], voice)
    user = user / ag.speech_level(user) * ag.speech_level(room.echo(far))
    at = 5.0
    near = place(length, [(at, user)]) + ag.pink_noise(length, seed=sentence) * 3e-4
    mic, out, _ = room.run(far, near)
    assert gate_opens(mic)[0] < 1.0  # the echo alone opens a turn: what half-duplex guards against
    opens = gate_opens(out)
    onset, offset = (at + i / RATE for i in ag.active_span(user))
    # Heard while still speaking (how soon is a bench row: AEC3 suppresses the start of double talk).
    assert opens and onset <= opens[0] < offset, (onset, offset, opens)


@pytest.mark.parametrize(("ppm", "period_ms"), [(80, 10), (-60, 30), (0, 20)])
def test_the_clocks_drift_is_measured_from_the_filter_and_followed(ppm: float, period_ms: int) -> None:
    answer = far_speech("en-gb-scotland+f2")
    far = place(len(answer) + RATE, [(0.5, answer)])
    room = Room(period_ms=period_ms, drift_ppm=ppm, seed=22)
    _, _, cancel = room.run(far, ag.pink_noise(len(far), seed=22) * 3e-4)
    if ppm:
        assert (cancel.drift.ratio - 1 / (1 + ppm * 1e-6)) * 1e6 == pytest.approx(0, abs=8)  # measured within 4
        assert cancel.drift.locked
    else:
        assert cancel.drift.ratio == 1.0  # still clocks: the far end is read on whole samples, untouched


def test_a_second_answer_after_a_pause_is_cancelled_from_its_first_words() -> None:
    """The canceller passes frames untouched while the speaker is idle, but keeps the far end's reader in step:
    an answer that follows 3 s later is cancelled from its start with what the room taught the first one.
    (Before, the reader anchored afresh and read up to the whole pause behind: 0 dB for over a second.)"""
    first, second = far_speech("en-us+m3")[: 2 * RATE], far_speech("en-gb-scotland+f2")
    at = 0.5 + 2.0 + 3.0
    far = place(round((at + len(second) / RATE + 0.5) * RATE), [(0.5, first), (at, second)])
    room = Room(seed=21)
    mic, out, cancel = room.run(far, ag.pink_noise(len(far), seed=21) * 3e-4)
    assert cancel.passed > 0 and cancel.far.anchors == 1
    start = slice(round(at * RATE), round((at + 0.5) * RATE))
    assert erle_db(mic, out, np.r_[start]) >= 30  # measured 46


def test_an_idle_speaker_costs_nothing_and_changes_nothing() -> None:
    cancel = EchoCancel(FarEnd(), make=lambda: pytest.fail("AEC3 built with nothing to cancel"))
    frame = to_bytes(ag.pink_noise(480) * 0.1)
    assert all(cancel.process(frame, T0 + k * 0.03) == frame for k in range(100))
    assert cancel.passed == 100 and cancel.processed == 0


# -- the wiring: real alsa-lib file PCMs -------------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.played: list[tuple[bytes, int, float]] = []
        self.cuts: list[float] = []
        self.frames: list[tuple[bytes, float]] = []


def test_the_far_end_gets_exactly_what_was_written_to_alsa_with_stamps_a_period_apart(
    asound: AsoundRc, tmp_path: Path
) -> None:
    out = tmp_path / "out.raw"
    asound.playback("spk", out).write()
    data = to_bytes(ag.pink_noise(RATE // 2) * 0.2)
    rec = Recorder()

    async def body() -> None:
        pb = Playback("spk", pace=True)
        pb.on_played = lambda pcm, rate, at: rec.played.append((pcm, rate, at))
        pb.start()
        pb.play(data, RATE)
        await asyncio.wait_for(pb.wait_idle(), 5)
        pb.stop()

    asyncio.run(body())
    assert b"".join(p for p, _, _ in rec.played) == out.read_bytes() == data
    starts = [at for _, _, at in rec.played]
    durations = [len(p) / 2 / RATE for p, _, _ in rec.played]
    assert all(abs(b - (a + d)) < 1e-6 for a, b, d in zip(starts, starts[1:], durations, strict=False))


def test_a_barge_in_tells_the_far_end(asound: AsoundRc, tmp_path: Path) -> None:
    asound.playback("spk", tmp_path / "out.raw").write()
    rec = Recorder()

    async def body() -> None:
        pb = Playback("spk", pace=True)
        pb.on_played = lambda pcm, rate, at: rec.played.append((pcm, rate, at))
        pb.on_cut = rec.cuts.append
        pb.start()
        pb.play(to_bytes(ag.pink_noise(2 * RATE) * 0.2), RATE)
        while not rec.played:
            await asyncio.sleep(0.01)
        pb.flush()
        await asyncio.wait_for(pb.wait_idle(), 5)
        await asyncio.sleep(0.1)
        pb.stop()

    asyncio.run(body())
    assert len(rec.cuts) == 1 and rec.cuts[0] > rec.played[0][2]


def test_capture_hands_each_frame_to_the_filter_with_its_stamp(asound: AsoundRc, tmp_path: Path) -> None:
    src = tmp_path / "in.raw"
    src.write_bytes(to_bytes(ag.pink_noise(RATE) * 0.1))
    asound.capture("mic", src).write()
    rec = Recorder()

    def filt(frame: bytes, at: float) -> bytes:
        rec.frames.append((frame, at))
        return bytes(len(frame))  # what the gate gets is the filter's output

    async def body() -> list[bytes]:
        cap = Capture("mic", pace=1.0, max_frames=20)
        cap.process = filt
        await cap.start()
        got = [f async for f in cap]
        await cap.stop()
        return got

    got = asyncio.run(body())
    assert len(got) == 20 and not any(any(f) for f in got)
    assert [f for f, _ in rec.frames] == [src.read_bytes()[i * 960 : (i + 1) * 960] for i in range(20)]
    stamps = [at for _, at in rec.frames]
    assert all(0.025 < b - a < 0.045 for a, b in itertools.pairwise(stamps))


def test_the_voice_loop_cancels_echo_when_asked_and_falls_back_to_half_duplex(
    asound: AsoundRc, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from edgevoice.config import parse
    from edgevoice.daemon.voice import VoiceLoop

    asound.capture("mic", "/dev/zero").playback("spk", tmp_path / "out.raw").write()
    base = "[audio]\ncapture_device = 'mic'\nplayback_device = 'spk'\n{extra}[model]\nprovider = 'local'\n"
    async def build(text: str) -> VoiceLoop:
        return VoiceLoop(parse(text))

    for on in (base.format(extra=""), base.format(extra="echo_cancellation = true\n")):  # on by default
        loop = asyncio.run(build(on))
        assert loop.echo is not None and loop.capture.process == loop.echo.process
        assert loop.playback.on_played == loop.echo.far.played and loop.mic._echo_tail_s == 0
    loop = asyncio.run(build(base.format(extra="echo_cancellation = false\n")))
    assert loop.echo is None and loop.capture.process is None and loop.mic._echo_tail_s == 0.3
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pywebrtc_audio" else real(name))
    with caplog.at_level(logging.WARNING):
        loop = asyncio.run(build(base.format(extra="")))
    assert loop.echo is None and loop.mic._echo_tail_s == 0.3
    assert "pywebrtc-audio is not installed" in caplog.text


def test_attach_sets_both_ends() -> None:
    class Ends:
        process = None
        on_played = None
        on_cut = None

    ends = Ends()
    cancel = attach(ends, ends, 20)
    assert cancel is not None and ends.process == cancel.process and ends.on_cut == cancel.far.cut
    assert cancel.linear.block == 320  # the linear filter works in the capture's periods
