"""What happens to the user's turn when the connection drops: the mic resends a turn a connection read only
in part (whole, to the next connection, at that model's rate), and an answer that was owed is replaced by a
spoken notice (daemon/mic.py, daemon/notices.py). Driven frame by frame with a scripted gate."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from edgevoice.config import LocalModelSettings
from edgevoice.daemon.mic import GatedMic
from edgevoice.daemon.notices import LOST_TURN, Notices
from edgevoice.daemon.state import StateMachine
from edgevoice.gate import GateEvent, TurnEnded, TurnFrame, TurnStarted


class ScriptGate:
    """Frames b"S..." open a turn, b"E..." end it, anything else inside a turn is a turn frame."""

    def __init__(self) -> None:
        self.in_turn = False

    def listen(self, frame: bytes) -> None:
        pass

    def process(self, frame: bytes, talk_over: bool = False) -> list[GateEvent]:
        if frame.startswith(b"S"):
            self.in_turn = True
            return [TurnStarted(preroll=[frame], start_sample=0)]
        if frame.startswith(b"E") and self.in_turn:
            self.in_turn = False
            return [TurnEnded(end_sample=0, reason="silence")]
        return [TurnFrame(frame)] if self.in_turn else []

    def press(self) -> list[GateEvent]:
        return []

    def release(self) -> list[GateEvent]:
        return []


class Quiet:
    is_playing = False

    def flush(self) -> int:
        return 0


def mic() -> GatedMic:
    m = GatedMic(_NoSource(), ScriptGate(), Quiet(), StateMachine(), end_padding_ms=10, echo_tail_s=0.0)
    m.on_turn_sent = lambda: sent.append(True)
    return m


class _NoSource:
    async def read(self) -> bytes:
        return b""


sent: list[bool] = []


def read(m: GatedMic, n: int) -> list[bytes]:
    async def go() -> list[bytes]:
        return [(await m()).source["bytes"] for _ in range(n)]  # type: ignore[typeddict-item]

    return asyncio.run(go())


def test_a_turn_cut_off_mid_speech_is_read_again_whole_by_the_next_connection(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    m = mic()
    for frame in (b"S1", b"a2", b"a3"):
        m.handle(frame)
    assert read(m, 2) == [b"S1", b"a2"]  # the first connection read part of the turn, then dropped
    m.connection_lost()
    m.handle(b"a4")
    m.handle(b"E")
    again = read(m, 5)
    assert again[:4] == [b"S1", b"a2", b"a3", b"a4"]  # whole, in order, then the end marker
    assert again[4] == bytes(320)  # 10 ms of digital silence: the end marker
    assert "the turn cut off by the drop goes to the next connection (2 chunks)" in caplog.text


def test_nothing_is_resent_once_the_end_marker_was_read() -> None:
    m = mic()
    for frame in (b"S1", b"a2", b"E"):
        m.handle(frame)
    read(m, 3)
    m.connection_lost()  # the turn reached the model whole: its answer, if lost, is a notice's job
    assert m.pending == 0


def test_audio_is_converted_at_the_rate_of_the_model_that_reads_it() -> None:
    m = mic()
    m.handle(b"S1")
    m.handle(b"a2")
    assert read(m, 1) == [b"S1"]
    m.connection_lost()
    m.convert = lambda pcm: pcm.upper()  # the next connection's model (e.g. the offline fallback's rate)
    assert read(m, 2) == [b"S1", b"A2"]


class Player:
    def __init__(self) -> None:
        self.played: list[tuple[bytes, int]] = []

    def play(self, pcm: bytes, rate: int) -> None:
        self.played.append((pcm, rate))


def test_a_notice_is_synthesised_once_played_and_counted() -> None:
    player, calls = Player(), []

    def synth(text: str) -> tuple[bytes, int]:
        calls.append(text)
        return b"\x01\x00" * 10, 16000

    notices = Notices(player.play, LocalModelSettings(), synthesize=synth)
    spoken: list[int] = []
    notices.on_spoken = lambda: spoken.append(notices.spoken)

    async def go() -> None:
        notices.say(LOST_TURN)
        notices.say(LOST_TURN)
        for _ in range(50):
            await asyncio.sleep(0.01)
            if not notices.busy:
                break

    asyncio.run(go())
    assert calls == [LOST_TURN] and len(player.played) == 2 and spoken[-1] == 2 and len(spoken) == 2


def test_a_notice_that_cannot_be_synthesised_still_counts_and_logs_one_line(caplog: pytest.LogCaptureFixture) -> None:
    player = Player()

    def broken(text: str) -> tuple[bytes, int]:
        raise RuntimeError("espeak-ng is not installed")

    notices = Notices(player.play, LocalModelSettings(), synthesize=broken)

    async def go() -> None:
        notices.say(LOST_TURN)
        for _ in range(50):
            await asyncio.sleep(0.01)
            if not notices.busy:
                break

    asyncio.run(go())
    assert notices.spoken == 1 and player.played == []
    assert [r.getMessage() for r in caplog.records] == ["notice: cannot synthesise speech: espeak-ng is not installed"]


def test_the_real_notice_is_speech(tmp_path: Any) -> None:
    notices = Notices(Player().play, LocalModelSettings())
    pcm, rate = notices._espeak(LOST_TURN)
    assert rate == 16000 and len(pcm) > rate * 2  # several seconds of speech


def test_waiting_whole_turns_are_dropped_and_an_open_turn_stays() -> None:
    m = mic()
    for frame in (b"S1", b"a2", b"E", b"S3", b"a4", b"E", b"S5"):
        m.handle(frame)
    assert m.turn_waiting()
    assert m.drop_waiting() == 2  # two whole turns nobody will read in time
    assert not m.turn_waiting() and read(m, 1) == [b"S5"]  # the open turn goes on
    assert m.drop_waiting() == 0


def test_a_barge_in_over_a_notice_charges_the_notice_not_the_answer_before_it() -> None:
    from edgevoice.daemon.played import PlayedAudio

    played = PlayedAudio()
    played.started("r1", playing=False)
    played.audio(0.2, queued=True)  # the cut-off answer's 0.2 s, all of it played
    played.stopped("r1")
    played.foreign(2.7)  # then the lost-turn notice
    assert played.flushed(dropped_s=2.0, buffered_s=0.12) == []  # the user talked over the notice only
    played.started("r2", playing=False)
    played.audio(1.0, queued=True)
    played.stopped("r2")
    cut = played.flushed(dropped_s=0.5, buffered_s=0.12)  # no notice since the last flush: the answer is cut
    assert len(cut) == 1 and cut[0].played_s == pytest.approx(0.38)
