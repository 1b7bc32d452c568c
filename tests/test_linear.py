"""The linear echo canceller (`edgevoice.frontend.linear`) in simulated rooms (tests/echoroom.py): how soon and how
far it cancels an answer, that it leaves the user talking over it alone, and that with no echo path it passes the
mic through. Voices and sentences are neither the bench's (bench/rows_echo.py) nor AEC3's tests'."""

from __future__ import annotations

import numpy as np
import pytest

from edgevoice.daemon.earcons import make
from edgevoice.frontend import FarEnd
from edgevoice.frontend.drift import ClockDrift
from edgevoice.frontend.linear import LinearEcho
from edgevoice.pcm import RATE, frame_samples, samples, to_bytes, to_float
from tests import audiogen as ag
from tests.echoroom import Room, erle_db, place

START = 0.5  # the answer starts playing here (s)
LEVEL = 0.5
"""The answer's peak, as the bench plays it."""


class Linear:
    """`LinearEcho` behind the interface `Room.run` drives, with the clock drift measured from it as `EchoCancel`
    measures it."""

    def __init__(self, period_ms: int) -> None:
        self.far = FarEnd()
        self.lin = LinearEcho(frame_samples(period_ms))
        self.drift = ClockDrift(self.lin)
        self.ref = self.far.follower()

    def process(self, frame: bytes, end_at: float) -> bytes:
        near = samples(frame)
        [far] = self.far.take_followed(len(near), end_at)
        residual, _ = self.lin.process(near, far)
        self.drift(len(near), self.lin.far_active, self.far.anchors)
        self.ref.ratio = self.drift.ratio
        return to_bytes(residual)


def answer() -> np.ndarray:
    x = np.concatenate([ag.speak(s, "en-gb-x-gbcwmd") for s in ag.BABBLE_SENTENCES[0:3]])
    return x / np.max(np.abs(x)) * LEVEL


def run(room: Room, near_speech: tuple[float, np.ndarray] | None = None) -> tuple[np.ndarray, ...]:
    """(far, echo, near, mic, residual) for the answer played in `room`, with the user's speech if given."""
    speech = answer()
    length = len(speech) + RATE
    far = place(length, [(START, speech)])
    near = place(length, [near_speech] if near_speech else [])
    quiet = ag.pink_noise(length, seed=room.seed) * 3e-4
    mic, out, _ = room.run(far, near + quiet, Linear(room.period_ms))  # type: ignore[arg-type]
    return far, room.echo(far), near, mic, out


def echo_active(echo: np.ndarray) -> np.ndarray:
    """Samples whose 10 ms neighbourhood holds echo within 40 dB of its loudest."""
    r = np.sqrt(np.convolve(echo**2, np.ones(160) / 160, "same"))
    return r > r.max() * 1e-2


def stretch(mask: np.ndarray, a: float, b: float) -> np.ndarray:
    m = mask.copy()
    m[: round(a * RATE)] = False
    m[round(b * RATE) :] = False
    return m


NEAR = Room(seed=11)


def test_an_answer_is_cancelled_within_a_second_and_by_30_db_after_three() -> None:
    _, echo, _, mic, out = run(NEAR)
    active = echo_active(echo)
    end = len(mic) / RATE - 1
    assert erle_db(mic, out, stretch(active, START + 1, START + 3)) >= 17  # goal 20: measured 19.3
    assert erle_db(mic, out, stretch(active, START + 3, end)) >= 30  # measured 33.6
    w = RATE // 5
    first = next(i for i in range(round(START * RATE), len(mic) - w, w // 2) if erle_db(mic, out, slice(i, i + w)) > 15)
    assert (first / RATE - START) <= 1.0  # measured 0.8 s


def test_the_user_talking_over_the_answer_is_left_at_their_level_and_the_filter_holds() -> None:
    user = ag.speak(ag.HELD_OUT_SENTENCES[0], "en-us+m7")
    echo_level = ag.speech_level(NEAR.echo(place(len(answer()) + RATE, [(START, answer())])))
    at = START + 2.0
    _, echo, near, mic, out = run(NEAR, (at, user / ag.speech_level(user) * echo_level))  # 0 dB speech-to-echo
    on, off = (round(at * RATE) + i for i in ag.active_span(user))
    assert abs(10 * np.log10(np.mean(out[on:off] ** 2) / np.mean(near[on:off] ** 2))) <= 1.0  # measured +0.04
    after = stretch(echo_active(echo), off / RATE + 0.5, len(mic) / RATE - 1)
    assert erle_db(mic, out, after) >= 25  # measured 29.0: the foreground never learned the user


def test_with_no_echo_path_the_mic_passes_through() -> None:
    user = ag.speak(ag.HELD_OUT_SENTENCES[2], "en-gb+f4")
    _, _, _, mic, out = run(Room(echo_gain=1e-4), (1.0, user / ag.speech_level(user) * 0.1))
    done = len(mic) // 480 * 480  # the last partial frame is never processed
    assert np.max(np.abs(out[:done] - mic[:done])) <= 1 / 32768  # the int16 rounding: the output filter stayed empty


def test_a_far_loud_room_is_cancelled_by_30_db_after_three_seconds() -> None:
    _, echo, _, mic, out = run(Room(delay_s=0.07, codec_s=0.03, jitter_s=0.012, echo_gain=0.7, seed=12))
    assert erle_db(mic, out, stretch(echo_active(echo), START + 3, len(mic) / RATE - 1)) >= 30  # measured 32.7


@pytest.mark.parametrize(("ppm", "period_ms"), [(80, 10), (-50, 20)])
def test_a_drifting_room_is_cancelled_as_well_as_a_still_one_after_five_seconds(ppm: float, period_ms: int) -> None:
    # Without the drift measured and followed, 80 ppm held the filter near 15 dB (the echo slides 1.3 samples a
    # second against the far end's timeline) where the same room without drift gave 32.
    erle = {}
    for drift in (0, ppm):
        _, echo, _, mic, out = run(Room(period_ms=period_ms, drift_ppm=drift, seed=13))
        erle[drift] = erle_db(mic, out, stretch(echo_active(echo), START + 5, len(mic) / RATE - 1))
    assert erle[ppm] >= erle[0] - 4  # measured 80 ppm: 30.3 against 32.5; -50 ppm: 32.3 against 32.7


@pytest.mark.parametrize(("voice", "sentence"), [("en-gb+f3", 0), ("en-gb+f3", 2), ("en-us+m4", 2)])
def test_an_earcon_over_the_users_words_with_no_echo_path_moves_no_filter(voice: str, sentence: int) -> None:
    # The earcons for a lost and a found connection, 0.1 s into the user's sentence, into a mic with no echo
    # path (a headset, the daemon tests' file PCMs). A delay rule that judged a peak against what lies outside
    # the filter's span (to place the filter in rooms whose reflections outweigh their direct path) took a
    # cue's short correlation peak at the first estimate, and the daemon held the user's words back as the
    # canceller's learning (a daemon test failed 3 runs in 5). These scenes place no filter.
    lost, back = (to_float(make(name), np.float64) for name in ("lost", "back"))
    user = ag.speak(ag.HELD_OUT_SENTENCES[sentence], voice)
    length = len(user) + 2 * RATE
    far = place(length, [(0.2, lost), (0.6 + 0.3 * sentence, back)])
    near = place(length, [(0.1, user / ag.speech_level(user) * 0.1)])
    room = Room(echo_gain=1e-4, seed=40 + sentence)
    linear = Linear(room.period_ms)
    room.run(far, near + ag.pink_noise(length, seed=sentence) * 3e-4, linear)  # type: ignore[arg-type]
    assert not linear.lin.delay_found
