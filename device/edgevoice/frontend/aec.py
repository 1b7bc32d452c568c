"""Echo cancellation between capture and the gate: WebRTC's AEC3 (`pywebrtc-audio`) fed with what the speaker
played (`FarEnd`), so the user can talk over the answer and the gate never hears the device's own voice.

Runs on the capture thread, one frame at a time, before the frame is queued for the event loop: the
frame's stamp is taken where it is most exact, and the cancellation costs the loop nothing. While the
speaker has been silent for `idle_s` there is no echo to cancel and the frame passes untouched: AEC3 costs
about 10 ms of CPU per second of audio on x86 (several times that on a Zero 2 W), which an idle speaker
should not pay. The filter keeps what it learned across those pauses (the room has not changed).

AEC3 alone, without its noise suppressor: the gate's cascade was tuned on unsuppressed audio, and WebRTC's
NS moves the noise floor Silero and the level stage judge by.

Beside it runs a linear canceller (`linear.py`), which has no suppressor: where its residual shows the user
talking over the speaker (`talk.py`), the frame is marked for the fast barge-in and the residual, the user at
their own level, goes out instead of AEC3's output, which cuts into double talk. The linear filter cannot
follow a drift between the mic's clock and the speaker's: it is measured from the filter (`drift.py`) and
the filter's reference read at the corrected rate.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Protocol

import numpy as np

from ..pcm import RATE, Int16Array, frame_samples, samples, to_bytes, to_float
from .drift import ClockDrift
from .farend import FarEnd
from .linear import LinearEcho
from .talk import FLOOR_S, LOUD_DB, SILENCE, LearningFrame, TalkFrame, TalkOver, UnsureFrame

log = logging.getLogger(__name__)

IDLE_S = 1.0
"""Far end silent this long (the room's echo has died away): frames pass without cancellation."""
BEFORE_S = 0.3
"""The mic loud over the room's noise (LOUD_DB) in this much before the far end began: the user was talking."""
LEAK_DB = 6.0
"""Where the linear filter is trusted and AEC3's output stands this much over its residual, AEC3 is leaking
echo, and the residual goes out instead."""
RING_S = 0.3
"""How long after the far end went silent the room may still ring with it (the half-duplex tail's length)."""


class Canceller(Protocol):
    """The part of `pywebrtc_audio.EchoCanceller` used here."""

    def process(self, near: Int16Array, far: Int16Array) -> Int16Array: ...


def webrtc_canceller() -> Canceller:
    """AEC3 at 16 kHz mono. Raises ImportError when `pywebrtc-audio` is not installed."""
    import pywebrtc_audio

    return pywebrtc_audio.EchoCanceller(sample_rate=RATE, num_channels=1, stream_delay_ms=0)


class EchoCancel:
    """`process(frame, end_at)`: one 16 kHz S16_LE frame, stamped with when capture got it, minus the echo."""

    def __init__(
        self,
        far: FarEnd,
        *,
        period_ms: int = 30,
        idle_s: float = IDLE_S,
        make: Callable[[], Canceller] = webrtc_canceller,
    ) -> None:
        self.far = far
        self.linear = LinearEcho(frame_samples(period_ms))
        self.talk = TalkOver(self.linear, period_ms)
        self.drift = ClockDrift(self.linear)
        # AEC3 follows a drift its own way, and each correction changes how fast the echo path it tracks moves:
        # it reads as played until the drift measure has settled, then at the settled rate (`ClockDrift.locked`)
        # from where it is. The linear filter, which cannot follow a drift, reads at each new measure's.
        self._for_aec, self._for_linear = far.follower(), far.follower()
        self.idle_s = idle_s
        self._make = make
        self._aec: Canceller | None = None
        self.processed = 0
        """Frames that went through AEC3."""
        self.passed = 0
        """Frames passed untouched (the speaker had been quiet `idle_s`)."""
        self._passing = True  # the last frame was passed untouched
        self._idle: deque[bytes] = deque(maxlen=max(1, round(FLOOR_S * 1000 / period_ms)))
        self._before_frames = max(1, round(BEFORE_S * 1000 / period_ms))
        self._user_first = False
        """The user was talking when the far end began, and the canceller is not sure yet of an echo."""
        self._said: tuple[bool, ...] = ()
        self._period_s = period_ms / 1000

    def start(self) -> None:
        """Build AEC3 now (on the thread that will run it), so a missing library shows at start."""
        if self._aec is None:
            self._aec = self._make()

    def process(self, frame: bytes, end_at: float) -> bytes:
        if self.far.empty and self.far.silent_for(end_at) > self.idle_s:
            self.far.skip(len(frame) // 2, end_at)  # nothing played for a while, nothing queued: not even read
            return self._pass(frame)
        near = samples(frame)
        far, aligned = self.far.take_followed(len(near), end_at)
        quiet_s = self.far.silent_for(end_at)
        if quiet_s > self.idle_s:
            return self._pass(frame)
        if self._passing:  # the far end begins: was the user talking just before it did?
            self._passing = False
            self._user_first = self._talking_before()
        if self._aec is None:
            self._aec = self._make()
        out = self._aec.process(near, far)
        self.processed += 1
        residual, _ = self.linear.process(near, aligned)
        self.drift(len(near), self.linear.far_active, self.far.anchors)
        self._for_linear.ratio = self.drift.ratio
        if self.drift.locked:
            self._for_aec.ratio = self.drift.ratio
        talk = self.talk()
        self._note()
        if not near.any():
            # Digital silence (a muted mic, a file PCM) holds no echo: it stays silence, where AEC3 would
            # add its comfort noise (what marks the end of a turn would no longer be silence).
            return frame
        # While the user talks over the speaker, their words go out as the mic heard them, minus the echo
        # the linear filter predicts: AEC3's suppressor would cut into them.
        # And where AEC3 leaks echo the trusted linear filter does not, the residual is the cleaner of the two.
        linear = self.talk.talking or self._leaks(out)
        pcm = to_bytes(residual) if linear else bytes(np.asarray(out, dtype="<i2").tobytes())
        if talk:
            return TalkFrame(pcm)
        if self.talk.learning and quiet_s < RING_S:
            return LearningFrame(pcm)
        self._user_first = self._user_first and self.talk.unsure
        if self._user_first:
            # The user was talking before the far end began: the floor is theirs, and AEC3 alone, before the
            # canceller knows whether there is an echo at all, cuts into a user it has nothing to cancel for
            # (the gate takes a while to open a turn at the start of a stream: the words must reach it whole).
            return to_bytes(residual)
        if self.talk.unsure and not self.talk.talking:
            return UnsureFrame(pcm, to_bytes(residual))
        return pcm

    def _leaks(self, out: Int16Array) -> bool:
        """Does AEC3 let echo through where the linear filter, trusted, does not? Now and then, at a loud onset
        in the answer's second or third sentence, AEC3 leaked a 50-100 ms burst 20-25 dB over the residual
        (measured in rooms drawn at random, three answers in a row), which the gate took for the user. (Where
        the user talks, AEC3's output is under the residual: its suppressor cuts into them.)"""
        if not self.talk.trusted:
            return False
        x = to_float(out, np.float64)
        return float(x @ x) / len(x) > self.linear.powers[1] * 10 ** (LEAK_DB / 10) + SILENCE

    def _pass(self, frame: bytes) -> bytes:
        """A frame passed untouched (the speaker has been quiet `idle_s`). The last few seconds of them are
        kept as they are (judged only when the far end begins: an idle speaker costs next to nothing)."""
        self.passed += 1
        self._passing = True
        self._idle.append(frame)
        return frame

    def _talking_before(self) -> bool:
        """Was the mic loud over the room's noise floor (the quietest frame of the last FLOOR_S) in the last
        BEFORE_S of the frames passed before the far end began?"""
        frames = [f for f in self._idle if len(f) == len(self._idle[-1])] if self._idle else []
        if not frames:
            return False
        x = to_float(b"".join(frames), np.float64).reshape(len(frames), -1)
        power = np.mean(x * x, axis=1)
        recent = power[-self._before_frames :]
        return bool(np.max(recent) > float(np.min(power)) * 10 ** (LOUD_DB / 10) + SILENCE)

    def _note(self) -> None:
        """What the canceller decides, in the debug log as it changes (a turn split or missed over an answer
        is explained by it): whether an echo path turned up, whether the linear filter is trusted (or there is
        nothing to cancel), whether frames are held back as learning, whether the user is heard talking over."""
        now = (self.linear.delay_found, self.talk.trusted, self.talk.learning, self.talk.talking)
        if now != self._said:
            self._said = now
            log.debug(
                "echo: path %s, %s, %s, %s at %.2f s of capture (ERLE %.0f dB)",
                *("found" if now[0] else "not found", "trusted" if now[1] else "not trusted"),
                *("learning" if now[2] else "not learning", "talk-over" if now[3] else "no talk-over"),
                *((self.processed + self.passed) * self._period_s, self.talk.erle_db),
            )


class _Capture(Protocol):
    process: Callable[[bytes, float], bytes] | None


class _Playback(Protocol):
    on_played: Callable[[bytes, int, float], None] | None
    on_cut: Callable[[float], None] | None


def attach(capture: _Capture, playback: _Playback, period_ms: int) -> EchoCancel | None:
    """Put echo cancellation between `capture` and the gate, fed by what `playback` plays. None (and a
    warning: the half-duplex guard takes over) when `pywebrtc-audio` is not installed."""
    import importlib.util

    if importlib.util.find_spec("pywebrtc_audio") is None:
        log.warning("echo cancellation is on but pywebrtc-audio is not installed: using the half-duplex guard")
        return None
    far = FarEnd()
    cancel = EchoCancel(far, period_ms=period_ms)
    capture.process = cancel.process
    playback.on_played = far.played
    playback.on_cut = far.cut
    return cancel
