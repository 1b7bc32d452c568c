"""Run the gate over a recording, as fast as it goes: the `edgevoice gate FILE` command's core."""

from __future__ import annotations

import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soxr

from ..config import Settings
from .cascade import RATE
from .events import TurnEnded, TurnStarted
from .gate import Gate, make_gate


class AudioFileError(ValueError):
    """The recording cannot be read; the message is one line naming the file."""


@dataclass(frozen=True)
class Turn:
    start_s: float  # first sample forwarded (pre-roll included)
    end_s: float  # one past the last sample forwarded
    reason: str  # how it ended: silence, max_length, released, or eof
    opened_s: float  # end of the frame that opened it: when the gate decided


def read_audio(path: Path) -> bytes:
    """16 kHz mono S16_LE from a `.raw` (already that) or a PCM WAV of any rate, width and channels."""
    try:
        if path.suffix.lower() == ".raw":
            data = path.read_bytes()
            return data[: len(data) // 2 * 2]
        with wave.open(str(path), "rb") as w:
            rate, channels, width = w.getframerate(), w.getnchannels(), w.getsampwidth()
            raw = w.readframes(w.getnframes())
    except (OSError, EOFError, wave.Error) as e:
        raise AudioFileError(f"{path}: cannot read audio ({e.strerror if isinstance(e, OSError) else e})") from None
    if width not in (1, 2, 3, 4) or channels < 1 or rate < 1000:
        raise AudioFileError(f"{path}: unsupported WAV ({width * 8}-bit, {channels} channels, {rate} Hz)")
    x = _to_float(raw, width).reshape(-1, channels).mean(axis=1)
    if rate != RATE:
        x = soxr.resample(x, rate, RATE)
    return bytes(np.clip(np.round(x * 32768.0), -32768, 32767).astype("<i2").tobytes())


def _to_float(raw: bytes, width: int) -> np.ndarray:
    raw = raw[: len(raw) // width * width]
    if width == 1:
        return (np.frombuffer(raw, dtype=np.uint8).astype(np.float64) - 128.0) / 128.0
    if width == 3:
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        return np.where(v >= 1 << 23, v - (1 << 24), v).astype(np.float64) / float(1 << 23)
    dtype = "<i2" if width == 2 else "<i4"
    return np.frombuffer(raw, dtype=dtype).astype(np.float64) / float(1 << (8 * width - 1))


def scan(gate: Gate, data: bytes) -> list[Turn]:
    """Feed 16 kHz mono S16_LE `data` to `gate` period by period; a trailing partial period is dropped."""
    size = gate.period_ms * RATE // 1000 * 2
    turns: list[Turn] = []
    start = opened = -1
    for i in range(0, len(data) - size + 1, size):
        for event in gate.process(data[i : i + size]):
            if isinstance(event, TurnStarted):
                start, opened = event.start_sample, i // 2 + size // 2
            elif isinstance(event, TurnEnded):
                turns.append(Turn(start / RATE, event.end_sample / RATE, event.reason, opened / RATE))
    if gate.in_turn:
        turns.append(Turn(start / RATE, gate.position / RATE, "eof", opened / RATE))
    return turns


def scan_file(path: str | Path, settings: Settings) -> list[Turn]:
    """The turns the configured gate opens over the recording at `path`."""
    data = read_audio(Path(path))
    return scan(make_gate(settings), data)
