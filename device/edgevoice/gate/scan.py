"""Run the gate over a recording, as fast as it goes: the `edgevoice gate FILE` command's core.

The recording is streamed: read in blocks, mixed to mono, resampled with a streaming soxr resampler
and fed to the gate period by period, so an hour-long file needs no more memory than a short one.
"""

from __future__ import annotations

import wave
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ..config import Settings
from ..errors import UserError
from ..pcm import RATE, SAMPLE_BYTES, StreamResampler, frame_bytes, to_bytes, to_float
from .events import TurnEnded, TurnStarted
from .gate import Gate, make_gate

BLOCK_S = 0.5
"""Audio read per block: large enough that per-block overhead vanishes, small enough to stay flat."""


class AudioFileError(UserError, ValueError):
    """The recording cannot be read; the message is one line naming the file and why (the CLI exits 2)."""


@dataclass(frozen=True)
class Turn:
    start_s: float  # first sample forwarded (pre-roll included)
    end_s: float  # one past the last sample forwarded
    reason: str  # how it ended: silence, max_length, released, empty, or eof
    opened_s: float  # end of the frame that opened it: when the gate decided


def _reason(e: BaseException) -> str:
    """Why, in words: some of these exceptions carry no message at all (wave's EOFError)."""
    if isinstance(e, OSError):
        return e.strerror or str(e) or type(e).__name__
    if isinstance(e, EOFError):
        return "truncated or empty WAV"
    return str(e) or type(e).__name__


def _fail(path: Path, e: BaseException) -> AudioFileError:
    return AudioFileError(f"{path}: cannot read audio ({_reason(e)})")


def open_audio(path: str | Path) -> Iterator[bytes]:
    """16 kHz mono S16_LE in blocks, from a `.raw` (already that) or a PCM WAV of any rate, width and
    channels. The file is opened and its header checked now (AudioFileError); the blocks come lazily."""
    path = Path(path)
    try:
        f = open(path, "rb")  # noqa: SIM115 - handed to the generator, which closes it
    except OSError as e:
        raise _fail(path, e) from None
    try:
        if path.suffix.lower() == ".raw":
            if path.stat().st_size == 0:
                raise AudioFileError(f"{path}: cannot read audio (empty file)")
            return _raw_blocks(path, f)
        w = _open_wav(path, f)
    except BaseException:
        f.close()
        raise
    return _wav_blocks(path, f, w)


def _open_wav(path: Path, f: BinaryIO) -> wave.Wave_read:
    try:
        if path.stat().st_size == 0:
            raise EOFError
        w = wave.open(f, "rb")  # noqa: SIM115 - closed with `f` by the block generator
    except (OSError, EOFError, wave.Error) as e:
        raise _fail(path, e) from None
    rate, channels, width = w.getframerate(), w.getnchannels(), w.getsampwidth()
    if width not in (1, 2, 3, 4) or channels < 1 or rate < 1000:
        raise AudioFileError(f"{path}: unsupported WAV ({width * 8}-bit, {channels} channels, {rate} Hz)")
    return w


def _raw_blocks(path: Path, f: BinaryIO) -> Iterator[bytes]:
    size = int(RATE * BLOCK_S) * SAMPLE_BYTES
    with f:
        while True:
            try:
                block = f.read(size)
            except OSError as e:
                raise _fail(path, e) from None
            if not block:
                return
            yield block  # an odd trailing byte is dropped with the partial period by scan_stream


def _wav_blocks(path: Path, f: BinaryIO, w: wave.Wave_read) -> Iterator[bytes]:
    rate, channels, width = w.getframerate(), w.getnchannels(), w.getsampwidth()
    # float64 throughout, as the whole-file version did: the output is the same sample for sample.
    resampler = StreamResampler(rate, RATE, dtype="float64")
    step = max(1, int(rate * BLOCK_S))
    with f:
        while True:
            try:
                raw = w.readframes(step)
            except (OSError, EOFError, wave.Error) as e:
                raise _fail(path, e) from None
            raw = raw[: len(raw) // (width * channels) * (width * channels)]  # a truncated last frame
            last = len(raw) == 0
            x = _to_float(raw, width).reshape(-1, channels).mean(axis=1)
            y = resampler.process_samples(x, last=last)
            if y.size:
                yield to_bytes(y)
            if last:
                return


def read_audio(path: Path) -> bytes:
    """The whole recording as 16 kHz mono S16_LE (short files, tests); `open_audio` streams it."""
    data = b"".join(open_audio(path))
    return data[: len(data) // 2 * 2]


def _to_float(raw: bytes, width: int) -> np.ndarray:
    """WAV samples of `width` bytes as float64 in [-1, 1); 16-bit is the PCM contract's own conversion."""
    raw = raw[: len(raw) // width * width]
    if width == 2:
        return to_float(raw, np.float64)
    if width == 1:
        return (np.frombuffer(raw, dtype=np.uint8).astype(np.float64) - 128.0) / 128.0
    if width == 3:
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        return np.where(v >= 1 << 23, v - (1 << 24), v).astype(np.float64) / float(1 << 23)
    return np.frombuffer(raw, dtype="<i4").astype(np.float64) / float(1 << 31)


def scan_stream(gate: Gate, blocks: Iterable[bytes]) -> list[Turn]:
    """Feed 16 kHz mono S16_LE `blocks` (any sizes) to `gate` period by period; a trailing partial
    period is dropped."""
    size = frame_bytes(gate.period_ms)
    turns: list[Turn] = []
    start = opened = -1
    pos = 0  # byte offset of the next period in the whole stream
    pending = b""
    for block in blocks:
        pending += block
        usable = len(pending) - len(pending) % size
        for i in range(0, usable, size):
            for event in gate.process(pending[i : i + size]):
                if isinstance(event, TurnStarted):
                    start, opened = event.start_sample, (pos + i) // 2 + size // 2
                elif isinstance(event, TurnEnded):
                    turns.append(Turn(start / RATE, event.end_sample / RATE, event.reason, opened / RATE))
        pos += usable
        pending = pending[usable:]
    if gate.in_turn:
        turns.append(Turn(start / RATE, gate.position / RATE, "eof", opened / RATE))
    return turns


def scan(gate: Gate, data: bytes) -> list[Turn]:
    """Feed 16 kHz mono S16_LE `data` to `gate` period by period; a trailing partial period is dropped."""
    return scan_stream(gate, (data,))


def scan_file(path: str | Path, settings: Settings) -> list[Turn]:
    """The turns the configured gate opens over the recording at `path`, streamed."""
    blocks = open_audio(path)  # a bad file fails here, before the gate (and Silero) is loaded
    try:
        return scan_stream(make_gate(settings), blocks)
    finally:
        close = getattr(blocks, "close", None)
        if close is not None:
            close()
