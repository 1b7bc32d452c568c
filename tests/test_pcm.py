"""edgevoice.pcm: the 16 kHz frame contract, int16 <-> float conversion, and deterministic resampling."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgevoice import pcm

PACKAGE = Path(pcm.__file__).parent
ALL_INT16 = np.arange(-32768, 32768, dtype=np.int16)


def test_frame_sizes_of_the_periods_webrtcvad_takes() -> None:
    assert pcm.RATE == 16000
    assert [pcm.frame_samples(ms) for ms in pcm.PERIODS_MS] == [160, 320, 480]
    assert [pcm.frame_bytes(ms) for ms in pcm.PERIODS_MS] == [320, 640, 960]
    for bad in (0, 15, 40, -10):
        with pytest.raises(ValueError, match="10, 20 or 30"):
            pcm.frame_samples(bad)


def test_durations_at_any_rate() -> None:
    assert pcm.ms_samples(600) == 9600
    assert pcm.ms_bytes(600) == 19200
    assert pcm.ms_samples(100, 22050) == 2205
    assert pcm.ms_bytes(30, 44100) == 2 * 1323  # whole samples, rounded down, as ALSA periods are


def test_int16_float_round_trip_is_exact() -> None:
    data = ALL_INT16.tobytes()
    for dtype in (np.float32, np.float64):
        x = pcm.to_float(data, dtype)
        assert x.dtype == dtype
        assert float(x.min()) == -1.0 and float(x.max()) == 32767 / 32768
        assert pcm.to_bytes(x) == data
    assert np.array_equal(pcm.to_int16(pcm.to_float(ALL_INT16)), ALL_INT16)


def test_float_conversion_is_the_one_the_gate_always_used() -> None:
    # The cascade multiplied by 1/32768 in float32; dividing by a power of two is the same bits.
    old = ALL_INT16.astype(np.float32) * np.float32(1 / 32768)
    assert np.array_equal(pcm.to_float(ALL_INT16).view(np.uint32), old.view(np.uint32))


def test_samples_is_a_read_only_view() -> None:
    data = np.array([1, -2, 3], dtype="<i2").tobytes()
    x = pcm.samples(data)
    assert x.tolist() == [1, -2, 3] and not x.flags.writeable
    assert pcm.samples(data, 2).tolist() == [1, -2]


def test_conversion_clips_and_rounds_half_to_even() -> None:
    assert pcm.to_int16(np.array([1.0, -1.0, 2.0, -2.0, 0.0])).tolist() == [32767, -32768, 32767, -32768, 0]
    assert pcm.quantize(np.array([0.5, 1.5, 2.5, -0.5, -1.5, 1e9, -1e9])).tolist() == [0, 2, 2, 0, -2, 32767, -32768]
    assert pcm.to_bytes(np.array([1.5], np.float32)) == b"\xff\x7f"


def _stream(r: pcm.StreamResampler, data: bytes, sizes: list[int]) -> bytes:
    out, pos, i = bytearray(), 0, 0
    while pos < len(data):
        out += r.process(data[pos : pos + sizes[i % len(sizes)]])
        pos += sizes[i % len(sizes)]
        i += 1
    return bytes(out + r.flush())


def _signal(seconds: float, rate: int, seed: int = 3) -> bytes:
    """A chirp plus noise: every frequency band the resampler's filter shapes."""
    t = np.arange(int(seconds * rate)) / rate
    x = 0.4 * np.sin(2 * np.pi * (100 + 2000 * t) * t) + np.random.default_rng(seed).normal(0, 0.05, len(t))
    return pcm.to_bytes(x)


@pytest.mark.parametrize(("in_rate", "out_rate"), [(48000, 16000), (22050, 16000), (16000, 24000), (44100, 16000)])
def test_streaming_equals_one_shot(in_rate: int, out_rate: int) -> None:
    data = _signal(0.7, in_rate)
    whole = np.frombuffer(pcm.resample(data, in_rate, out_rate), "<i2").astype(np.int32)
    # Odd byte counts too: a sample split across chunks must survive.
    got = _stream(pcm.StreamResampler(in_rate, out_rate), data, [641, 3, 4096, 17, 960])
    streamed = np.frombuffer(got, "<i2").astype(np.int32)
    assert len(streamed) == len(whole) == round(len(data) / 2 * out_rate / in_rate)
    assert int(np.abs(streamed - whole).max()) <= 1


def test_no_dither_same_input_same_bytes() -> None:
    # soxr's own int16 path dithers: silence came out as +-1 noise and the same audio, sent twice
    # through one stream, came out different the second time. Ours rounds float output itself.
    data = _signal(0.5, 22050)
    assert pcm.resample(data, 22050, 16000) == pcm.resample(data, 22050, 16000)
    r = pcm.StreamResampler(22050, 16000)
    first = r.process(data) + r.flush()
    second = r.process(data) + r.flush()
    assert first == second == pcm.resample(data, 22050, 16000)
    silence = bytes(2 * 22050)
    assert not any(pcm.resample(silence, 22050, 16000))
    assert not any(_stream(pcm.StreamResampler(16000, 48000), bytes(3200), [320]))


@pytest.mark.parametrize("frac", [0.0, 0.3, 0.5, 0.85])
def test_shift_reads_between_samples_flat_below_5_khz(frac: float) -> None:
    t = np.arange(pcm.RATE // 4)
    for hz in (200, 1000, 3000, 5000):
        x = np.sin(2 * np.pi * hz * t / pcm.RATE)
        got = pcm.shift(x, frac)
        want = np.sin(2 * np.pi * hz * (np.arange(len(got)) + pcm.SHIFT_TAPS // 2 - 1 + frac) / pcm.RATE)
        err = got[50:-50] - want[50:-50]
        assert 10 * np.log10(np.mean(err**2) / 0.5) < -60, hz  # measured -67 dB at 5 kHz, -90 at 200 Hz


def test_pcm_depends_on_numpy_and_soxr_only() -> None:
    tree = ast.parse((PACKAGE / "pcm.py").read_text())
    imported = {
        (node.module or "") if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert {m.split(".")[0] for m in imported} <= {"__future__", "typing", "numpy", "soxr"}


def test_importing_the_contract_does_not_load_soxr() -> None:
    # The gate uses the constants and conversions only: it must not pay for soxr's import.
    code = "import sys, edgevoice.pcm, edgevoice.gate; print('soxr' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "False"


# settings.py keeps its own defaults: it sits below pcm in the layers (it may use only errors).
_MAY_SAY_16000 = {"pcm.py", "settings.py"}


def test_one_place_for_the_rate_and_soxr() -> None:
    rate, soxr_import = re.compile(r"\b16_?000\b"), re.compile(r"^\s*(import soxr|from soxr\b)", re.M)
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        name = path.relative_to(PACKAGE).as_posix()
        text = path.read_text()
        if name != "pcm.py" and soxr_import.search(text):
            offenders.append(f"{name} imports soxr")
        if name not in _MAY_SAY_16000 and rate.search(text):
            offenders.append(f"{name} spells out 16000")
    assert not offenders, "use edgevoice.pcm: " + "; ".join(offenders)
