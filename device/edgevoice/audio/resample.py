"""Streaming resampling of 16-bit mono PCM bytes with soxr."""

from __future__ import annotations

import numpy as np
import soxr

_EMPTY = np.zeros(0, dtype=np.float32)
_SCALE = 32768.0


def _to_float(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / _SCALE


def _to_bytes(y: np.ndarray) -> bytes:
    return bytes(np.clip(np.rint(y * _SCALE), -32768, 32767).astype("<i2").tobytes())


class StreamResampler:
    """Resamples a stream of S16_LE mono bytes chunk by chunk; `flush()` ends the stream.

    soxr keeps filter state between chunks, so the concatenated output equals resampling the
    whole signal at once. soxr runs in float32 here: its int16 output is dithered (random), and
    a deterministic result is worth more to tests than dither is to speech. Equal rates pass
    bytes through.
    """

    def __init__(self, in_rate: int, out_rate: int, *, quality: str = "HQ", dtype: str = "float32") -> None:
        if in_rate <= 0 or out_rate <= 0:
            raise ValueError(f"rates must be positive (got {in_rate} -> {out_rate})")
        self.in_rate = in_rate
        self.out_rate = out_rate
        self._quality = quality
        self._dtype = np.dtype(dtype)
        self._carry = b""  # an odd trailing byte waits for its partner
        self._stream: soxr.ResampleStream | None = None
        if in_rate != out_rate:
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
        return _to_bytes(self.process_samples(_to_float(data)))

    def process_samples(self, x: np.ndarray, *, last: bool = False) -> np.ndarray:
        """Resample float samples (-1..1) in the resampler's dtype; `last` ends the stream (and resets it).

        For callers that mix or convert before resampling (`edgevoice gate` on 24-bit stereo WAVs):
        no detour through 16-bit samples.
        """
        x = np.asarray(x, dtype=self._dtype)
        if self._stream is None:
            return x
        y: np.ndarray = self._stream.resample_chunk(x, last=last)
        if last:
            self._stream.clear()
        return y

    def flush(self) -> bytes:
        """The samples soxr still holds; the resampler is then ready for a new stream."""
        self._carry = b""
        if self._stream is None:
            return b""
        return _to_bytes(self.process_samples(_EMPTY, last=True))

    def reset(self) -> None:
        """Forget buffered input without producing it (barge-in, device lost)."""
        self._carry = b""
        if self._stream is not None:
            self._stream.clear()


def resample(data: bytes, in_rate: int, out_rate: int, *, quality: str = "HQ") -> bytes:
    """One-shot resampling of a whole S16_LE mono signal."""
    r = StreamResampler(in_rate, out_rate, quality=quality)
    return r.process(data) + r.flush()
