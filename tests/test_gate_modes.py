"""Push-to-talk, the max utterance cut, and the gate's edges (frame sizes, judge factory errors)."""

from __future__ import annotations

import dataclasses
import sys

import pytest

from edgevoice.config import GateSettings
from edgevoice.gate import (
    Gate,
    GateState,
    JudgeUnavailable,
    OnnxSileroJudge,
    TurnEnded,
    TurnFrame,
    TurnStarted,
    make_judge,
)
from edgevoice.gate.scan import scan
from tests import audiogen as ag

PTT = GateSettings(mode="push_to_talk", judge_backend="onnx")


@pytest.fixture(scope="module")
def speech_frames() -> list[bytes]:
    scene = ag.scene([(ag.HELD_OUT_SENTENCES[0], "en-us")], "pink", 10, lead_s=0.5, tail_s=0.5)
    return ag.frames(scene.s16())


def test_push_to_talk_passes_frames_exactly_while_held(speech_frames: list[bytes]) -> None:
    gate = Gate(PTT, None)
    fs = 480
    for f in speech_frames[:10]:  # speech or not, nothing passes before the press
        assert gate.process(f) == []
    assert gate.press() == [TurnStarted([], 10 * fs, summoned=True)]
    assert gate.in_turn and gate.state is GateState.HELD
    held = speech_frames[10:40]
    for f in held:
        assert gate.process(f) == [TurnFrame(f)]
    assert gate.release() == [TurnEnded(40 * fs, "released")]
    assert not gate.in_turn
    for f in speech_frames[40:50]:
        assert gate.process(f) == []
    # Press again: a new turn from where the stream is now.
    assert gate.press() == [TurnStarted([], 50 * fs, summoned=True)]
    assert gate.press() == []  # already held
    assert gate.process(speech_frames[50]) == [TurnFrame(speech_frames[50])]
    assert gate.release() == [TurnEnded(51 * fs, "empty")]  # 30 ms held: nothing was said in it
    assert gate.release() == []


def test_push_to_talk_passes_silence_too_and_a_turn_with_nothing_said_is_empty(speech_frames: list[bytes]) -> None:
    gate = Gate(PTT, None)
    gate.press()
    silence = bytes(960)
    assert [gate.process(silence) for _ in range(5)] == [[TurnFrame(silence)]] * 5
    assert gate.release() == [TurnEnded(5 * 480, "empty")]
    gate.press()
    for f in speech_frames:
        gate.process(f)
    assert gate.release()[0].reason == "released"  # type: ignore[union-attr]


def test_push_to_talk_is_cut_at_max_length_and_needs_a_new_press(speech_frames: list[bytes]) -> None:
    gate = Gate(dataclasses.replace(PTT, max_utterance_s=1.0), None)
    talk = speech_frames[15:75]  # speech throughout (a silent hold would end `empty`)
    gate.press()
    events = [e for f in talk for e in gate.process(f)]
    assert sum(isinstance(e, TurnFrame) for e in events) == 34  # 34 x 30 ms: the first to reach 1 s
    assert events[-1] == TurnEnded(34 * 480, "max_length")
    assert gate.state is GateState.COOLDOWN and not gate.in_turn
    assert gate.release() == []
    assert gate.press() == [TurnStarted([], 60 * 480, summoned=True)]
    assert gate.process(talk[0]) == [TurnFrame(talk[0])]


def test_the_button_beside_the_voice_gate(speech_frames: list[bytes]) -> None:
    """vad mode with a talk button: a press opens a turn on silence; a press during a voice-opened turn
    holds it through pauses (no hangover ends it) until the release; then the voice gate works as before."""
    gate = Gate(GateSettings(judge="none"), None)
    silence = bytes(960)
    for _ in range(10):
        assert gate.process(silence) == []
    assert gate.press() == [TurnStarted([], 10 * 480, summoned=True)]
    for _ in range(40):  # 1.2 s of silence: far past the 700 ms hangover, still held
        assert gate.process(silence) == [TurnFrame(silence)]
    assert gate.release() == [TurnEnded(50 * 480, "empty")]  # and nothing said in it
    assert gate.state is GateState.IDLE
    gate.press()
    held = [silence] * 40 + speech_frames
    assert [e for f in held for e in gate.process(f)] == [TurnFrame(f) for f in held]
    assert gate.release()[0].reason == "released"  # type: ignore[union-attr]
    # Speech opens a turn by voice, and alone a pause ends it.
    talk = speech_frames + [silence] * 40
    events = [e for f in talk for e in gate.process(f) if not isinstance(e, TurnFrame)]
    assert [type(e) for e in events] == [TurnStarted, TurnEnded] and events[1].reason == "silence"  # type: ignore[union-attr]
    # A press inside a voice-opened turn holds it: the pause does not end it, the release does.
    gate = Gate(GateSettings(judge="none"), None)
    i = next(i for i, f in enumerate(talk) if any(isinstance(e, TurnStarted) for e in gate.process(f)))
    assert gate.press() == [] and gate.state is GateState.HELD
    assert [e for f in talk[i + 1 :] for e in gate.process(f)] == [TurnFrame(f) for f in talk[i + 1 :]]
    assert gate.release() == [TurnEnded(gate.position, "released")]
    n = sum(bool(gate.process(f)) for f in talk)
    assert n > 0, "the voice gate opens turns again after the release"


def test_max_utterance_cuts_a_turn_and_the_gate_keeps_working() -> None:
    settings = GateSettings(judge_backend="onnx", max_utterance_s=1.5)
    long_one = (ag.TUNING_SENTENCES[1], "en-gb+f3")  # about 3 s
    short = (ag.HELD_OUT_SENTENCES[1], "en-us")  # "Stop."
    scene = ag.scene([long_one, short], "pink", 10, seed=2)
    turns = scan(Gate(settings, OnnxSileroJudge()), scene.s16())
    (on1, off1), (on2, off2) = scene.spans
    first = [t for t in turns if t.start_s < off1 and t.end_s > on1]
    assert first[0].reason == "max_length"
    assert off1 - on1 > 2.5
    assert 1.5 <= first[0].end_s - first[0].start_s < 1.53
    # The rest of the long utterance opens nothing more until a pause (cooldown) ...
    assert len(first) == 1
    # ... and the next utterance is gated as usual.
    second = [t for t in turns if t.start_s < off2 and t.end_s > on2]
    assert len(second) == 1 and second[0].reason == "silence"
    assert second[0].start_s <= on2 + 0.05 and off2 <= second[0].end_s <= off2 + 0.73


def test_frames_must_be_one_period() -> None:
    gate = Gate(GateSettings(judge="none"), None, period_ms=20)
    assert gate.process(bytes(640)) == []
    with pytest.raises(ValueError, match="640 bytes"):
        gate.process(bytes(960))
    with pytest.raises(ValueError, match="period_ms"):
        Gate(GateSettings(judge="none"), None, period_ms=25)


def test_make_judge_choices() -> None:
    assert make_judge(GateSettings(judge="none")) is None
    assert isinstance(make_judge(GateSettings(judge_backend="onnx")), OnnxSileroJudge)


def test_make_judge_error_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    # Hide both runtimes as if they were not installed (a None entry makes the import fail).
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    monkeypatch.setitem(sys.modules, "edgevoice.gate.silero_numpy", None)
    for backend in ("numpy", "onnx"):
        with pytest.raises(JudgeUnavailable) as err:
            make_judge(GateSettings(judge_backend=backend))  # type: ignore[arg-type]
        assert "gate.judge_backend" in str(err.value)
        assert "\n" not in str(err.value)
        assert isinstance(err.value, ValueError)


def test_onnx_judge_tells_speech_from_noise() -> None:
    import numpy as np

    judge = OnnxSileroJudge()
    speech = ag.speak(ag.HELD_OUT_SENTENCES[2], "en-us").astype(np.float32)
    noise = (0.05 * ag.pink_noise(len(speech), seed=9)).astype(np.float32)
    c = judge.chunk_samples

    def probs(x: np.ndarray) -> list[float]:
        judge.reset()
        return [judge(x[i : i + c]) for i in range(0, len(x) - c + 1, c)]

    assert np.median(probs(speech)) > 0.8
    assert max(probs(noise)) < 0.3
    with pytest.raises(ValueError, match="512"):
        judge(np.zeros(480, np.float32))
