"""Offline text-to-speech: espeak-ng in a subprocess, as 16-bit mono PCM at the wanted rate."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess

from ..pcm import RATE, resample

ESPEAK = "espeak-ng"
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


class SpeechError(RuntimeError):
    """espeak-ng is missing or failed; the message is one line."""


def check_installed() -> None:
    if shutil.which(ESPEAK) is None:
        raise SpeechError("local model: espeak-ng is not installed (apt-get install espeak-ng)")


class TextToSpeech:
    def __init__(self, voice: str = "en-us", words_per_minute: int = 165, rate: int = RATE) -> None:
        self.voice = voice
        self.words_per_minute = words_per_minute
        self.rate = rate

    def synthesize(self, text: str) -> bytes:
        """S16_LE mono PCM of `text` at `rate`. Blocking, but espeak-ng is ~100x faster than real time."""
        try:
            # Text goes in on stdin so that nothing in it can be read as an option.
            proc = subprocess.run(
                [ESPEAK, "-v", self.voice, "-s", str(self.words_per_minute), "--stdout"],
                input=text.encode("utf-8"),
                capture_output=True,
                timeout=30,
                check=False,
            )
        except FileNotFoundError:
            raise SpeechError("local model: espeak-ng is not installed (apt-get install espeak-ng)") from None
        except subprocess.TimeoutExpired:
            raise SpeechError("local model: espeak-ng took longer than 30 s") from None
        if proc.returncode != 0:
            detail = proc.stderr.decode(errors="replace").strip().splitlines()
            raise SpeechError(f"local model: espeak-ng failed (exit {proc.returncode}): {detail[-1] if detail else ''}")
        rate, pcm = parse_wav(proc.stdout)
        if rate == self.rate or not pcm:
            return pcm
        # In float, as every resampler here: soxr.resample on int16 dithered espeak-ng's silence.
        return resample(pcm, rate, self.rate)


def parse_wav(data: bytes) -> tuple[int, bytes]:
    """(rate, PCM) of a 16-bit mono WAV. espeak-ng's --stdout WAV has placeholder sizes, so the
    data chunk is taken to run to the end of the stream."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise SpeechError("local model: espeak-ng did not produce a WAV stream")
    pos = 12
    rate = 0
    while pos + 8 <= len(data):
        chunk, size = data[pos : pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        body = pos + 8
        if chunk == b"fmt ":
            fmt, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", data, body)
            if fmt != 1 or channels != 1 or bits != 16:
                raise SpeechError(f"local model: unexpected espeak-ng WAV ({channels} ch, {bits} bit)")
        elif chunk == b"data":
            if rate == 0:
                raise SpeechError("local model: espeak-ng WAV has no format chunk")
            end = min(len(data), body + size)
            end -= (end - body) % 2
            return rate, data[body:end]
        pos = body + size + (size & 1)
    raise SpeechError("local model: espeak-ng WAV has no data")


def sentences(text: str) -> list[str]:
    """Split an answer into sentences, so audio can start after the first one is synthesised."""
    return [s for s in (part.strip() for part in _SENTENCE_END.split(text)) if s]
