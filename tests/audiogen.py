"""Test audio: espeak-ng speech, pink noise, babble, mixing at an SNR, and true onsets/offsets.

Everything is 16 kHz mono. Speech comes out as float64 in [-1, 1); `to_s16` makes S16_LE bytes.
Generated speech is cached per process (that is, per pytest session); arrays are read-only.
Sentences are split in a tuning set (for trying gate settings) and a held-out set (for the tests).
`sequence` builds scenes of `Say`s with their own pauses, rates, levels and noise steps (tests/gatemat.py).
"""

from __future__ import annotations

import functools
import subprocess
import tempfile
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soxr

RATE = 16000

# Voices for the target talker; babble uses others so it never sounds like the talker.
VOICES = ("en-us", "en-gb+f3", "en-us+m3", "en-gb-scotland+f2", "en-029+m1", "en-us-nyc+f4")
BABBLE_VOICES = ("en-gb-x-rp+m2", "en-us+f1", "en-gb-x-gbclan+m4", "en+f5")

TUNING_SENTENCES = (
    "Turn on the kitchen lights.",
    "What is the weather going to be like tomorrow morning?",
    "Set a timer for eleven minutes.",
    "Play some quiet jazz in the living room.",
    "How many grams are in a pound?",
    "Remind me to call my sister at six.",
)
HELD_OUT_SENTENCES = (
    "Hey, could you tell me what time it is in Tokyo?",
    "Stop.",
    "Add eggs, flour and sugar to the shopping list.",
    "Who wrote the novel Frankenstein?",
    "Please turn the volume down a little.",
    "Spell the word rhythm for me.",
)
BABBLE_SENTENCES = (
    "The train to the city leaves at a quarter past nine every weekday.",
    "I told him that the garden needed more water during the summer.",
    "We walked along the river until the sun went down behind the hills.",
    "She said the meeting was moved to Thursday afternoon at the office.",
    "They painted the fence white and then planted roses along the path.",
    "Nobody knew where the old key to the cellar door had gone.",
)

# A 10 ms window counts as active when its RMS is within this many dB of the loudest window.
ACTIVE_DB = 40.0
WIN = RATE // 100


@functools.lru_cache(maxsize=256)
def speak(text: str, voice: str = "en-us", wpm: int = 165) -> np.ndarray:
    """espeak-ng speech at 16 kHz, trimmed of espeak's own leading/trailing silence."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "s.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(wpm), "-w", str(path), text], check=True)
        x, rate = read_wav(path)
    y = soxr.resample(x, rate, RATE) if rate != RATE else x
    on, off = active_span(y)
    y = np.ascontiguousarray(y[on:off])
    y.setflags(write=False)
    return y


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path), "rb") as w:
        assert w.getsampwidth() == 2
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64) / 32768.0
        ch = w.getnchannels()
        return data.reshape(-1, ch).mean(axis=1), w.getframerate()


def _window_rms(x: np.ndarray) -> np.ndarray:
    """RMS of x[i:i+WIN] for every i (sliding, one sample hop)."""
    c = np.concatenate([[0.0], np.cumsum(x.astype(np.float64) ** 2)])
    return np.sqrt(np.maximum(c[WIN:] - c[:-WIN], 0.0) / WIN)


def active_span(x: np.ndarray) -> tuple[int, int]:
    """[onset, offset) in samples: first/last 10 ms window whose RMS is within ACTIVE_DB of the loudest."""
    r = _window_rms(x)
    thr = r.max() * 10 ** (-ACTIVE_DB / 20)
    idx = np.flatnonzero(r > thr)
    return int(idx[0]), int(idx[-1]) + WIN


def speech_level(x: np.ndarray) -> float:
    """RMS over the active part: the 10 ms windows (hop 10 ms) within ACTIVE_DB of the loudest."""
    n = len(x) // WIN * WIN
    w = np.sqrt((x[:n].reshape(-1, WIN) ** 2).mean(axis=1))
    active = w[w > w.max() * 10 ** (-ACTIVE_DB / 20)]
    return float(np.sqrt((active**2).mean()))


def pink_noise(n: int, seed: int = 0) -> np.ndarray:
    """Pink (1/f power) noise of unit RMS, 20 Hz and up."""
    rng = np.random.default_rng(seed)
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / RATE)
    spec *= np.where(f >= 20, 1 / np.sqrt(np.maximum(f, 1.0)), 0.0)
    y = np.fft.irfft(spec, n)
    return y / np.sqrt((y**2).mean())


@functools.lru_cache(maxsize=32)
def _babble_cached(n: int, seed: int, talkers: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.zeros(n)
    for t in range(talkers):
        voice = BABBLE_VOICES[t % len(BABBLE_VOICES)]
        order = rng.permutation(len(BABBLE_SENTENCES))
        parts: list[np.ndarray] = []
        total = 0
        i = 0
        while total < n + RATE:
            s = speak(BABBLE_SENTENCES[order[i % len(order)]], voice)
            s = s / speech_level(s)
            gap = np.zeros(int(rng.uniform(0.05, 0.3) * RATE))
            parts += [s, gap]
            total += len(s) + len(gap)
            i += 1
        track = np.concatenate(parts)
        start = int(rng.integers(0, RATE))
        out += track[start : start + n]
    y = out / np.sqrt((out**2).mean())
    y.setflags(write=False)
    return y


def babble(n: int, seed: int = 0, talkers: int = 4) -> np.ndarray:
    """Unit-RMS babble: `talkers` other espeak-ng voices reading other sentences, overlapping."""
    return _babble_cached(n, seed, talkers)


def noise(kind: str, n: int, seed: int = 0) -> np.ndarray:
    if kind == "pink":
        return pink_noise(n, seed)
    if kind == "babble":
        return babble(n, seed)
    raise ValueError(f"unknown noise {kind!r}")


@dataclass(frozen=True)
class Scene:
    """A mixed recording and where each utterance truly is (seconds, from the clean signal)."""

    audio: np.ndarray  # float64, 16 kHz mono
    spans: list[tuple[float, float]]
    speech_level: float
    noise_level: float

    @property
    def seconds(self) -> float:
        return len(self.audio) / RATE

    def s16(self) -> bytes:
        return to_s16(self.audio)


LEVEL = 10 ** (-22 / 20)  # every utterance is normalised to -22 dBFS over its active part


def scene(
    utterances: Sequence[tuple[str, str]],
    noise_kind: str | None,
    snr_db: float,
    lead_s: float = 1.5,
    gap_s: float = 2.5,
    tail_s: float = 1.5,
    seed: int = 0,
) -> Scene:
    """Utterances (text, voice) separated by gaps, all at LEVEL, in noise `snr_db` below LEVEL."""
    parts: list[np.ndarray] = [np.zeros(int(lead_s * RATE))]
    spans = []
    pos = len(parts[0])
    for i, (text, voice) in enumerate(utterances):
        s = speak(text, voice)
        s = s * (LEVEL / speech_level(s))
        on, off = active_span(s)
        spans.append(((pos + on) / RATE, (pos + off) / RATE))
        gap = np.zeros(int((tail_s if i == len(utterances) - 1 else gap_s) * RATE))
        parts += [s, gap]
        pos += len(s) + len(gap)
    clean = np.concatenate(parts)
    noise_level = 0.0
    if noise_kind is not None:
        noise_level = LEVEL * 10 ** (-snr_db / 20)
        clean = clean + noise_level * noise(noise_kind, len(clean), seed)
    return Scene(clean, spans, LEVEL, noise_level)


def noise_only(kind: str, seconds: float, snr_db: float, seed: int = 1) -> Scene:
    """Noise alone at the level it would have `snr_db` below the speech LEVEL."""
    n = int(seconds * RATE)
    level = LEVEL * 10 ** (-snr_db / 20)
    return Scene(level * noise(kind, n, seed), [], LEVEL, level)


def to_s16(x: np.ndarray) -> bytes:
    return (np.clip(np.round(x * 32768.0), -32768, 32767).astype("<i2")).tobytes()


def frames(data: bytes, period_ms: int = 30) -> list[bytes]:
    """Whole capture periods of S16_LE mono at 16 kHz (a trailing partial period is dropped)."""
    size = RATE * period_ms // 1000 * 2
    return [data[i : i + size] for i in range(0, len(data) - size + 1, size)]


def write_wav(path: Path, x: np.ndarray, rate: int = RATE, channels: int = 1) -> Path:
    """A 16-bit WAV; with channels > 1 the signal is copied to every channel (after resampling)."""
    y = soxr.resample(x, RATE, rate) if rate != RATE else x
    if channels > 1:
        y = np.repeat(y[:, None], channels, axis=1)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(to_s16(np.asarray(y).reshape(-1)))
    return path


@dataclass(frozen=True)
class Say:
    """One utterance of a sequence: what, by whom, how fast, after how long a pause (from the end of
    the previous utterance's active part), and the noise level during it (dB against the base level)."""

    text: str
    voice: str = "en-us"
    wpm: int = 165
    gap_s: float = 2.5
    noise_db: float = 0.0
    step_lead_s: float | None = None  # a change of noise level this long before the onset (None: mid-pause)
    level_db: float = 0.0  # speech level against LEVEL (a talker further away, or quieter)


def sequence(
    says: Sequence[Say],
    noise_kind: str | None,
    snr_db: float,
    lead_s: float = 1.5,
    tail_s: float = 1.5,
    seed: int = 0,
) -> Scene:
    """Utterances at LEVEL (plus each one's `level_db`) with their own pauses and rates, in noise
    `snr_db` below LEVEL (plus each one's `noise_db`). A change of noise level steps in `step_lead_s`
    before the utterance's onset (halfway through the pause unless given); the first utterance's pause
    is the lead."""
    n_lead = int(lead_s * RATE)
    pos = n_lead
    spans: list[tuple[int, int]] = []
    clips: list[tuple[int, np.ndarray]] = []
    steps: list[tuple[int, float]] = [(0, says[0].noise_db if says else 0.0)]
    for i, say in enumerate(says):
        s = speak(say.text, say.voice, say.wpm)
        s = s * (LEVEL * 10 ** (say.level_db / 20) / speech_level(s))
        on, off = active_span(s)
        if i:
            # The pause counts from the last utterance's active end to this one's active start.
            start = spans[-1][1] + int(say.gap_s * RATE) - on
            at = (spans[-1][1] + start + on) // 2
            if say.step_lead_s is not None:
                at = max(spans[-1][1], start + on - int(say.step_lead_s * RATE))
            steps.append((at, say.noise_db))
        else:
            start = pos
        clips.append((start, s))
        spans.append((start + on, start + off))
    end = (clips[-1][0] + len(clips[-1][1]) if clips else n_lead) + int(tail_s * RATE)
    out = np.zeros(end)
    for start, s in clips:
        out[start : start + len(s)] += s
    base = LEVEL * 10 ** (-snr_db / 20)
    if noise_kind is not None:
        gain = np.empty(end)
        for k, (at, db) in enumerate(steps):
            until = steps[k + 1][0] if k + 1 < len(steps) else end
            gain[at:until] = 10 ** (db / 20)
        out += base * gain * noise(noise_kind, end, seed)
    return Scene(out, [(a / RATE, b / RATE) for a, b in spans], LEVEL, base if noise_kind else 0.0)
