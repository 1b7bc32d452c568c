"""A simulated room for echo cancellation: what the speaker plays comes back into the microphone delayed,
filtered and quieter, mixed with the user's speech and noise; the two sides are stamped as the daemon's
playback writer and capture reader stamp them (the playback stamp early by the codec's delay it cannot see,
the capture stamp late by a thread's wake-up jitter), and the mic's clock may drift from the speaker's.

`Room.run(far, near)` drives a `FarEnd` and an `EchoCancel` frame by frame in time order and returns the
mic signal and what came out of the canceller. Used by tests/test_echo.py and bench/rows_echo.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edgevoice.config import Settings, replace
from edgevoice.frontend import EchoCancel, FarEnd
from edgevoice.frontend.talk import LearningFrame, TalkFrame, UnsureFrame
from edgevoice.gate import TurnStarted, make_gate
from edgevoice.pcm import RATE, frame_samples, to_bytes, to_float

T0 = 1000.0  # the monotonic time the scene starts at
GAP_S = 0.3
"""A pause in what the speaker plays this long or longer ends a stretch: the writer goes idle and stamps anew."""


def room_response(delay_s: float, gain: float, seed: int, rt_s: float = 0.15) -> np.ndarray:
    """An impulse response: the direct path after `delay_s`, then a decaying diffuse tail (about `rt_s` to
    -60 dB), low-passed a little as a small speaker and a room are."""
    rng = np.random.default_rng(seed)
    d = round(delay_s * RATE)
    n = d + round(rt_s * RATE)
    h = np.zeros(n)
    h[d] = 1.0
    t = np.arange(n - d - 1) / RATE
    h[d + 1 :] = rng.standard_normal(n - d - 1) * 0.15 * np.exp(-6.9 * t / rt_s)
    h = np.convolve(h, np.ones(4) / 4)[:n]  # a gentle low-pass
    # Scaled by its energy, not its direct path: the tail holds most of it, and a response scaled by the
    # direct path alone made the echo up to 17 dB louder than what was played, clipping the mic at a
    # -6 dBFS answer (no device's gains are set so; no linear filter can predict a clipped echo).
    return h * gain / np.sqrt(np.sum(h**2))


@dataclass
class Room:
    delay_s: float = 0.025
    """Speaker to microphone through the air, plus the capture side's own latency."""
    codec_s: float = 0.012
    """Output latency the playback stamp does not include (the DAC and its driver)."""
    echo_gain: float = 0.5
    """The echo's loudness against what was played: the impulse response's energy gain."""
    jitter_s: float = 0.004
    """A capture stamp is late by up to this (the reader thread woken late)."""
    drift_ppm: float = 0.0
    """The microphone's clock runs this much fast against the speaker's."""
    period_ms: int = 30
    seed: int = 0
    ir: np.ndarray = field(init=False)
    talk: list[bool] = field(init=False, default_factory=list)
    """After `run`: for each frame, whether the canceller heard the user talk over the speaker in it."""
    learning: list[bool] = field(init=False, default_factory=list)
    """After `run`: for each frame, whether the canceller had not learned the room yet (it opens no turn)."""
    trusted: list[bool] = field(init=False, default_factory=list)
    """After `run`: for each frame, whether the canceller's talk-over test was on (the fast barge-in)."""

    def __post_init__(self) -> None:
        self.ir = room_response(self.delay_s, self.echo_gain, self.seed)

    def echo(self, far: np.ndarray) -> np.ndarray:
        """What the microphone hears of `far` (played from t=0): in sound time."""
        e = np.convolve(far, self.ir)[: len(far)]
        return np.concatenate([np.zeros(round(self.codec_s * RATE)), e])[: len(far)]

    def run(
        self, far: np.ndarray, near: np.ndarray, cancel: EchoCancel | None = None
    ) -> tuple[np.ndarray, np.ndarray, EchoCancel]:
        """Play `far` (floats, from t=0, zeros where the speaker is quiet) while the user says `near` (same
        length). Returns (mic, cleaned, canceller)."""
        assert len(far) == len(near)
        rng = np.random.default_rng(self.seed + 1)
        mic = self.echo(far) + near
        rate = 1.0 + self.drift_ppm * 1e-6
        if self.drift_ppm:  # the mic samples a true second into `rate` seconds' worth of its samples
            import soxr

            mic = soxr.resample(mic, RATE, RATE * rate)[: len(far)]
            mic = np.pad(mic, (0, len(far) - len(mic)))  # a slow mic took fewer samples
        self.talk = []
        self.learning = []
        self.trusted = []
        self.frames: list[bytes] = []  # what the canceller returned, marks included (for a GatedMic)
        cancel = cancel or EchoCancel(FarEnd(), period_ms=self.period_ms)
        n = frame_samples(self.period_ms)
        chunks = _played_chunks(far, n)
        out = np.zeros_like(mic)
        lead = 4 * n  # the writer keeps a buffer of four periods ahead of the sound
        c = 0
        for k in range(len(mic) // n):
            end_at = T0 + (k + 1) * n / RATE / rate + rng.uniform(0, self.jitter_s)
            while c < len(chunks) and chunks[c][0] - lead <= (k + 1) * n:
                start, pcm = chunks[c]
                cancel.far.played(pcm, RATE, T0 + start / RATE)
                c += 1
            frame = to_bytes(mic[k * n : (k + 1) * n])
            pcm = cancel.process(frame, end_at)
            self.frames.append(pcm)
            self.talk.append(isinstance(pcm, TalkFrame))
            self.learning.append(isinstance(pcm, LearningFrame))
            self.trusted.append(bool(getattr(cancel, "talk", None) and cancel.talk.trusted))  # a bare filter has none
            out[k * n : (k + 1) * n] = to_float(pcm, np.float64)
        return mic, out, cancel


def _played_chunks(far: np.ndarray, n: int) -> list[tuple[int, bytes]]:
    """`far` cut into periods as the playback writer hands them on: each stretch of sound whole, from its first
    loud period to its last, pauses inside it included (a model's answer is one stream, its silences too);
    only a pause of GAP_S or more ends a stretch (the writer went idle)."""
    loud = [i for i in range(0, len(far) - n + 1, n) if np.any(far[i : i + n])]
    chunks: list[tuple[int, bytes]] = []
    for a, b in zip(loud, [*loud[1:], None], strict=True):
        chunks.append((a, to_bytes(far[a : a + n])))
        if b is not None and b - a < GAP_S * RATE:
            chunks.extend((i, to_bytes(far[i : i + n])) for i in range(a + n, b, n))
    return chunks


def erle_db(mic: np.ndarray, cleaned: np.ndarray, mask: np.ndarray) -> float:
    """Echo return loss enhancement over the samples `mask` selects (echo only, no near speech)."""
    return float(10 * np.log10(np.mean(mic[mask] ** 2) / max(np.mean(cleaned[mask] ** 2), 1e-12)))


def place(length: int, parts: list[tuple[float, np.ndarray]]) -> np.ndarray:
    """A signal of `length` samples with each part starting at its time (s)."""
    x = np.zeros(length)
    for at, part in parts:
        i = round(at * RATE)
        x[i : i + len(part)] += part[: max(0, length - i)]
    return x


def gate_opens(
    signal: np.ndarray,
    talk: list[bool],
    period_ms: int = 30,
    learning: list[bool] | None = None,
    frames: list[bytes] | None = None,
) -> list[tuple[float, float]]:
    """The turns the daemon's gate opens over `signal` (the canceller's output), told where the canceller
    heard the user talk over the speaker, with the frames it marked as learning dropped outside a turn, and
    an open turn taking an `UnsureFrame`'s whole residual (as `GatedMic` does; `frames`: what the canceller
    returned): (when it decided, where the turn starts, pre-roll included), in s."""
    gate = make_gate(replace(Settings(), audio={"period_ms": period_ms}))
    n = frame_samples(period_ms)
    data = to_bytes(signal)
    opens = []
    for k in range(len(signal) // n):
        frame = data[2 * k * n : 2 * (k + 1) * n]
        marked = frames[k] if frames is not None and k < len(frames) else b""
        if isinstance(marked, UnsureFrame) and gate.in_turn:
            frame = marked.whole
        if learning is not None and k < len(learning) and learning[k] and not gate.in_turn:
            gate.listen(frame)
            continue
        for event in gate.process(frame, talk_over=k < len(talk) and talk[k]):
            if isinstance(event, TurnStarted):
                opens.append(((k + 1) * n / RATE, event.start_sample / RATE))
    return opens


def opens_in(room: Room, out: np.ndarray) -> list[tuple[float, float]]:
    """`gate_opens` over what `room.run` returned, with the marks it recorded."""
    return gate_opens(out, room.talk, room.period_ms, room.learning, room.frames)
