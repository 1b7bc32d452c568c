"""The vad gate on held-out espeak-ng speech in pink noise and babble, and in noise or silence alone.

The real webrtcvad and the real Silero (onnxruntime) decide; nothing is mocked. The gate settings
are the defaults, except the judge backend (onnx until the numpy one lands everywhere).
0 dB figures are measured by the bench (`bench/run --only gate`), not asserted here.
"""

from __future__ import annotations

import dataclasses
import importlib.util

import numpy as np
import pytest

from edgevoice.config import GateSettings
from edgevoice.gate import Gate, OnnxSileroJudge, TurnFrame, TurnStarted
from edgevoice.gate.scan import Turn, scan
from tests import audiogen as ag

SETTINGS = GateSettings(judge_backend="onnx")
HANGOVER_S = SETTINGS.hangover_ms / 1000
FRAME_S = 0.030


class CountingJudge:
    """The real judge, with its calls counted."""

    def __init__(self, inner: OnnxSileroJudge) -> None:
        self.inner = inner
        self.chunk_samples = inner.chunk_samples
        self.calls = 0

    def reset(self) -> None:
        self.inner.reset()

    def __call__(self, chunk: np.ndarray) -> float:
        self.calls += 1
        return self.inner(chunk)


@pytest.fixture(scope="session")
def onnx_judge() -> OnnxSileroJudge:
    return OnnxSileroJudge()


def held_out(seed: int) -> list[tuple[str, str]]:
    return [(t, ag.VOICES[(i + seed) % len(ag.VOICES)]) for i, t in enumerate(ag.HELD_OUT_SENTENCES)]


def overlapping(turns: list[Turn], on: float, off: float) -> list[Turn]:
    return [t for t in turns if t.start_s < off and t.end_s > on]


def problems(scene: ag.Scene, turns: list[Turn]) -> list[str]:
    """Every utterance: one turn, forwarded from <= 50 ms after onset, ending in [offset, offset+hangover+frame]."""
    out = []
    for i, (on, off) in enumerate(scene.spans):
        ov = overlapping(turns, on, off)
        if len(ov) != 1:
            out.append(f"utterance {i}: {len(ov)} turns {[(t.start_s - on, t.end_s - off) for t in ov]}")
            continue
        t = ov[0]
        if t.start_s > on + 0.050:
            out.append(f"utterance {i}: forwarded from {t.start_s - on:+.3f} s after its onset")
        if not off <= t.end_s <= off + HANGOVER_S + FRAME_S:
            out.append(f"utterance {i}: turn ended {t.end_s - off:+.3f} s after its offset")
    return out


@pytest.mark.parametrize("snr", [20, 10, 5])
@pytest.mark.parametrize("kind", ["pink", "babble"])
def test_held_out_utterances_in_noise(kind: str, snr: int, onnx_judge: OnnxSileroJudge) -> None:
    for seed in (0, 1):
        scene = ag.scene(held_out(seed), kind, snr, seed=seed + 10)
        turns = scan(Gate(SETTINGS, onnx_judge), scene.s16())
        assert problems(scene, turns) == [], f"{kind} {snr} dB, seed {seed}"
        stray = [t for t in turns if not any(overlapping([t], on, off) for on, off in scene.spans)]
        if kind == "pink":
            assert stray == [], f"turns in noise between utterances: {stray}"
        else:
            print(f"babble {snr} dB seed {seed}: {len(stray)} turns on babble alone")


@pytest.mark.parametrize("snr", [10, 5])
def test_pink_noise_alone_opens_no_turn(snr: int, onnx_judge: OnnxSileroJudge) -> None:
    noise = ag.noise_only("pink", 30.0, snr, seed=3)
    assert scan(Gate(SETTINGS, onnx_judge), noise.s16()) == []


def test_silence_opens_no_turn_and_never_wakes_the_judge(onnx_judge: OnnxSileroJudge) -> None:
    judge = CountingJudge(onnx_judge)
    gate = Gate(SETTINGS, judge)
    events = [e for f in ag.frames(bytes(2 * ag.RATE * 30)) for e in gate.process(f)]
    assert events == []
    assert judge.calls == 0


def test_quiet_noise_barely_wakes_the_judge(onnx_judge: OnnxSileroJudge) -> None:
    judge = CountingJudge(onnx_judge)
    quiet = ag.noise_only("pink", 30.0, snr_db=40, seed=4)  # a quiet room: -62 dBFS
    assert scan(Gate(SETTINGS, judge), quiet.s16()) == []
    chunks = 30 * ag.RATE // judge.chunk_samples
    assert judge.calls <= chunks // 100, f"judge ran on {judge.calls} of {chunks} chunks of a quiet room"


def test_speech_wakes_the_judge(onnx_judge: OnnxSileroJudge) -> None:
    judge = CountingJudge(onnx_judge)
    scene = ag.scene(held_out(2)[:3], "pink", 10, seed=5)
    turns = scan(Gate(SETTINGS, judge), scene.s16())
    speech_chunks = sum(off - on for on, off in scene.spans) * ag.RATE / judge.chunk_samples
    assert len(turns) == 3
    assert judge.calls >= 0.5 * speech_chunks
    # Catching up never judges the same audio twice: at most every chunk of the recording once,
    # plus one warm-up per wake-up.
    assert judge.calls <= len(scene.audio) / judge.chunk_samples


def test_forwarded_audio_is_the_input_span_and_turns_never_overlap(onnx_judge: OnnxSileroJudge) -> None:
    scene = ag.scene(held_out(3)[:4], "pink", 10, seed=6)
    data = scene.s16()
    gate = Gate(SETTINGS, onnx_judge)
    turns: list[tuple[int, bytes]] = []
    pending: list[bytes] = []
    start = -1
    for frame in ag.frames(data):
        for e in gate.process(frame):
            if isinstance(e, TurnStarted):
                start, pending = e.start_sample, list(e.preroll)
                assert len(e.preroll) == -(-SETTINGS.preroll_ms // 30)  # gaps are longer than the ring
            elif isinstance(e, TurnFrame):
                pending.append(e.frame)
            else:
                turns.append((start, b"".join(pending)))
                assert e.end_sample == start + len(turns[-1][1]) // 2
    assert len(turns) == 4
    last_end = 0
    for start, audio in turns:
        assert audio == data[2 * start : 2 * start + len(audio)]
        assert start >= last_end
        last_end = start + len(audio) // 2


def test_judge_none_trusts_webrtcvad_alone() -> None:
    settings = dataclasses.replace(SETTINGS, judge="none")
    scene = ag.scene(held_out(4)[:2], None, 0)
    turns = scan(Gate(settings, None), scene.s16())
    assert problems(scene, turns) == []


@pytest.mark.parametrize("period_ms", [10, 20])
def test_other_capture_periods(period_ms: int, onnx_judge: OnnxSileroJudge) -> None:
    # N-of-M counts frames, so shorter frames need a longer window for the same smoothing.
    per = 30 // period_ms
    settings = dataclasses.replace(SETTINGS, start_frames=3 * per, window_frames=5 * per)
    scene = ag.scene(held_out(5)[:3], "pink", 10, seed=7)
    turns = scan(Gate(settings, onnx_judge, period_ms), scene.s16())
    assert len(turns) == 3
    for t, (on, off) in zip(turns, scene.spans, strict=True):
        assert t.start_s <= on + 0.050
        assert off <= t.end_s <= off + HANGOVER_S + period_ms / 1000


def numpy_backend_missing() -> str | None:
    try:
        found = importlib.util.find_spec("edgevoice.gate.silero_numpy") is not None
    except ImportError as e:
        return f"edgevoice.gate.silero_numpy cannot be imported ({e})"
    return None if found else "edgevoice.gate.silero_numpy is not written yet"


@pytest.mark.parametrize("backend", ["onnx", "numpy"])
def test_both_backends_gate_the_same_scene(backend: str) -> None:
    if backend == "numpy" and (why := numpy_backend_missing()):
        pytest.skip(why)
    from edgevoice.gate.judge import make_judge

    settings = dataclasses.replace(SETTINGS, judge_backend=backend)
    judge = make_judge(settings)
    assert judge is not None
    if backend == "numpy":
        assert type(judge).__module__ == "edgevoice.gate.silero_numpy", "fell back to onnx"
    scene = ag.scene(held_out(1), "pink", 5, seed=8)
    assert problems(scene, scan(Gate(settings, judge), scene.s16())) == []
