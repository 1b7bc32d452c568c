"""Talk-over: is the user talking while the speaker plays? The fast half of a barge-in.

The gate's cascade takes three frames and Silero's say to open a turn (90-180 ms after the user's first
word), and behind AEC3 longer still: its suppressor cuts into the start of double talk. This test looks at the
linear canceller's residual instead (`linear.py`), where the user is at their own level and the echo 20-40 dB
down: a residual well over the room's noise, and not far under what the mic has just heard, is the user.

It is trusted only where the linear filter has shown it cancels, or where there is no echo to cancel (the far
end has played 0.3 s, no echo path turned up and the mic stayed at its noise: a headset, the tests' file
PCMs); elsewhere the gate's own cascade decides, as without it. For the first LEARN_S of far end, once an
echo path has turned up and while the filter is not trusted yet, `learning` says echo may be left in what the
canceller passes: a fresh AEC3 leaks some in its first second, and the daemon lets those frames open no turn
(`LearningFrame`).

Once the user is heard, the canceller sends the linear residual rather than AEC3's output (`talking`) until
they have been quiet for HOLD_S: their words reach the gate and the model whole.
"""

from __future__ import annotations

import math
import statistics
from collections import deque

from .linear import LinearEcho

LOUD_DB = 15.0
"""The residual must be this far over the room's noise floor: a quiet room's noise is never a user."""
SHARE_DB = 12.0
"""...and be no more than this under the loudest the mic heard over the last RECENT_MS: echo-only frames behind
a converged filter hold -35 dB of the mic at the median and -12 to -17 dB in their loudest 5%, but as a loud
word dies away the room's late reverb (past the filter: measured with a 120 ms one, now 96) is left in the residual
at nearly the level of the frame itself (it opened turns on the answer alone), while still 15 dB and more under
the word. The user at the echo's own level holds -1 to -10 dB of that from the frame after their first word."""
RECENT_MS = 150
UNDER_ECHO_DB = 12.0
"""...and be no more than this under the mic's mean level while the speaker plays: a residual that far under
the device's own voice is left to the cascade (the tail of a loud word the filter misses can reach that)."""
ECHO_LEVEL_S = 0.5
TRUST_DB = 20.0
"""The linear filter is trusted where the median of what it cancelled over the last TRUST_SPAN_S of echo (each
measured over ERLE_WINDOW_S of its loud frames) is this much: a filter whose performance swings (a room's
tail longer than it, a weak direct path the delay estimate misses) showed 25 dB in its best windows and 14
in others, and its residual then looked like the user in the others."""
TRUST_SPAN_S = 1.0
"""...and only once it has a whole TRUST_SPAN_S of such measures: a filter trusted on its first (21.5 dB, one
window 1.0 s into an answer) cancelled 21 dB at best, and a loud onset of the answer a few hundred ms later
stood within SHARE_DB of the mic in its residual (it opened a turn on the answer, in a room drawn at random)."""
TRUST_AFTER_S = 1.0
"""...and not before it has learned from this much of the far end: a filter a few hundred ms old can cancel
one sound well and the next not at all (it opened turns on the answer 0.5-0.8 s into it)."""
ERLE_WINDOW_S = 0.3
LEARN_S = 2.0
"""For this much of the far end, once an echo path has turned up and while the filter is not trusted yet, the
frames open no turn (`LearningFrame`): a fresh AEC3 leaks some echo in its first second."""
NO_ECHO_S = 0.3
"""Far end played this long with no echo path found, and the mic at its noise floor (within QUIET_DB) for
QUIET_SHARE of it: there is no echo path (a headset, the tests' file PCMs). An echo leaves the mic quiet only
in the reference's lead (at most 200 ms) and the answer's shortest pauses. Short, because until it is decided
AEC3 alone cancels, and a fresh AEC3 with nothing to cancel cuts the user's words 20-50 dB."""
QUIET_DB = 6.0
QUIET_SHARE = 0.8
SILENCE = 1e-9
"""Power of digital silence (-90 dBFS): a file PCM's zeros are the quietest a mic can be, and quiet."""
TALK_MS = 20
"""The user is heard only after this much of their speech in a row (one frame at 20 and 30 ms periods)."""
HOLD_S = 0.6
"""After the user's last loud frame, the linear residual is still what goes out (pauses between words)."""
FLOOR_S = 3.0
"""The noise floors are the quietest frame of the last this many seconds (in FLOOR_PARTS parts): long enough to
hold a pause between sentences, short enough to follow a room getting louder."""
FLOOR_PARTS = 6


class Floor:
    """The lowest frame power of the last FLOOR_S, kept as the minima of FLOOR_PARTS parts of it."""

    def __init__(self, period_s: float) -> None:
        self._per_part = max(1, round(FLOOR_S / FLOOR_PARTS / period_s))
        self._parts: deque[float] = deque(maxlen=FLOOR_PARTS)
        self._n = 0
        self._low = float("inf")

    def __call__(self, power: float) -> float:
        """Take one frame's power; the floor with it."""
        self._low = min(self._low, power)
        self._n += 1
        if self._n == self._per_part:
            self._parts.append(self._low)
            self._n, self._low = 0, float("inf")
        return min(self._low, min(self._parts, default=float("inf")))


class TalkFrame(bytes):
    """A capture frame in which the echo canceller heard the user talk over the speaker (`Gate.process`'s
    `talk_over`). Travels the capture queue as the bytes it is."""


class LearningFrame(bytes):
    """A capture frame from while the speaker plays (or rings on) and the canceller has not learned the room
    yet: echo may be left in it. It opens no turn (the half-duplex guard's rule, for the first LEARN_S of far
    end); a turn already open takes it."""


class UnsureFrame(bytes):
    """A capture frame AEC3 alone cancelled, before the canceller knows whether there is an echo at all (no
    echo path has turned up, and the linear filter is not trusted: the far end just began, or the user was
    talking when it did, so the mic never showed the room quiet). A fresh AEC3 with nothing to cancel cuts
    the user's words 20-50 dB: a sentence under way when a cue began came out split in two turns. The frame
    is AEC3's output, for the gate to open turns on (the linear filter has not shown it can tell the
    device's voice from the user's yet); `whole` is the linear residual, the user at their own level, which
    a turn already open (the user has the floor) takes instead."""

    whole: bytes

    def __new__(cls, pcm: bytes, whole: bytes) -> UnsureFrame:
        frame = super().__new__(cls, pcm)
        frame.whole = whole
        return frame


class TalkOver:
    """`__call__()` once per frame the canceller processes, after the linear filter took it: True where the
    user talks over the speaker. `talking` holds from the first such frame until HOLD_S after the last."""

    def __init__(self, linear: LinearEcho, period_ms: int) -> None:
        self.linear = linear
        self._period_s = period_ms / 1000
        self._hold = round(HOLD_S / self._period_s)
        self._need = -(-TALK_MS // period_ms)
        self._recent: deque[float] = deque(maxlen=-(-RECENT_MS // period_ms))
        self._run = 0
        self._noise = Floor(self._period_s)
        self._mic_noise = Floor(self._period_s)
        self._far_s = 0.0
        self._echo_level = 0.0  # the mic's mean power while the speaker plays, over about ECHO_LEVEL_S
        self._smooth = min(1.0, self._period_s / ECHO_LEVEL_S)
        self._far_quiet = 0
        self._no_echo = False
        self._window: deque[tuple[float, float]] = deque(maxlen=max(1, round(ERLE_WINDOW_S / self._period_s)))
        self._shown: deque[float] = deque(maxlen=max(1, round(TRUST_SPAN_S / self._period_s)))
        self.erle_db = 0.0
        """The median of what the linear filter cancelled over the last TRUST_SPAN_S of loud echo (each
        measure over ERLE_WINDOW_S): double talk lowers it for a while, a lost room for good."""
        self._left = 0
        self.talking = False
        self.frames = 0
        """Frames heard as the user talking over the speaker."""

    @property
    def learning(self) -> bool:
        """Echo may be left in what the canceller passes: an echo path turned up, and the room is not learned
        yet. (Before an echo path turns up nothing is held back: with none at all, as with a headset, the user
        talking over the first notice or earcon must be heard.)"""
        return self._far_s < LEARN_S and self.linear.delay_found and not self.trusted

    @property
    def unsure(self) -> bool:
        """Whether there is an echo to cancel is not known yet: no echo path turned up, and the filter is not
        trusted (it has not shown it cancels, nor that there is nothing to cancel)."""
        return not self.linear.delay_found and not self.trusted

    @property
    def trusted(self) -> bool:
        lin = self.linear
        if self.erle_db >= TRUST_DB and len(self._shown) == self._shown.maxlen:
            return True  # it cancels: what it leaves over the echo is the user
        return self._no_echo and not lin.delay_found  # nothing to cancel: what the mic hears is the user

    def __call__(self) -> bool:
        """After the linear filter took a frame: is it the user talking over the speaker?"""
        pd, pe = self.linear.powers
        noise, mic_noise = self._noise(pe), self._mic_noise(pd)
        self._recent.append(pd)
        if self.linear.far_active:
            self._far_s += self._period_s
            self._far_quiet += pd <= mic_noise * 10 ** (QUIET_DB / 10) + SILENCE
            if not self._no_echo and self._far_s >= NO_ECHO_S:
                # The far end has played a while, no echo path turned up and the mic stayed at its noise in
                # most of it: nothing comes back. (If the user talked all along, this is never decided.)
                self._no_echo = self._far_quiet * self._period_s >= QUIET_SHARE * self._far_s
            if pd > mic_noise * 10 ** (LOUD_DB / 10):  # echo well over the noise: a fair measure
                self._window.append((pd, pe))
                if len(self._window) == self._window.maxlen:
                    shown = sum(d for d, _ in self._window) / max(sum(e for _, e in self._window), 1e-20)
                    if self._far_s >= TRUST_AFTER_S:  # what a filter still learning showed says nothing
                        self._shown.append(10 * math.log10(max(shown, 1e-20)))
                        self.erle_db = statistics.median(self._shown)  # plain Python: numpy's costs 10x
        if self._far_s > 0:
            self._echo_level += (pd - self._echo_level) * self._smooth
        talk = (
            self.trusted
            and pe > noise * 10 ** (LOUD_DB / 10)
            and pe > max(self._recent) * 10 ** (-SHARE_DB / 10)
            and pe > self._echo_level * 10 ** (-UNDER_ECHO_DB / 10)
        )
        self._run = self._run + 1 if talk else 0
        talk = self._run >= self._need  # a single 10 ms frame can be a click of the echo the filter missed
        if talk:
            self.frames += 1
            self.talking = True
            self._left = self._hold
        elif self._left:
            self._left -= 1
            self.talking = self._left > 0
        return talk
