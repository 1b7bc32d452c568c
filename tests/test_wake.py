"""gate.mode = "wake_word": armed until the wake word, then a turn from just after it that the cascade ends.

Two halves. The gate's own logic, driven with a fake detector that fires where a test says (states, the
turn's start, the empty turn after the timeout, push-to-talk, the length cap), on espeak-ng speech. Then the
real detector (pymicro-wakeword's okay_nabu) on espeak-ng material made here: "okay nabu, <command>" said
in one sentence (espeak-ng pauses about 150 ms at the comma), or with a pause, by several voices, clean and
in 10 dB pink noise; and minutes of other speech and noise that must open no turn. Config errors and the
`edgevoice gate` command in this mode close the file.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pytest

from edgevoice import config
from edgevoice.config import GateSettings
from edgevoice.daemon.mic import GatedMic
from edgevoice.daemon.state import StateMachine
from edgevoice.gate import Gate, GateEvent, GateState, SpeechJudge, TurnEnded, TurnFrame, TurnStarted, make_judge
from edgevoice.gate.wake import LOOKBACK_MS, MicroWakeDetector, WakeWordUnavailable, load_detector
from edgevoice.pcm import RATE, frame_samples, ms_samples
from tests import audiogen as ag
from tests import gatemat as gm

WAKE = GateSettings(mode="wake_word")
HANGOVER = ms_samples(WAKE.hangover_ms)
LOOKBACK = ms_samples(LOOKBACK_MS)


@dataclass
class FakeDetector:
    """Fires at the given frame numbers (counted from the gate's first frame)."""

    fire_at: set[int]
    lookback_samples: int = LOOKBACK
    frames: int = 0
    resets: int = 0
    fired: list[int] = field(default_factory=list)

    def reset(self) -> None:
        self.frames = 0
        self.resets += 1

    def __call__(self, frame: bytes) -> bool:
        i = self.frames
        self.frames += 1
        if i in self.fire_at:
            self.fired.append(i)
            return True
        return False


@pytest.fixture(scope="module")
def judge() -> SpeechJudge:
    j = make_judge(WAKE)
    assert j is not None
    return j


def level(x: np.ndarray) -> np.ndarray:
    return x * (ag.LEVEL / ag.speech_level(x))


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * RATE))


@dataclass(frozen=True)
class Clip:
    audio: bytes
    word_end: int  # samples: the wake word's last sound
    onset: int  # the command's first sound (0: none)
    offset: int  # the command's last sound


def spliced(
    voice: str = "en-us", command: str | None = "What time is it?", gap_s: float = 0.4, lead_s: float = 2.5
) -> Clip:
    """`lead_s` of silence (the gate learns the room), "okay nabu", `gap_s`, the command, 3 s of silence."""
    parts = [silence(lead_s), level(ag.speak("okay nabu", voice))]
    word_end = sum(map(len, parts))
    onset = offset = 0
    if command is not None:
        parts.append(silence(gap_s))
        onset = sum(map(len, parts))
        parts.append(level(ag.speak(command, voice)))
        offset = sum(map(len, parts))
    parts.append(silence(3.0))
    return Clip(ag.to_s16(np.concatenate(parts)), word_end, onset, offset)


def run(gate: Gate, frames: list[bytes]) -> list[tuple[int, GateEvent]]:
    return [(i, e) for i, f in enumerate(frames) for e in gate.process(f)]


def wake_gate(judge: SpeechJudge, fire_at: set[int], period_ms: int = 30, **changes: object) -> Gate:
    settings = replace(WAKE, **changes)  # type: ignore[arg-type]
    return Gate(settings, judge, period_ms, settings.foreground_db, FakeDetector(fire_at))


def forwarded(events: list[tuple[int, GateEvent]]) -> bytes:
    out = b""
    for _, e in events:
        if isinstance(e, TurnStarted):
            out += b"".join(e.preroll)
        elif isinstance(e, TurnFrame):
            out += e.frame
    return out


# -- the gate with a fake detector ------------------------------------------------------------------


def test_armed_speech_opens_nothing_until_the_detector_fires(judge: SpeechJudge) -> None:
    clip = spliced()
    frames = ag.frames(clip.audio)
    gate = wake_gate(judge, set())
    assert gate.state is GateState.ARMED
    assert run(gate, frames) == []
    assert gate.state is GateState.ARMED and not gate.in_turn
    vad = Gate(GateSettings(), judge)
    assert any(isinstance(e, TurnStarted) for _, e in run(vad, frames))  # the same speech, in vad mode


@pytest.mark.parametrize("period_ms", [10, 20, 30])
def test_the_wake_word_opens_a_turn_after_it_and_the_cascade_ends_it(judge: SpeechJudge, period_ms: int) -> None:
    clip = spliced(gap_s=0.4)
    fs = frame_samples(period_ms)
    frames = ag.frames(clip.audio, period_ms)
    fire = (clip.word_end + ms_samples(200)) // fs  # detectors fire 130-440 ms after the word
    gate = wake_gate(judge, {fire}, period_ms)
    events = run(gate, frames)
    i, started = events[0]
    assert i == fire and isinstance(started, TurnStarted)
    assert events[1] == (fire, TurnFrame(frames[fire]))
    # The pause after the word shows where it ended: the turn starts there, not a lookback earlier.
    assert clip.word_end - ms_samples(60) <= started.start_sample <= clip.word_end
    assert started.start_sample % fs == 0
    assert started.preroll == frames[started.start_sample // fs : fire]
    ends = [(i, e) for i, e in events if isinstance(e, TurnEnded)]
    assert len(ends) == 1 and sum(isinstance(e, TurnStarted) for _, e in events) == 1
    end = ends[0][1]
    assert end.reason == "silence"
    # The hangover, counted from where the cascade stops hearing speech (the clip's last sound, -40 dB, is a
    # little later).
    assert clip.offset + HANGOVER - ms_samples(100) <= end.end_sample <= clip.offset + HANGOVER + 2 * fs
    assert forwarded(events) == clip.audio[2 * started.start_sample : 2 * end.end_sample]
    assert gate.state is GateState.ARMED and not gate.in_turn


def test_a_command_said_in_one_breath_keeps_its_onset(judge: SpeechJudge) -> None:
    """No pause to see where the word ended: the whole lookback goes, the command's onset with it."""
    clip = spliced(command="Stop.", gap_s=0.03)
    fs = frame_samples(30)
    frames = ag.frames(clip.audio)
    fire = (clip.word_end + ms_samples(380)) // fs  # a slow detection: most of "stop" is said
    gate = wake_gate(judge, {fire})
    events = run(gate, frames)
    started = events[0][1]
    assert isinstance(started, TurnStarted)
    assert started.start_sample == (fire + 1) * fs - fs * -(-LOOKBACK // fs)
    assert started.start_sample <= clip.onset
    end = events[-1][1]
    assert isinstance(end, TurnEnded) and end.reason == "silence"  # what was left of "stop" counted
    assert end.end_sample >= clip.offset


@pytest.mark.parametrize("noise", [None, "pink"])
def test_the_wake_word_alone_ends_empty_after_the_timeout(judge: SpeechJudge, noise: str | None) -> None:
    clip = spliced(command=None)
    x = np.frombuffer(clip.audio, "<i2") / 32768.0
    x = np.concatenate([x, np.zeros(3 * RATE)])
    if noise:  # 10 dB under the talker: webrtcvad calls much of it speech, the cascade none
        x = x + ag.LEVEL * 10 ** (-10 / 20) * ag.pink_noise(len(x), 7)
    frames = ag.frames(ag.to_s16(x))
    fs = frame_samples(30)
    fire = (clip.word_end + ms_samples(150)) // fs
    gate = wake_gate(judge, {fire}, wake_timeout_s=2.0)
    events = run(gate, frames)
    assert isinstance(events[0][1], TurnStarted)
    assert all(isinstance(e, TurnFrame) for _, e in events[1:-1])
    end = events[-1][1]
    woke = (fire + 1) * fs
    assert end == TurnEnded(woke + -(-2 * RATE // fs) * fs, "empty")  # the first frame 2 s after the fire
    assert gate.state is GateState.ARMED


def test_the_timeout_counts_from_the_wake_word_and_speech_in_time_is_the_command(judge: SpeechJudge) -> None:
    clip = spliced(gap_s=1.5)  # a pause to think, within the 4 s default
    frames = ag.frames(clip.audio)
    fire = (clip.word_end + ms_samples(200)) // frame_samples(30)
    events = run(wake_gate(judge, {fire}), frames)
    assert [e.reason for _, e in events if isinstance(e, TurnEnded)] == ["silence"]
    # The same pause with a 1 s timeout: the turn was over before the command, which opens nothing.
    events = run(wake_gate(judge, {fire}, wake_timeout_s=1.0), frames)
    assert [e.reason for _, e in events if isinstance(e, TurnEnded)] == ["empty"]
    assert sum(isinstance(e, TurnStarted) for _, e in events) == 1


@pytest.mark.parametrize("noise", [False, True])
def test_a_wake_word_before_the_room_is_known_still_takes_the_command(judge: SpeechJudge, noise: bool) -> None:
    """A recording that starts with the wake word: the foreground stage has no background yet (frames wait
    WAKE_PROBATION_MS before they teach it) and abstains; webrtcvad and Silero hear the command."""
    clip = spliced(lead_s=0.3)
    x = np.frombuffer(clip.audio, "<i2") / 32768.0
    if noise:
        x = x + ag.LEVEL * 10 ** (-10 / 20) * ag.pink_noise(len(x), 3)
    fs = frame_samples(30)
    fire = (clip.word_end + ms_samples(200)) // fs
    events = run(wake_gate(judge, {fire}), ag.frames(ag.to_s16(x)))
    starts = [e for _, e in events if isinstance(e, TurnStarted)]
    ends = [e for _, e in events if isinstance(e, TurnEnded)]
    assert len(starts) == 1 and starts[0].start_sample <= clip.onset
    assert [e.reason for e in ends] == ["silence"] and ends[0].end_sample >= clip.offset


def test_detections_inside_a_turn_are_ignored_and_the_next_one_opens_a_new_turn(judge: SpeechJudge) -> None:
    clip = spliced()
    fs = frame_samples(30)
    frames = ag.frames(clip.audio)
    fire = (clip.word_end + ms_samples(200)) // fs
    during = (clip.onset + clip.offset) // 2 // fs
    after = len(frames) - 40  # in the tail's silence, after the turn ended
    gate = wake_gate(judge, {fire, during, after})
    events = run(gate, frames)
    starts = [(i, e) for i, e in events if isinstance(e, TurnStarted)]
    assert [i for i, _ in starts] == [fire, after]
    ends = [e for _, e in events if isinstance(e, TurnEnded)]
    # The pre-roll of the second never reaches into the first: no audio goes twice.
    assert starts[1][1].start_sample >= ends[0].end_sample
    assert gate.state is GateState.WOKEN and gate.in_turn


def test_the_length_cap_rearms_at_once(judge: SpeechJudge) -> None:
    talk = np.concatenate([level(ag.speak(s, "en-us")) for s in ag.BABBLE_SENTENCES[:3]])
    x = np.concatenate([silence(2.5), level(ag.speak("okay nabu", "en-us")), silence(0.2), talk, silence(1.0)])
    frames = ag.frames(ag.to_s16(x))
    fs = frame_samples(30)
    fire = (int(2.5 * RATE) + len(ag.speak("okay nabu", "en-us")) + ms_samples(150)) // fs
    again = fire + 70  # 2.1 s later, the cut turn's talker still talking
    gate = wake_gate(judge, {fire, again}, max_utterance_s=1.5)
    events = run(gate, frames)
    ends = [(i, e) for i, e in events if isinstance(e, TurnEnded)]
    assert ends[0][1].reason == "max_length"
    start = events[0][1]
    assert isinstance(start, TurnStarted) and ends[0][1].end_sample - start.start_sample >= 1.5 * RATE
    # No cooldown (that waits for a pause in vad mode): the next wake word opens the next turn.
    assert [i for i, e in events if isinstance(e, TurnStarted)] == [fire, again]
    # Woken, nothing said, and the cap shorter than the timeout: the cap ends it, and it is empty.
    clip = spliced(command=None)
    fire = (clip.word_end + ms_samples(150)) // fs
    events = run(wake_gate(judge, {fire}, max_utterance_s=1.0), ag.frames(clip.audio))
    end = events[-1][1]
    assert isinstance(end, TurnEnded) and end.reason == "empty"
    assert end.end_sample - events[0][1].start_sample <= RATE + fs  # type: ignore[union-attr]


def test_push_to_talk_works_beside_the_wake_word(judge: SpeechJudge) -> None:
    clip = spliced()
    fs = frame_samples(30)
    frames = ag.frames(clip.audio)
    fire = (clip.word_end + ms_samples(200)) // fs
    on = clip.onset // fs
    off = clip.offset // fs
    # Armed: a press opens a held turn at once; release ends it (nothing said: empty) and re-arms.
    gate = wake_gate(judge, {fire})
    assert gate.press() == [TurnStarted([], 0, summoned=True)] and gate.state is GateState.HELD
    assert [gate.process(f) for f in frames[:10]] == [[TurnFrame(f)] for f in frames[:10]]
    assert gate.release() == [TurnEnded(10 * fs, "empty")] and gate.state is GateState.ARMED
    # Held over the command, then released: "released"; the detector firing while held opens nothing more.
    gate = wake_gate(judge, {fire})
    events = run(gate, frames[: on - 5])
    assert gate.press() == []  # already woken: the press holds the open turn
    assert gate.state is GateState.HELD
    events += run(gate, frames[on - 5 : off + 40])
    assert sum(isinstance(e, TurnStarted) for _, e in events) == 1
    assert not any(isinstance(e, TurnEnded) for _, e in events)  # the hangover does not end a held turn
    assert gate.release() == [TurnEnded((off + 40) * fs, "released")]
    assert gate.state is GateState.ARMED
    # Woken, pressed, nothing said, released: empty, like a press alone.
    quiet = ag.frames(spliced(command=None).audio)
    gate = wake_gate(judge, {fire})
    run(gate, quiet[: fire + 3])
    assert gate.press() == []
    run(gate, quiet[fire + 3 : fire + 60])
    assert gate.release() == [TurnEnded((fire + 60) * fs, "empty")]
    # Pressed mid-command after the voice gate opened: held; release says "released".
    gate = wake_gate(judge, {fire})
    run(gate, frames[: on + 10])
    assert gate.state in (GateState.SPEAKING, GateState.HANGOVER)
    assert gate.press() == []
    assert gate.release() == [TurnEnded((on + 10) * fs, "released")]
    # And a press while armed, later, still opens a turn: the button never depends on the wake word.
    assert gate.press() == [TurnStarted([], (on + 10) * fs, summoned=True)]


def test_the_gate_resets_the_detector_and_needs_one_in_wake_mode(judge: SpeechJudge) -> None:
    det = FakeDetector(set())
    Gate(WAKE, judge, 30, WAKE.foreground_db, det)
    assert det.resets == 1
    with pytest.raises(ValueError, match="detector"):
        Gate(WAKE, judge)
    # Other modes never feed one.
    gate = Gate(GateSettings(), judge, 30, 2.0, det)
    gate.process(bytes(960))
    assert det.frames == 0


def test_the_mic_drops_a_wake_word_with_nothing_after_it(judge: SpeechJudge) -> None:
    class Quiet:
        is_playing = False

        def flush(self) -> int:
            return 0

    class NoSource:
        async def read(self) -> bytes:
            return b""

    clip = spliced(command=None)
    fire = (clip.word_end + ms_samples(150)) // frame_samples(30)
    mic = GatedMic(NoSource(), wake_gate(judge, {fire}), Quiet(), StateMachine(), echo_tail_s=0.0)
    for f in ag.frames(clip.audio + bytes(2 * 5 * RATE)):
        mic.handle(f)
    assert (mic.turns_started, mic.turns_dropped, mic.turns_ended, mic.pending) == (1, 1, 0, 0)


def test_other_modes_never_import_the_wake_word_runtime() -> None:
    code = """
import sys
from edgevoice import config
from edgevoice.gate import make_gate
for mode in ("vad", "push_to_talk"):
    make_gate(config.replace(config.Settings(), gate={"mode": mode}))
    assert "pymicro_wakeword" not in sys.modules and "edgevoice.gate.wake" not in sys.modules, mode
gate = make_gate(config.replace(config.Settings(), gate={"mode": "wake_word", "wake_word": "alexa"}))
assert "pymicro_wakeword" in sys.modules and gate.state.value == "armed"
print("ok")
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.stdout.strip() == "ok", r.stderr


# -- the real detector on espeak-ng material --------------------------------------------------------

# Voices okay_nabu hears; it misses espeak-ng's female variants (+f1, +f2, +f4, +f5): see bench/rows_wake.py.
VOICES = ("en-us", "en-gb+f3", "en-us+m3", "en-029+m1")
COMMANDS = ("what time is it?", "stop.", "turn on the kitchen lights.", "add milk to my list.")


@pytest.fixture(scope="module")
def okay_nabu() -> MicroWakeDetector:
    return load_detector("okay_nabu")


def one_breath(voice: str, command: str, snr: float | None, seed: int) -> Clip:
    """ "okay nabu, <command>" as one espeak-ng sentence. Its first clause is sample for sample "okay nabu,"
    said alone, which gives where the word ends; the command's onset is the first sound after that."""
    word = ag.speak("okay nabu,", voice)
    scene = ag.sequence([ag.Say(f"okay nabu, {command}", voice)], "pink" if snr else None, snr or 0, 2.5, 2.0, seed)
    on, off = (round(t * RATE) for t in scene.spans[0])
    full = ag.speak(f"okay nabu, {command}", voice)
    assert np.array_equal(full[: len(word)], word)
    word_end = on + len(word)
    onset = word_end + ag.active_span(full[len(word) :])[0]
    return Clip(scene.s16(), word_end, onset, off)


@pytest.mark.parametrize("period_ms", [10, 30])
def test_the_detector_fires_once_per_saying(okay_nabu: MicroWakeDetector, period_ms: int) -> None:
    """pymicro-wakeword reports every run of its model over the cutoff (a dozen per saying) and 0.0 between
    runs: the wrapper must fire on the crossing only."""
    clip = spliced(command=None, lead_s=0.5)
    okay_nabu.reset()
    fired = [i for i, f in enumerate(ag.frames(clip.audio * 2, period_ms)) if okay_nabu(f)]
    assert len(fired) == 2, fired
    fs = frame_samples(period_ms)
    for i, word_end in zip(fired, (clip.word_end, len(clip.audio) // 2 + clip.word_end), strict=True):
        assert word_end + ms_samples(100) <= (i + 1) * fs <= word_end + LOOKBACK


@pytest.mark.parametrize("snr", [None, 10], ids=["clean", "pink10"])
@pytest.mark.parametrize(("voice", "command"), list(zip(VOICES, COMMANDS, strict=True)))
def test_wake_word_then_command_is_one_turn_holding_the_command(
    judge: SpeechJudge, okay_nabu: MicroWakeDetector, voice: str, command: str, snr: float | None
) -> None:
    clip = one_breath(voice, command, snr, seed=VOICES.index(voice) + 11)
    gate = Gate(WAKE, judge, 30, WAKE.foreground_db, okay_nabu)
    events = run(gate, ag.frames(clip.audio))
    starts = [e for _, e in events if isinstance(e, TurnStarted)]
    ends = [e for _, e in events if isinstance(e, TurnEnded)]
    assert len(starts) == 1 and len(ends) == 1, (starts, ends)
    start, end = starts[0].start_sample, ends[0]
    assert end.reason == "silence"
    assert start <= clip.onset  # the command is whole
    # At most the lookback of the word is sent; in the clean the pause shows where it ended.
    assert start >= clip.word_end - (LOOKBACK if snr else ms_samples(60))
    assert clip.offset <= end.end_sample <= clip.offset + HANGOVER + ms_samples(120)


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("voice", ["en-gb+f3", "en-029+m1"])
def test_a_command_without_any_pause_keeps_its_onset(
    judge: SpeechJudge, okay_nabu: MicroWakeDetector, voice: str, command: str
) -> None:
    """The word and the command spliced with no pause at all: the detector fires 170-300 ms into the
    command, and the lookback must reach back over that."""
    clip = spliced(voice, command.capitalize(), gap_s=0.0)
    events = run(Gate(WAKE, judge, 30, WAKE.foreground_db, okay_nabu), ag.frames(clip.audio))
    (start,) = [e for _, e in events if isinstance(e, TurnStarted)]
    (end,) = [e for _, e in events if isinstance(e, TurnEnded)]
    assert clip.word_end - LOOKBACK <= start.start_sample <= clip.onset
    assert end.reason == "silence" and end.end_sample >= clip.offset


@pytest.mark.parametrize("voice", ["en-us", "en-029+m1"])
def test_a_pause_after_the_wake_word_is_waited_for(
    judge: SpeechJudge, okay_nabu: MicroWakeDetector, voice: str
) -> None:
    clip = spliced(voice, "Turn the volume down a little.", gap_s=1.2)
    events = run(Gate(WAKE, judge, 30, WAKE.foreground_db, okay_nabu), ag.frames(clip.audio))
    (start,) = [e for _, e in events if isinstance(e, TurnStarted)]
    (end,) = [e for _, e in events if isinstance(e, TurnEnded)]
    assert clip.word_end - ms_samples(60) <= start.start_sample <= clip.word_end
    assert end.reason == "silence" and end.end_sample >= clip.offset


def test_alexa_too(judge: SpeechJudge) -> None:
    settings = replace(WAKE, wake_word="alexa")
    word = level(ag.speak("alexa", "en-gb+f3"))
    x = np.concatenate([silence(2.5), word, silence(0.3), level(ag.speak("Stop.", "en-gb+f3")), silence(2.0)])
    events = run(Gate(settings, judge, 30, 2.0, load_detector("alexa")), ag.frames(ag.to_s16(x)))
    assert [e.reason for _, e in events if isinstance(e, TurnEnded)] == ["silence"]
    start = events[0][1]
    assert isinstance(start, TurnStarted) and start.start_sample <= int(2.5 * RATE) + len(word) + ms_samples(300)


def other_speech() -> np.ndarray:
    """Every sentence of the suite's sets (none holds the wake word), two voices each, 0.3-1 s apart."""
    rng = np.random.default_rng(5)
    sentences = ag.TUNING_SENTENCES + ag.HELD_OUT_SENTENCES + ag.BABBLE_SENTENCES + gm.TUNE.sentences
    sentences += gm.HELD_OUT.sentences
    voices = ag.VOICES + ag.BABBLE_VOICES
    parts = []
    for i, s in enumerate(sentences):
        for v in (voices[i % len(voices)], voices[(i + 5) % len(voices)]):
            parts += [level(ag.speak(s, v)), silence(float(rng.uniform(0.3, 1.0)))]
    return np.concatenate(parts)


def test_no_false_accepts_in_minutes_of_other_speech_and_noise(
    judge: SpeechJudge, okay_nabu: MicroWakeDetector
) -> None:
    talk = other_speech()
    n = len(talk)
    noisy = talk + ag.LEVEL * 10 ** (-10 / 20) * ag.pink_noise(n, 21)
    babble = ag.LEVEL * ag.babble(30 * RATE, seed=4)  # four other talkers at the talker's level
    x = np.concatenate([talk, noisy, babble])
    assert len(x) > 5 * 60 * RATE
    events = run(Gate(WAKE, judge, 30, WAKE.foreground_db, okay_nabu), ag.frames(ag.to_s16(x)))
    assert events == []
    # The same material with the wake word in it opens turns: the counting above can fail.
    clip = spliced("en-us")
    data = clip.audio + ag.to_s16(talk[: 20 * RATE]) + clip.audio
    events = run(Gate(WAKE, judge, 30, WAKE.foreground_db, okay_nabu), ag.frames(data))
    assert sum(isinstance(e, TurnStarted) for _, e in events) == 2


# -- settings and the command line --------------------------------------------------------------------


def test_wake_settings_are_read_and_bad_ones_name_the_key() -> None:
    g = config.parse("[gate]\nmode = 'wake_word'\nwake_word = 'hey_mycroft'\nwake_timeout_s = 6\n").gate
    assert (g.mode, g.wake_word, g.wake_timeout_s) == ("wake_word", "hey_mycroft", 6.0)
    d = config.parse("").gate
    assert (d.mode, d.wake_word, d.wake_timeout_s) == ("vad", "okay_nabu", 4.0)
    for text, key, why in [
        ("[gate]\nwake_word = 'hey_siri'\n", "gate.wake_word", "okay_nabu, alexa, hey_jarvis, hey_mycroft"),
        ("[gate]\nwake_word = 3\n", "gate.wake_word", "string"),
        ("[gate]\nwake_timeout_s = 0.2\n", "gate.wake_timeout_s", "between 0.5 and 30"),
        ("[gate]\nwake_timeout_s = 'soon'\n", "gate.wake_timeout_s", "number"),
        ("[gate]\nmode = 'wakeword'\n", "gate.mode", "'wake_word'"),
    ]:
        with pytest.raises(config.ConfigError) as e:
            config.parse(text)
        msg = str(e.value)
        assert key in msg and why in msg and "\n" not in msg, msg


def test_the_wake_words_are_the_models_the_package_ships() -> None:
    from pymicro_wakeword import Model

    assert set(config.WAKE_WORDS) == {m.value for m in Model}
    with pytest.raises(WakeWordUnavailable, match=r"^config: gate\.wake_word must be one of okay_nabu, alexa"):
        load_detector("hey_siri")
    assert isinstance(WakeWordUnavailable("x"), config.ConfigError)  # exit 2, one line


def test_a_missing_runtime_is_one_line_naming_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pymicro_wakeword", None)  # as when its wheel could not be installed
    with pytest.raises(WakeWordUnavailable) as e:
        load_detector("okay_nabu")
    msg = str(e.value)
    assert msg.startswith("config: gate.wake_word = 'okay_nabu' cannot run here (") and "\n" not in msg


def test_config_check_and_the_gate_command_in_wake_mode(tmp_path: Path) -> None:
    edgevoice = str(Path(sys.executable).parent / "edgevoice")
    bad = tmp_path / "bad.toml"
    bad.write_text("[gate]\nmode = 'wake_word'\nwake_word = 'computer'\n")
    r = subprocess.run([edgevoice, "config", "check", str(bad)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "gate.wake_word" in r.stderr
    cfg = tmp_path / "wake.toml"
    cfg.write_text("[gate]\nmode = 'wake_word'\n")
    clip = spliced("en-us+m3", "Add milk to my list.", gap_s=0.3)
    talk = np.frombuffer(clip.audio, "<i2") / 32768.0
    hello = np.concatenate([silence(1.0), level(ag.speak("Hello there.", "en-us"))])
    # Then the wake word alone: an empty turn, which no one answers and `--json` does not list.
    alone = np.frombuffer(spliced("en-us+m3", None, lead_s=0.5).audio, "<i2") / 32768.0
    audio = np.concatenate([hello, talk, alone, silence(2.0)])
    wav = ag.write_wav(tmp_path / "room.wav", audio, 44100, 2)
    lead = len(hello)
    r = subprocess.run(
        [edgevoice, "gate", str(wav), "--json", "--config", str(cfg)], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0, r.stderr
    turns = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(turns) == 1, turns  # "Hello there." opens nothing: no wake word before it
    assert turns[0]["start_s"] <= (lead + clip.onset) / RATE <= (lead + clip.offset) / RATE <= turns[0]["end_s"]
    assert turns[0]["start_s"] >= (lead + clip.word_end) / RATE - LOOKBACK_MS / 1000
    text = subprocess.run([edgevoice, "gate", str(wav), "--config", str(cfg)], capture_output=True, text=True)
    assert text.returncode == 0 and [line.endswith("empty)") for line in text.stdout.splitlines()] == [False, True]
