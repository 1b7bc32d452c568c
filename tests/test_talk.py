"""The fast barge-in (`edgevoice.frontend.talk`): the canceller hears the user talking over the answer in the
linear filter's residual and marks the frame (`TalkFrame`); the gate opens a turn on it at once
(`Gate.process(talk_over=True)`), and the daemon stops the answer. Simulated rooms (tests/echoroom.py) with
voices and sentences neither the bench (bench/rows_echo.py) nor the other echo tests use."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from edgevoice.config import Settings, parse
from edgevoice.daemon.mic import GatedMic
from edgevoice.daemon.state import Event, StateMachine
from edgevoice.frontend import EchoCancel, FarEnd
from edgevoice.frontend.aec import webrtc_canceller
from edgevoice.frontend.talk import LearningFrame, TalkFrame, TalkOver, UnsureFrame
from edgevoice.gate import GateState, TurnStarted, make_gate
from edgevoice.pcm import RATE, to_bytes, to_float
from tests import audiogen as ag
from tests.echoroom import T0, Room, gate_opens, opens_in, place
from tests.test_barge_in import NoFrames

ANSWER = (
    "en-gb-x-gbclan",
    (
        "The museum opens at ten and closes early on Sundays during the winter months.",
        "Your package left the warehouse this morning and should arrive before Friday.",
        "Mix the butter and the sugar first, then fold in the flour a little at a time.",
    ),
)
USERS = [("en-us+m4", "Stop, that is wrong."), ("en-gb-x-rp+f2", "Play something else."), ("en+m6", "What?")]


def answer() -> np.ndarray:
    voice, sentences = ANSWER
    x = np.concatenate([ag.speak(s, voice) for s in sentences])
    return x / np.max(np.abs(x)) * 0.5


def level(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x**2)))


@pytest.mark.parametrize(
    "room",
    [
        Room(seed=21),
        Room(delay_s=0.06, codec_s=0.02, jitter_s=0.01, echo_gain=0.8, seed=22),
        Room(period_ms=20, seed=23),
    ],
    ids=["near", "far_and_loud", "20ms"],
)
def test_the_user_over_the_answer_is_heard_within_100_ms_and_comes_through_whole(room: Room) -> None:
    """Three users at 0 dB speech-to-echo, 3 s or more into the first answer (the linear filter is trusted by
    then): each opens one turn, on the canceller's word (a talk frame), and reaches the gate at their own level
    (AEC3 alone cut them 3-30 dB). A vowel is heard within 30-90 ms; a soft fricative onset ("Stop") is 20-40 dB
    under the echo and is heard with the vowel after it, 130-160 ms from its first sound."""
    speech = answer()
    length = len(speech) + 2 * RATE
    far = place(length, [(0.5, speech)])
    echo_level = ag.speech_level(room.echo(far))
    late = []
    for i, (voice, text) in enumerate(USERS):
        user = ag.speak(text, voice)
        user = user / ag.speech_level(user) * echo_level
        at = 3.5 + 1.9 * i
        near = place(length, [(at, user)])
        noise = ag.pink_noise(length, seed=room.seed + i) * 3e-4
        heard = dataclasses.replace(room, seed=room.seed + 10 * i)
        _, out, _ = heard.run(far, near + noise)
        onset, offset = (at + k / RATE for k in ag.active_span(user))
        opens = [t for t, _ in opens_in(heard, out) if at - 0.5 < t < offset + 0.8]
        assert len(opens) == 1, (text, opens)
        late.append(opens[0] - onset)
        frame = round(opens[0] / (room.period_ms / 1000)) - 1
        assert heard.talk[frame], text  # the canceller's talk frame opened it, not the cascade
        a, b = round(onset * RATE), round(offset * RATE)
        assert abs(20 * np.log10(level(out[a:b]) / level(near[a:b]))) <= 2.0, text
    assert max(late) <= 0.2 and sorted(late)[1] <= 0.1, late


def test_the_answer_alone_is_never_taken_for_the_user() -> None:
    for room in (Room(seed=24), Room(delay_s=0.08, codec_s=0.03, jitter_s=0.015, echo_gain=0.9, seed=25)):
        speech = answer()
        far = place(len(speech) + 2 * RATE, [(0.5, speech)])
        _, out, _ = room.run(far, ag.pink_noise(len(far), seed=room.seed) * 3e-4)
        assert not any(room.talk) and opens_in(room, out) == []


def test_a_turn_spoken_as_a_fresh_canceller_starts_playing_stays_one_turn_at_its_level() -> None:
    """No echo path at all (a headset, or the daemon tests' file PCMs): the user starts a sentence half a
    second into the first answer. A fresh AEC3 alone cut it about 8 dB and split it in two; the canceller
    finds there is no echo within 0.3 s of playing and sends the mic as it is."""
    speech = answer()
    length = len(speech) + 2 * RATE
    far = place(length, [(0.5, speech)])
    user = ag.speak(ag.HELD_OUT_SENTENCES[2], "en-us")
    near = place(length, [(1.0, user / ag.speech_level(user) * 0.1)])
    room = Room(echo_gain=1e-4)
    mic, out, _ = room.run(far, near + ag.pink_noise(length) * 3e-4)
    assert len(gate_opens(mic, [])) == 1
    assert len(opens_in(room, out)) == 1
    a, b = (round(1.0 * RATE) + k for k in ag.active_span(user))
    assert abs(20 * np.log10(level(out[a:b]) / level(mic[a:b]))) <= 0.5


@pytest.mark.parametrize(
    ("voice", "user_at", "cue_at"),
    [("en-gb-scotland", 0.3, 0.9), ("en-us+f4", 0.3, 0.9), ("en-gb-x-rp", 0.03, 0.42)],  # the last: before the gate
)  # has opened the turn (at the start of a stream it takes 0.45 s: it learns the room's level first)
def test_a_sentence_under_way_when_cues_begin_stays_one_turn_at_its_level(
    voice: str, user_at: float, cue_at: float
) -> None:
    """No echo path (a headset, the daemon tests' file PCMs), and the user already talking when the device
    plays the connection-lost and -back cues and starts a notice: the mic is never quiet while the far end
    plays, so the canceller cannot tell there is no echo, and AEC3 alone cut into the sentence (the daemon
    split it in two turns, now and then, or, where the first cue came before the gate had opened the turn,
    never opened one). The open turn takes the linear residual (`UnsureFrame.whole`), and the canceller sends
    it as it is where the user was talking before the far end began."""
    from edgevoice.daemon.earcons import make

    user = ag.speak(ag.HELD_OUT_SENTENCES[2], voice)
    length = len(user) + 3 * RATE
    lost, back = (to_float(make(name), np.float64) for name in ("lost", "back"))
    far = place(length, [(cue_at, lost), (cue_at + 0.4, back), (cue_at + 0.8, answer()[: 2 * RATE] * 0.5)])
    near = place(length, [(user_at, user / ag.speech_level(user) * 0.1)])
    room = Room(echo_gain=1e-4, seed=31)
    mic, _, _ = room.run(far, near + ag.pink_noise(length, seed=31) * 3e-4)
    assert len(gate_opens(mic, [])) == 1  # the sentence alone is one turn
    gated = GatedMic(NoFrames(), make_gate(Settings()), Playing(), StateMachine(), echo_tail_s=0.0)
    sent: list[bytes] = []
    gated._send = lambda pcm, end=False: None if end else sent.append(pcm)  # type: ignore[method-assign]
    for f in room.frames:
        gated.handle(f)
    assert gated.turns_started == 1 and gated.turns_ended == 1
    a, b = (round(user_at * RATE) + k for k in ag.active_span(user))
    words = to_float(b"".join(sent), np.float64)
    assert abs(10 * np.log10(np.sum(words**2) / np.sum(mic[a:b] ** 2))) <= 1.0


def test_the_listening_cue_in_a_turn_goes_as_the_canceller_cancelled_it() -> None:
    """A summons opens a turn and plays the listening cue inside it. A fresh canceller is not sure yet whether
    there is an echo, but AEC3 takes the cue's echo about 40 dB down, and the user is not talking over their
    own summons: while the cue sounds (and its short ring-out), the turn takes AEC3's output, not the
    residual (`GatedMic.cue`). After it, an open turn takes the residual again."""
    cancelled, heard = bytes(960), to_bytes(ag.pink_noise(480, seed=6) * 0.05)
    speaker = Playing()
    speaker.is_playing = False
    mic = GatedMic(NoFrames(), make_gate(Settings()), speaker, StateMachine(), echo_tail_s=0.0)
    sent: list[bytes] = []
    mic._send = lambda pcm, end=False: None if end else sent.append(pcm)  # type: ignore[method-assign]
    mic.press()
    mic.cue(mute=False)
    speaker.is_playing = True
    mic.handle(UnsureFrame(cancelled, heard))
    assert sent[-1] == cancelled  # the cue's echo, as AEC3 left it
    speaker.is_playing = False
    mic.speaker_went_quiet()
    mic.handle(UnsureFrame(cancelled, heard))
    assert sent[-1] == cancelled  # its ring-out
    mic._speaker_quiet_at -= 1.0  # long after the cue
    mic.handle(UnsureFrame(cancelled, heard))
    assert sent[-1] == heard  # the user has the floor: their words whole


def test_digital_silence_passes_as_it_is() -> None:
    """A muted mic or a file PCM's zeros: AEC3 would fill them with comfort noise, and the silence that ends a
    turn would be silence no more."""
    far = FarEnd()
    far.played(to_bytes(ag.pink_noise(RATE, seed=1) * 0.3), RATE, T0)
    cancel = EchoCancel(far)
    zeros = bytes(960)
    assert all(cancel.process(zeros, T0 + (k + 1) * 0.03) == zeros for k in range(30))
    assert cancel.processed == 30


def test_the_gate_opens_on_talk_over_only_in_vad_mode_and_only_when_idle() -> None:
    quiet = to_bytes(ag.pink_noise(480, seed=2) * 1e-3)
    gate = make_gate(Settings())
    gate.process(quiet)
    events = gate.process(quiet, talk_over=True)
    assert isinstance(events[0], TurnStarted) and gate.state is GateState.SPEAKING
    assert gate.process(quiet, talk_over=True)[0] != events[0]  # in a turn: no second opening
    for mode in ("wake_word", "push_to_talk"):
        gate = make_gate(parse(f"[gate]\nmode = '{mode}'\n"), judge=None, detector=_NeverWakes())
        assert gate.process(quiet, talk_over=True) == [] and not gate.in_turn, mode


class _NeverWakes:
    lookback_samples = 480

    def reset(self) -> None:
        pass

    def __call__(self, frame: bytes) -> bool:
        return False


class Playing:
    """A speaker in the middle of an answer; a flush (the barge-in) stops it."""

    is_playing = True
    flushed = 0

    def flush(self) -> int:
        self.flushed += 1
        self.is_playing = False
        return 0


def test_a_talk_frame_while_the_speaker_plays_is_a_barge_in_at_once() -> None:
    speaker = Playing()
    state = StateMachine()
    state.fire(Event.PLAYBACK_STARTED)
    mic = GatedMic(NoFrames(), make_gate(Settings()), speaker, state)
    quiet = to_bytes(ag.pink_noise(480, seed=3) * 1e-3)
    mic.handle(quiet)
    assert speaker.flushed == 0
    mic.handle(TalkFrame(quiet))
    assert speaker.flushed == 1 and mic.barge_ins == 1 and mic.turns_started == 1


def test_frames_from_before_the_canceller_learned_the_room_open_no_turn() -> None:
    """`LearningFrame`s (the first second or two of the first answer, AEC3 still leaking echo) are dropped
    unheard outside a turn, as the half-duplex tail is; a turn already open (the user's) takes them."""
    said = ag.speak("Turn it down.", "en-us+m4")
    scene = place(len(said) + 2 * RATE, [(0.6, said / np.max(np.abs(said)) * 0.3)])
    data = to_bytes(scene + ag.pink_noise(len(scene), seed=4) * 1e-3)
    frames = [data[i : i + 960] for i in range(0, len(data) - 959, 960)]
    mic = GatedMic(NoFrames(), make_gate(Settings()), Playing(), StateMachine(), echo_tail_s=0.0)
    for f in frames:
        mic.handle(LearningFrame(f))
    assert mic.turns_started == 0 and mic.echo_dropped == len(frames)
    mic = GatedMic(NoFrames(), make_gate(Settings()), Playing(), StateMachine(), echo_tail_s=0.0)
    for f in frames[:20]:
        mic.handle(LearningFrame(f))
    mic.handle(TalkFrame(frames[20]))  # the user, heard over the speaker: a turn opens
    for f in frames[21:]:
        mic.handle(LearningFrame(f))
    # The words went to the turn; only the silence after it ended was dropped.
    assert mic.turns_started == 1 and mic.turns_ended == 1 and mic.frames_sent >= len(said) // 480
    assert 20 < mic.echo_dropped < len(frames) - len(said) // 480


class _Leaky:
    """AEC3 that, a few times in the answer, passes the mic through for 150 ms: the bursts AEC3 leaked at loud
    onsets in drawn rooms (20-25 dB over the linear filter's residual). From 6 s into the answer: the rule
    needs the linear filter trusted (here from 4.9 s), and before that nothing tells a leak from the user."""

    def __init__(self) -> None:
        self.aec = webrtc_canceller()
        self.frames = 0
        self.leaked: list[bytes] = []

    def process(self, near: np.ndarray, far: np.ndarray) -> np.ndarray:
        out = self.aec.process(near, far)
        self.frames += 1
        if self.frames >= 200 and self.frames % 50 < 5:  # 5 frames in every 50
            self.leaked.append(near.tobytes())
            return near
        return out


@pytest.mark.parametrize("check", [True, False])
def test_where_aec3_leaks_echo_the_trusted_linear_residual_goes_out(
    check: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not check:  # without the rule, as shown here: the leaks open turns on the answer
        monkeypatch.setattr("edgevoice.frontend.aec.LEAK_DB", float("inf"))
    room = Room(seed=26)
    speech = answer()
    far = place(len(speech) + 2 * RATE, [(0.5, speech)])
    leaky = _Leaky()
    cancel = EchoCancel(FarEnd(), make=lambda: leaky)
    mic, out, _ = room.run(far, ag.pink_noise(len(far), seed=room.seed) * 3e-4, cancel)
    data, leaked = to_bytes(mic), set(leaky.leaked)
    at = [k for k in range(len(mic) // 480) if data[960 * k : 960 * (k + 1)] in leaked]
    assert len(at) == len(leaky.leaked) >= 20
    burst, sent = (np.concatenate([x[480 * k : 480 * (k + 1)] for k in at]) for x in (mic, out))
    if check:
        assert opens_in(room, out) == []
        assert 20 * np.log10(level(sent) / level(burst)) <= -20
    else:
        assert opens_in(room, out) != []


class _Filter:
    """What `TalkOver` reads of the linear filter, set frame by frame: the mic's and the residual's power."""

    delay_found = True
    far_active = True
    powers = (0.0, 0.0)


def test_the_filter_is_trusted_on_a_whole_second_of_measures_not_its_first() -> None:
    """A filter cancelling 25 dB from the start of an answer: trusted once a second of its measures (after the
    first second it learns in) says so, not on its first measure. Trusted on one measure, a filter at 21 dB
    opened a turn on the answer's next loud onset."""
    lin = _Filter()
    talk = TalkOver(lin, 30)  # type: ignore[arg-type]
    trusted_at = None
    for k in range(1, 200):
        mic = 1e-6 if k == 1 else 1e-3  # one quiet frame (the room's noise floor), then echo 30 dB over it
        lin.powers = (mic, mic * 10**-2.5)  # 25 dB cancelled
        talk()
        if talk.trusted and trusted_at is None:
            trusted_at = k * 0.03
    assert trusted_at is not None and 1.95 <= trusted_at <= 2.4, trusted_at
