"""The PCM contract every part of edgevoice speaks, in one place.

Audio between capture, the gate, the daemon and the models is 16 kHz mono S16_LE, in periods of
10, 20 or 30 ms (the frame sizes webrtcvad accepts). This module holds that contract: the rate,
frame sizes in samples and bytes, int16 <-> float conversion, and soxr resampling (streaming and
one-shot). It depends on numpy and soxr only, so any layer may use it (DESIGN.md: "small shared
ground").

Resampling always runs in float, never on int16: soxr's int16 output is TPDF-dithered by default
(digital silence comes out as +-1 LSB noise, and a stream's output depends on the dither generator's
state, so the same input resampled twice in one stream differs). Rounding float output ourselves is
deterministic, and a deterministic result is worth more to tests than dither is to speech.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
import numpy.typing as npt

END_OF_TURN = "edgevoice_end_of_turn"
"""Key set in the `source` of each turn's end-marker AudioDelta (the mic's 600 ms of digital silence; Strands
hands the object to `model.send` as it is): a model that can end the turn itself does so there
(models/openai_realtime.py); others ignore it."""

RATE: Final = 16000
"""Hz: the rate of every frame between capture and the models (the gate's and the local model's)."""
SAMPLE_BYTES: Final = 2
"""S16_LE: bytes per (mono) sample."""
PERIODS_MS: Final = (10, 20, 30)
"""Capture periods webrtcvad accepts; the gate takes nothing else."""
FULL_SCALE: Final = 32768.0
"""int16 full scale: float samples are int16 / FULL_SCALE, in [-1, 1)."""
INT16_MIN: Final = -32768
INT16_MAX: Final = 32767

Int16Array = npt.NDArray[np.int16]
FloatArray = npt.NDArray[np.floating[Any]]


# -- sizes -----------------------------------------------------------------------------------------


def ms_samples(ms: int, rate: int = RATE) -> int:
    """Whole samples in `ms` milliseconds at `rate` (rounded down, as ALSA periods are)."""
    return rate * ms // 1000


def ms_bytes(ms: int, rate: int = RATE) -> int:
    """Bytes of mono S16_LE in `ms` milliseconds at `rate`."""
    return ms_samples(ms, rate) * SAMPLE_BYTES


def check_period(period_ms: int) -> int:
    """`period_ms` if it is one of PERIODS_MS; ValueError otherwise."""
    if period_ms not in PERIODS_MS:
        raise ValueError(f"period_ms must be 10, 20 or 30 (got {period_ms})")
    return period_ms


def frame_samples(period_ms: int) -> int:
    """Samples in one 16 kHz capture period (160, 320 or 480)."""
    return ms_samples(check_period(period_ms))


def frame_bytes(period_ms: int) -> int:
    """Bytes in one 16 kHz mono S16_LE capture period (320, 640 or 960)."""
    return ms_bytes(check_period(period_ms))


# -- conversion ------------------------------------------------------------------------------------


def samples(data: bytes, count: int = -1) -> Int16Array:
    """S16_LE bytes as int16 samples: a read-only view, no copy. `count` limits it (-1: all)."""
    return np.frombuffer(data, dtype="<i2", count=count)


def to_float(data: bytes | Int16Array, dtype: npt.DTypeLike = np.float32) -> FloatArray:
    """S16_LE bytes (or int16 samples) as floats in [-1, 1), computed in `dtype`.

    Dividing by a power of two is exact, so the result equals multiplying by 1/32768 bit for bit.
    """
    x = samples(data) if isinstance(data, bytes | bytearray | memoryview) else np.asarray(data)
    out: FloatArray = x.astype(dtype) / np.asarray(FULL_SCALE, dtype=dtype)
    return out


def levels(data: bytes) -> tuple[float, float, float]:
    """(RMS dBFS, peak dBFS, share of samples at full scale) of S16_LE mono `data`; -inf dBFS for silence."""
    s = samples(data)
    if not len(s):
        return -np.inf, -np.inf, 0.0
    x = to_float(s, np.float64)
    rms = float(np.sqrt(np.mean(x * x)))
    peak = float(np.max(np.abs(x)))
    clipped = float(np.count_nonzero((s == INT16_MAX) | (s == INT16_MIN))) / len(s)

    def db(v: float) -> float:
        return float(20 * np.log10(v)) if v > 0 else -np.inf

    return db(rms), db(peak), clipped


def quantize(x: npt.ArrayLike) -> Int16Array:
    """Floats on the int16 scale to int16: rounded half to even, clipped to the int16 range."""
    y: Int16Array = np.clip(np.rint(x), INT16_MIN, INT16_MAX).astype("<i2")
    return y


def to_int16(y: npt.ArrayLike) -> Int16Array:
    """Floats in [-1, 1] to int16 samples (clipped), scaled in the input's own float precision."""
    return quantize(np.asarray(y) * FULL_SCALE)


def to_bytes(y: npt.ArrayLike) -> bytes:
    """Floats in [-1, 1] to S16_LE bytes (clipped)."""
    return bytes(to_int16(y).tobytes())


# -- resampling ------------------------------------------------------------------------------------

_EMPTY = np.zeros(0, dtype=np.float32)


class StreamResampler:
    """Resamples a stream of S16_LE mono bytes chunk by chunk; `flush()` ends the stream.

    soxr keeps filter state between chunks, so the concatenated output equals resampling the
    whole signal at once. It runs in float (`dtype`, float32 unless asked), never on int16: see the
    module docstring. Equal rates pass bytes through untouched.
    """

    def __init__(self, in_rate: int, out_rate: int, *, quality: str = "HQ", dtype: str = "float32") -> None:
        if in_rate <= 0 or out_rate <= 0:
            raise ValueError(f"rates must be positive (got {in_rate} -> {out_rate})")
        self.in_rate = in_rate
        self.out_rate = out_rate
        self._dtype = np.dtype(dtype)
        self._carry = b""  # an odd trailing byte waits for its partner
        self._stream: Any = None  # soxr.ResampleStream, or None when passing through
        if in_rate != out_rate:
            # Imported here: the gate and the models use this module's constants without paying
            # for soxr's import (~8 ms on x86) unless something resamples.
            import soxr

            self._stream = soxr.ResampleStream(in_rate, out_rate, 1, dtype=dtype, quality=quality)

    @property
    def passthrough(self) -> bool:
        return self._stream is None

    def process(self, data: bytes) -> bytes:
        """Resample one chunk; the output may be shorter or empty while soxr fills its filter."""
        if self._carry:
            data = self._carry + data
            self._carry = b""
        if len(data) % 2:
            self._carry = data[-1:]
            data = data[:-1]
        if self._stream is None:
            return data
        return to_bytes(self.process_samples(to_float(data)))

    def process_samples(self, x: npt.ArrayLike, *, last: bool = False) -> FloatArray:
        """Resample float samples (-1..1) in the resampler's dtype; `last` ends the stream (and resets it).

        For callers that mix or convert before resampling (`edgevoice gate` on 24-bit stereo WAVs):
        no detour through 16-bit samples.
        """
        a: FloatArray = np.asarray(x, dtype=self._dtype)
        if self._stream is None:
            return a
        y: FloatArray = self._stream.resample_chunk(a, last=last)
        if last:
            self._stream.clear()
        return y

    def flush(self) -> bytes:
        """The samples soxr still holds; the resampler is then ready for a new stream."""
        self._carry = b""
        if self._stream is None:
            return b""
        return to_bytes(self.process_samples(_EMPTY, last=True))

    def reset(self) -> None:
        """Forget buffered input without producing it (barge-in, device lost)."""
        self._carry = b""
        if self._stream is not None:
            self._stream.clear()


def resample(data: bytes, in_rate: int, out_rate: int, *, quality: str = "HQ") -> bytes:
    """One-shot resampling of a whole S16_LE mono signal (the stream resampler, flushed)."""
    r = StreamResampler(in_rate, out_rate, quality=quality)
    return r.process(data) + r.flush()


SHIFT_TAPS: Final = 16
"""Taps of `shift`'s windowed-sinc kernel: `shift` reads SHIFT_TAPS // 2 - 1 samples before and SHIFT_TAPS // 2
after the span it returns."""


def shift(x: FloatArray, frac: float) -> FloatArray:
    """`x` read SHIFT_TAPS // 2 - 1 samples in and `frac` (in [0, 1)) of a sample later: out[i] = x(i + 7 + frac),
    len(x) - SHIFT_TAPS + 1 samples. For following a slow clock drift a frame at a time (the echo canceller's
    far end): soxr resamples at a fixed ratio, and a drift estimate moves. A Blackman-windowed sinc: flat to
    within 0.1 dB below 5 kHz at 16 kHz for every `frac`, whose magnitude response a linear echo filter would
    otherwise have to follow as the fraction turns."""
    half = SHIFT_TAPS // 2
    m = np.arange(-half + 1, half + 1) - frac  # kernel taps at x offsets -7..8 around the read point
    kernel = np.sinc(m) * (0.42 + 0.5 * np.cos(np.pi * m / half) + 0.08 * np.cos(2 * np.pi * m / half))
    kernel /= kernel.sum()
    return np.convolve(x, kernel[::-1], mode="valid")
