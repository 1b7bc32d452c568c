"""StreamResampler (edgevoice.pcm): streaming soxr over S16_LE bytes, against soxr itself."""

from __future__ import annotations

import numpy as np
import pytest
import soxr

from edgevoice.pcm import StreamResampler, resample


def sine(freq: float, seconds: float, rate: int, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return np.round(amp * 32767 * np.sin(2 * np.pi * freq * t)).astype("<i2")


def peak_hz(x: np.ndarray, rate: int) -> float:
    spec = np.abs(np.fft.rfft(x.astype(np.float64) * np.hanning(len(x))))
    return float(np.argmax(spec) * rate / len(x))


def stream(r: StreamResampler, data: bytes, sizes: list[int]) -> bytes:
    out, pos, i = bytearray(), 0, 0
    while pos < len(data):
        n = sizes[i % len(sizes)]
        out += r.process(data[pos : pos + n])
        pos += n
        i += 1
    return bytes(out + r.flush())


@pytest.mark.parametrize(
    ("in_rate", "out_rate"), [(48000, 16000), (24000, 16000), (16000, 48000), (44100, 16000)]
)
def test_streaming_matches_one_shot(in_rate: int, out_rate: int) -> None:
    x = sine(440, 1.0, in_rate)
    # Chunk sizes include odd byte counts: a sample split across chunks must survive.
    got = np.frombuffer(stream(StreamResampler(in_rate, out_rate), x.tobytes(), [961, 3, 2880, 17]), "<i2")
    ref = np.rint(soxr.resample(x.astype(np.float32) / 32768, in_rate, out_rate) * 32768)
    assert len(got) == len(ref)
    assert float(np.abs(got - ref).max()) <= 1
    assert peak_hz(got, out_rate) == pytest.approx(440, abs=2)


def test_one_shot_helper_keeps_length_and_pitch() -> None:
    x = sine(1000, 0.5, 48000)
    y = np.frombuffer(resample(x.tobytes(), 48000, 16000), "<i2")
    assert len(y) == 8000
    assert peak_hz(y, 16000) == pytest.approx(1000, abs=3)


def test_equal_rates_pass_bytes_through() -> None:
    data = np.random.default_rng(1).integers(-32768, 32767, 4801, dtype=np.int16).tobytes()
    r = StreamResampler(16000, 16000)
    assert r.passthrough
    assert stream(r, data, [7, 960, 1]) == data


def test_flush_readies_a_new_stream() -> None:
    a, b = sine(300, 0.3, 24000).tobytes(), sine(700, 0.3, 24000).tobytes()
    r = StreamResampler(24000, 16000)
    first = r.process(a) + r.flush()
    second = r.process(b) + r.flush()
    assert first == resample(a, 24000, 16000)
    fresh = StreamResampler(24000, 16000)
    assert second == fresh.process(b) + fresh.flush()
    assert len(first) == len(second) == 2 * 4800


def test_reset_forgets_buffered_input() -> None:
    r = StreamResampler(48000, 16000)
    r.process(sine(200, 0.2, 48000).tobytes())
    r.reset()
    y = r.process(b"\x00\x00" * 4800) + r.flush()
    assert not np.frombuffer(y, "<i2").any()  # nothing of the sine leaks into the next stream


def test_rejects_bad_rates() -> None:
    with pytest.raises(ValueError):
        StreamResampler(0, 16000)
