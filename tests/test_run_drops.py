"""`edgevoice run --input-pace 1.0 --input-frames N` against a provider fake that is killed, hung or down at
a stage of a turn: the daemon answers every turn it can, tells the user of the one it cannot, and exits 0;
the store keeps every message once, numbered without gaps (tests/rundrops.py)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.base import Turn
from tests.fakes.openai import FakeOpenAIRealtime
from tests.rundrops import LOST, Conversation, Result, answers, check_store, lost, until

# Voices and sentences not used to tune the gate or the local model's tests.
UTTERANCES = [
    ("Good evening, how are you today?", "en-gb"),
    ("Remember that my sister is called Dana.", "en-us+f3"),
    ("What is the date today?", "en-gb-scotland"),
]


def cloud_turns(n: int) -> list[Turn]:
    return [
        Turn(user=f"cloud heard {i}", assistant=f"cloud answer {i}", audio_chunks=4, silence_ms=500) for i in range(n)
    ]


@pytest.fixture
def fake() -> Iterator[FakeOpenAIRealtime]:
    f = FakeOpenAIRealtime(cloud_turns(6), pace_s=0.1)
    f.start()
    try:
        yield f
    finally:
        f.stop()


def conversation(tmp_path: Path, fake: FakeOpenAIRealtime, gap_s: float = 0.0, **model: object) -> Conversation:
    settings = {
        "provider": "openai_realtime",
        "endpoint": fake.url,
        "response_timeout_s": 3,
        "backoff_initial_s": 0.2,
        "backoff_max_s": 1,
        **model,
    }
    return Conversation(tmp_path, UTTERANCES, settings, env={"OPENAI_API_KEY": "sk-fake-edgevoice-drops"}, gap_s=gap_s)


def ok(r: Result) -> None:
    assert r.rc == 0, r.log[-4000:]
    check_store(r)


def test_no_drop_every_turn_answered_by_the_cloud(tmp_path: Path, fake: FakeOpenAIRealtime) -> None:
    r = conversation(tmp_path, fake).run()
    ok(r)
    assert answers(r) == ["cloud answer 0", "cloud answer 1", "cloud answer 2"]
    assert fake.seen.connections == 1 and LOST not in r.log


def test_killed_mid_user_speech_the_turn_is_resent_whole(tmp_path: Path, fake: FakeOpenAIRealtime) -> None:
    def kill_in_second_turn() -> None:
        assert until(lambda: fake.seen.turns_played == 1)
        after_first = fake.seen.audio_in
        # Well into the second utterance (24 kHz from the client): half a second of it has arrived.
        assert until(lambda: fake.seen.audio_in > after_first + 48000 // 2 * 2)
        fake.kill()

    r = conversation(tmp_path, fake).run(kill_in_second_turn)
    ok(r)
    assert "the turn cut off by the drop goes to the next connection" in r.log
    assert answers(r) == ["cloud answer 0", "cloud answer 1", "cloud answer 2"]  # nothing had to be said again
    assert fake.seen.connections == 2 and LOST not in r.log


def test_killed_mid_answer_the_user_hears_it_was_lost(tmp_path: Path, fake: FakeOpenAIRealtime) -> None:
    def kill_mid_second_answer() -> None:
        assert until(lambda: fake.seen.turns_played == 1 and len(fake.item_audio_ms) == 2)
        assert until(lambda: 0 < list(fake.item_audio_ms.values())[-1] < 300)
        fake.kill()

    r = conversation(tmp_path, fake).run(kill_mid_second_answer)
    ok(r)
    assert LOST in r.log  # the notice was spoken for the second turn
    got = answers(r)
    assert got[0] == "cloud answer 0" and got[-1].startswith("cloud answer")  # the third turn: the cloud again
    assert "cloud answer 1" not in got[1:-1] or got.count("cloud answer 1") == 1


def test_hung_after_a_turn_the_lost_answers_are_told_and_it_exits(tmp_path: Path, fake: FakeOpenAIRealtime) -> None:
    def hang_after_first_answer() -> None:
        assert until(lambda: fake.seen.turns_played == 1)
        fake.hang()

    r = conversation(tmp_path, fake).run(hang_after_first_answer)
    ok(r)
    assert "hung: no model event for 3 s while a response was due" in r.log
    assert answers(r)[0] == "cloud answer 0"
    # Every turn was answered, or the user was told its answer was lost (the turns that followed within the
    # timeout took the floor, so the hang shows after the last one: both went into the hung connection).
    assert len(answers(r)) + lost(r) >= len(UTTERANCES) and lost(r) >= 1


def test_down_from_the_start_the_fallback_answers_then_the_cloud_takes_over_with_the_history(
    tmp_path: Path, fake: FakeOpenAIRealtime
) -> None:
    fake.refuse = True
    conv = conversation(tmp_path, fake, gap_s=3.0)  # time for the offline answers to end: turn boundaries

    def back_after_an_offline_answer() -> None:
        d = conv.sessions / "session_default" / "agents" / "agent_edgevoice" / "messages"

        def answered_offline() -> bool:
            texts = [p.read_text() for p in d.glob("message_*.json")] if d.exists() else []
            return any('"assistant"' in t and "offline" in t for t in texts)

        assert until(answered_offline, 90)
        fake.refuse = False

    r = conv.run(back_after_an_offline_answer)
    ok(r)
    got = answers(r)
    assert got[0].startswith("I can't reach the cloud right now")  # the fallback said why, once
    cloud = [a for a in got if a.startswith("cloud answer")]
    assert cloud and got[-len(cloud) :] == [f"cloud answer {i}" for i in range(len(cloud))]  # then the cloud, for good
    assert "model: the cloud answers again; leaving the offline fallback between turns" in r.log
    # The cloud got the offline turns as history when it came back.
    history = " ".join(str(m) for m in fake.client("conversation.item.create"))
    assert got[0].split(".")[0] in history


def test_down_with_no_fallback_every_turn_is_told_offline(tmp_path: Path, fake: FakeOpenAIRealtime) -> None:
    fake.refuse = True
    r = conversation(tmp_path, fake, fallback="none").run()
    ok(r)
    told = sum(int(m.group(1)) for m in re.finditer(r"offline with no fallback; (\d+) turn\(s\) not answered", r.log))
    assert told + lost(r) == len(UTTERANCES)  # each turn: told offline (or lost), none answered late
    assert answers(r) == [] and "the offline model answers" not in r.log
