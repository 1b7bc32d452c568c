"""Echo cancellation (`edgevoice.frontend`) in simulated rooms (tests/echoroom.py): the speaker plays espeak-ng
answers in voices and sentences the tests do not use, the room brings them back delayed, filtered and
stamped as the daemon stamps them, and a user talks over some of them at the echo's own level (0 dB
speech-to-echo). The gate runs behind the canceller as in the daemon, told where the canceller heard the user
talk over the answer (`TalkFrame`: the fast barge-in).

Anchors, measured in the same run: the same rooms without cancellation (the echo as the gate would hear it:
its turns, and its level), and for CPU the gate's own cost per second of audio (webrtcvad + the numpy
Silero judge), the thing echo cancellation sits in front of.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterator

import numpy as np

from bench.common import Row, best_cpu
from edgevoice.config import Settings
from edgevoice.frontend import EchoCancel, FarEnd
from edgevoice.frontend.aec import webrtc_canceller
from edgevoice.gate import make_gate
from edgevoice.gate.scan import scan
from edgevoice.pcm import RATE, frame_samples, samples, to_bytes
from tests import audiogen as ag
from tests.echoroom import T0, Room, erle_db, gate_opens, opens_in, place

ANSWERS = (  # what the speaker says: sentences and voices the tests never play
    ("en-gb-x-rp+m2", "Tomorrow will be cloudy in the morning, with sunny spells and light winds after lunch."),
    ("en+f5", "Your next appointment is on Tuesday at half past ten, at the dentist on Market Street."),
    ("en-us+f1", "A kilogram is a little over two pounds, and a pound is about four hundred and fifty grams."),
)
USERS = (  # what the user says over them
    ("en-us", "Wait, stop."),
    ("en-gb+f3", "No, I meant Thursday."),
    ("en-us+m3", "Can you say that again?"),
    ("en-029+m1", "That is enough, thanks."),
    ("en-us-nyc+f4", "Hold on a second."),
    ("en-gb-scotland+f2", "Actually, never mind."),
)
DRAWN_USERS = (  # over answers in rooms drawn at random: short commands, soft (fricative, nasal) onsets among them
    ("en-us+m5", "Stop."),
    ("en-gb-x-rp+f1", "No, not that one."),
    ("en-us+f2", "Sorry, what?"),
    ("en+m4", "Hey, hang on."),
    ("en-gb+m1", "Skip it."),
    ("en-us-nyc+f3", "Fine, thanks."),
    ("en-029+f2", "Pause the music."),
    ("en-gb-scotland+m3", "Shush."),
)
ROOMS = (
    Room(seed=11),
    Room(delay_s=0.07, codec_s=0.03, jitter_s=0.012, echo_gain=0.7, seed=12),
    Room(period_ms=10, drift_ppm=80, seed=13),
)


def _answer(i: int) -> np.ndarray:
    voice, text = ANSWERS[i % len(ANSWERS)]
    x = ag.speak(text, voice)
    return x / np.max(np.abs(x)) * 0.5


def _cpu_ms_per_s(far: np.ndarray, mic: np.ndarray, playing: bool) -> float:
    """CPU of `EchoCancel.process` alone per second of audio, best of three (the machine is shared)."""
    n = frame_samples(30)
    frames = [to_bytes(mic[i : i + n]) for i in range(0, len(mic) - n + 1, n)]
    cancels = []  # a fresh canceller for each round, built outside what is timed
    for _ in range(3):
        far_end = FarEnd()
        if playing:
            far_end.played(to_bytes(far), RATE, T0)
        cancels.append(EchoCancel(far_end))

    def run() -> None:
        cancel = cancels.pop()
        for k, f in enumerate(frames):
            cancel.process(f, T0 + (k + 1) * n / RATE)

    return best_cpu(run, 3) / (len(frames) * n / RATE) * 1000


def _aec3_cpu_ms_per_s(far: np.ndarray, mic: np.ndarray) -> float:
    """CPU of AEC3 alone on the same frames, best of three: what echo cancellation costs at the least (the issue
    asks for AEC3), on this machine, now."""
    n = frame_samples(30)
    near, ref = (samples(to_bytes(x))[: len(mic) // n * n].reshape(-1, n) for x in (mic, far))
    aecs = [webrtc_canceller() for _ in range(3)]

    def run() -> None:
        aec = aecs.pop()
        for a, b in zip(near, ref, strict=True):
            aec.process(a, b)

    return best_cpu(run, 3) / (len(near) * n / RATE) * 1000


def _gate_cpu_ms_per_s(mic: np.ndarray) -> float:
    data = to_bytes(mic)
    gates = [make_gate(Settings()) for _ in range(3)]  # built (the judge loaded) outside what is timed
    return best_cpu(lambda: scan(gates.pop(), data), 3) / (len(mic) / RATE) * 1000


PAUSE_S = 3.0
"""Between the earlier answer and the one the user talks over: their question."""


def _barge_in(
    room: Room, r: int, u: int, warm: bool, users: tuple[tuple[str, str], ...] | None = None
) -> tuple[float, float] | None:
    """User `u` talks over room `r`'s answer at 0 dB speech-to-echo, at a different point each time: (decision,
    turn start) after their onset in ms, or None where no turn opened while they spoke. `warm`: the canceller
    heard an earlier answer in this room first, as the daemon's has for every answer but the first since it
    started (it keeps one canceller, and the far end's reader in step, for as long as it runs)."""
    answer = np.concatenate([_answer(r), np.zeros(RATE // 4), _answer(r + 1)])
    at0 = 0.5 + (len(_answer(r + 2)) / RATE + PAUSE_S if warm else 0.0)
    length = round(at0 * RATE) + len(answer) + 2 * RATE
    far = place(length, [(0.5, _answer(r + 2)), (at0, answer)] if warm else [(at0, answer)])
    voice, text = (users or USERS)[u]
    user = ag.speak(text, voice)
    user = user / ag.speech_level(user) * ag.speech_level(room.echo(place(len(answer), [(0.0, answer)])))
    at = at0 + 2.0 + (u * 1.7) % max(1.0, len(answer) / RATE - 4.0)
    near = place(length, [(at, user)]) + ag.pink_noise(length, seed=r) * 3e-4
    heard_in = Room(**{**_fields(room), "seed": room.seed + 100 * (u + 1)})
    _, out, _ = heard_in.run(far, near)
    onset, offset = (at + i / RATE for i in ag.active_span(user))
    opens = [(t, s) for t, s in opens_in(heard_in, out) if onset <= t < offset]  # as GatedMic gates
    return ((opens[0][0] - onset) * 1000, (opens[0][1] - onset) * 1000) if opens else None


def rows(quick: bool = False) -> Iterator[Row]:
    rooms = ROOMS[:2] if quick else ROOMS
    users = range(3 if quick else len(USERS))
    erles, erles_raw, self_turns, self_turns_raw = [], [], 0, 0
    armed_s = []
    for r, room in enumerate(rooms):
        answer = np.concatenate([_answer(r), np.zeros(RATE // 4), _answer(r + 1)])
        length = len(answer) + 2 * RATE
        far = place(length, [(0.5, answer)])
        quiet = ag.pink_noise(length, seed=r) * 3e-4
        # The answer alone: how much of it is left, and does the gate ever take it for the user?
        mic, out, _ = room.run(far, quiet)
        mask = np.zeros(length, bool)
        mask[3 * RATE : round(0.5 * RATE) + len(answer)] = True
        erles.append(erle_db(mic, out, mask))
        erles_raw.append(0.0)
        self_turns += len(opens_in(room, out))
        self_turns_raw += len(gate_opens(mic, [], room.period_ms))
        armed_s.append(_armed_s(room))
    warm = [_barge_in(room, r, u, warm=True) for r, room in enumerate(rooms) for u in users]
    cold = [_barge_in(room, r, u, warm=False) for r, room in enumerate(rooms) for u in users]
    late_ms = [w[0] for w in warm if w is not None]
    start_ms = [w[1] for w in warm if w is not None]
    yield Row("echo.erle_db (answer alone, median of rooms)", statistics.median(erles), "dB", goal="value >= 25")
    yield Row("echo.erle_db (worst room)", min(erles), "dB", goal="value >= 25")
    yield Row(
        "echo.self_turns (answers alone, fixed rooms)",
        self_turns,
        "turns",
        anchor=self_turns_raw,
        goal="value == 0",
    )
    yield Row("echo.barge_in.heard (0 dB speech-to-echo)", len(late_ms) / len(warm), "share", goal="value == 1")
    yield Row(
        "echo.barge_in.decision_late_ms (median)",
        statistics.median(late_ms) if late_ms else float("inf"),
        "ms",
        goal="value <= 100",
    )
    yield Row("echo.barge_in.decision_late_ms (worst)", max(late_ms, default=float("inf")), "ms")
    within = sum(ms <= 100 for ms in late_ms) / len(warm)
    yield Row("echo.barge_in.within_100ms (share of utterances)", within, "share", goal="value == 1")
    # Where the turn begins (pre-roll included), as the gate's own onset rows measure it: what the model hears.
    yield Row("echo.barge_in.start_late_ms (worst)", max(start_ms, default=float("inf")), "ms")
    # The first answer since the daemon started: the canceller learns the room (and the clocks' drift) from its
    # first words. Until it has, the fast barge-in stays off and the cascade behind AEC3 decides (130-800 ms).
    # No goal: a canceller's convergence; the rows say how long it takes here.
    cold_within = sum(c is not None and c[0] <= 100 for c in cold) / len(cold)
    yield Row("echo.first_answer.barge_in.within_100ms (share)", cold_within, "share")
    # The answer alone in rooms drawn at random (delay, level, stamp jitter, period): does the device ever
    # interrupt itself? The fixed rooms above are few; the canceller's thresholds were not set on these.
    rng = np.random.default_rng(2026)
    drawn = 6 if quick else 16
    false_opens = 0
    for k in range(drawn):
        room = _drawn_room(rng, 300 + k)
        answer = _answer(k)
        far = place(len(answer) + RATE, [(0.5, answer)])
        _, out, _ = room.run(far, ag.pink_noise(len(far), seed=k) * float(rng.uniform(1e-4, 1e-3)))
        false_opens += len(opens_in(room, out))
        armed_s.append(_armed_s(room))
    yield Row("echo.self_turns (rooms drawn at random)", false_opens, "turns", goal="value == 0")
    yield Row(
        "echo.self_turns (three answers in a row, rooms drawn at random)",
        sum(_self_turns_in_a_row(k) for k in range(drawn)),
        "turns",
        goal="value == 0",
    )
    yield from _drawn_barge_ins(rng, 8 if quick else 24)
    # How far into the first answer the fast barge-in came on, in the fixed rooms and the drawn ones (a room
    # whose echo barely clears the noise gives the trust test few loud frames to judge by).
    yield Row("echo.first_answer.fast_barge_in_after_s (median room)", statistics.median(armed_s), "s")
    yield Row("echo.first_answer.fast_barge_in_after_s (worst room)", max(armed_s), "s")
    # CPU: AEC3 while the speaker plays, and the pass-through while it is quiet; against the gate's own cost.
    answer = _answer(0)
    mic = ROOMS[0].echo(answer) + ag.pink_noise(len(answer)) * 3e-4
    gate_cpu = _gate_cpu_ms_per_s(mic)
    playing = _cpu_ms_per_s(answer, mic, True)
    # No goal in ms: this shared machine's speed moves by half within minutes (AEC3 alone has read 8.5 to 13.8
    # ms/s, and the same code 15.2 and 20.1 within the hour), so a fixed number judged the machine, not the
    # code. The goal is on the same CPU against AEC3 alone, measured alongside (the issue asks for AEC3; what
    # the linear filter, the talk-over test and the drift follower add is ours), and on the quiet speaker.
    yield Row("echo.cpu_ms_per_audio_s (speaker playing)", playing, "ms", gate_cpu)
    yield Row("echo.cpu_vs_aec3_alone (speaker playing)", playing, "ms", _aec3_cpu_ms_per_s(answer, mic), "ratio <= 2")
    yield Row(
        "echo.cpu_ms_per_audio_s (speaker quiet)", _cpu_ms_per_s(answer, mic, False), "ms", gate_cpu, "ratio <= 0.1"
    )


def _drawn_room(rng: np.random.Generator, seed: int, drifting: bool = False) -> Room:
    """A room drawn at random: delay, level, stamp jitter, period, and with `drifting` clocks 20-100 ppm apart."""
    ranges = ((0.01, 0.08), (0.005, 0.04), (0.2, 1.0), (0.002, 0.015))
    delay, codec, gain, jitter = (float(rng.uniform(a, b)) for a, b in ranges)  # drawn in this order
    drift = float(rng.choice([-1.0, 1.0]) * rng.uniform(20, 100)) if drifting else 0.0
    period = int(rng.choice([10, 20, 30]))
    return Room(
        delay_s=delay, codec_s=codec, echo_gain=gain, jitter_s=jitter, drift_ppm=drift, period_ms=period, seed=seed
    )


def _self_turns_in_a_row(k: int) -> int:
    """Turns opened on three answers in a row (the second pause long enough to end the writer's stretch: the
    far end is stamped anew) in a room drawn at random, every other one with drifting clocks: the canceller's
    reference re-anchored and AEC3's onsets, which one answer alone does not show."""
    rng = np.random.default_rng(7000 + k)
    room = _drawn_room(rng, 700 + k, drifting=k % 2 == 0)
    gap, pause = np.zeros(RATE // 4), np.zeros(RATE // 2)
    said = np.concatenate([_answer(k), gap, _answer(k + 1), pause, _answer(k + 2)])
    far = place(len(said) + RATE, [(0.5, said)])
    _, out, _ = room.run(far, ag.pink_noise(len(far), seed=k) * float(rng.uniform(1e-4, 1e-3)))
    return len(opens_in(room, out))


def _drawn_barge_ins(rng: np.random.Generator, drawn: int) -> Iterator[Row]:
    """Barge-ins over an answer after an earlier one, as above, in rooms drawn at random (a third of them with
    clocks 20-100 ppm apart), by users saying short commands with soft onsets ("Stop.", "No...", "Shush."),
    two per room. Nothing in the canceller was set on these."""
    late: list[float] = []
    heard = 0
    for k in range(drawn):
        room = _drawn_room(rng, 500 + k, drifting=k % 3 == 2)
        for u in (2 * k % len(DRAWN_USERS), (2 * k + 1) % len(DRAWN_USERS)):
            got = _barge_in(room, k, u, warm=True, users=DRAWN_USERS)
            heard += got is not None
            late.append(got[0] if got is not None else float("inf"))
    n = len(late)
    yield Row("echo.barge_in.heard (rooms drawn at random)", heard / n, "share", goal="value == 1")
    within = sum(ms <= 100 for ms in late) / n
    yield Row("echo.barge_in.within_100ms (rooms drawn at random)", within, "share", goal="value == 1")
    yield Row("echo.barge_in.decision_late_ms (rooms drawn at random, median)", statistics.median(late), "ms")
    yield Row("echo.barge_in.decision_late_ms (rooms drawn at random, worst)", max(late), "ms")


def _armed_s(room: Room) -> float:
    """Seconds into the answer (which starts at 0.5 s) until the talk-over test was trusted (inf: never)."""
    if True not in room.trusted:
        return float("inf")
    return (room.trusted.index(True) + 1) * room.period_ms / 1000 - 0.5


def _fields(room: Room) -> dict[str, object]:
    return {k: getattr(room, k) for k in ("delay_s", "codec_s", "echo_gain", "jitter_s", "drift_ppm", "period_ms")}
