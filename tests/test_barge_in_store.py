"""Barge-in end to end, store side: a real BidiAgent over the durable store on a tmp dir, real playback into an
ALSA file PCM, the daemon's speaker and gated mic, and a fake model. When the user talks over an answer the
model is told (OpenAI: `response.cancel` while it still streams, `conversation.item.truncate` to the played
milliseconds) and the stored assistant message holds only the words that were played, rewritten in place."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from strands.bidi import BidiAgent
from strands.bidi.types.media import AudioDelta

from edgevoice import config
from edgevoice.audio import Playback
from edgevoice.daemon.mic import GatedMic
from edgevoice.daemon.played import MARK, PlayedAudio, cut_message, cut_text, find_transcript
from edgevoice.daemon.speaker import SpeakerOutput
from edgevoice.daemon.state import Event, StateMachine
from edgevoice.gate import make_gate
from edgevoice.models import make_model, responder
from edgevoice.models.local import LocalModel
from edgevoice.pcm import StreamResampler
from edgevoice.session import DurableFileSessionManager
from tests.alsa import AsoundRc, alsa_home
from tests.fakes.base import Turn
from tests.fakes.openai import FakeOpenAIRealtime
from tests.test_barge_in import NoFrames, user_speech_frames

RATE = 16000
PERIOD_MS = 30
STORY = (
    "Once upon a time there was a small speaker on a kitchen shelf that loved to tell long stories about the sea, "
    "the wind, the ships that sailed far away and the people who waited for them at home every single evening."
)


@pytest.fixture
def alsa(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[AsoundRc]:
    yield from alsa_home(tmp_path, monkeypatch)


class Ask:
    """An input stream that says one thing (input audio or a text message), then nothing more."""

    def __init__(self, what: bytes | str) -> None:
        self._what: bytes | str | None = what

    async def start(self, agent: BidiAgent) -> None:
        return

    async def stop(self) -> None:
        return

    async def __call__(self) -> Any:
        if self._what is None:
            await asyncio.Event().wait()
        what, self._what = self._what, None
        return AudioDelta(format="pcm", source={"bytes": what}) if isinstance(what, bytes) else what


class AudioCount:
    """An output stream that counts the model's audio bytes, played or muted."""

    def __init__(self) -> None:
        self.bytes = 0

    async def start(self, agent: BidiAgent) -> None:
        return

    async def stop(self) -> None:
        return

    async def __call__(self, event: Any) -> None:
        if event.get("type") == "bidi_audio_delta":
            self.bytes += len(base64.b64decode(event["audio"]))


@dataclass
class Rig:
    agent: BidiAgent
    playback: Playback
    speaker: SpeakerOutput
    mic: GatedMic
    out: Path
    storage: Path


def rig(alsa: AsoundRc, tmp_path: Path, model: Any, *, model_rate: int) -> Rig:
    out = tmp_path / "out.raw"
    alsa.playback("spk", out).write()
    storage = tmp_path / "sessions"
    state = StateMachine()
    pb = Playback("spk", rate=RATE, period_ms=PERIOD_MS, pace=True)
    pb.on_start = lambda: state.fire(Event.PLAYBACK_STARTED)
    speaker = SpeakerOutput(pb, state)
    to_model = StreamResampler(RATE, model_rate).process
    mic = GatedMic(NoFrames(), make_gate(config.Settings()), speaker, state, to_model_rate=to_model)
    manager = DurableFileSessionManager("s1", storage_dir=str(storage))
    agent = BidiAgent(model=model, session_manager=manager, agent_id="ev")
    return Rig(agent, pb, speaker, mic, out, storage)


def stored(storage: Path) -> list[dict[str, Any]]:
    """The stored messages in file order, each checked to sit in the file its message_id names."""
    directory = storage / "session_s1" / "agents" / "agent_ev" / "messages"
    files = sorted(directory.glob("message_*.json"), key=lambda p: int(p.stem.split("_")[1]))
    records = [json.loads(p.read_text()) for p in files]
    assert [r["message_id"] for r in records] == list(range(len(records))), "message numbering has a gap"
    return [r["message"] for r in records]


async def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def barge_in_after(r: Rig, played_s: float) -> None:
    """Let the answer play for about `played_s`, then talk over it through the gate."""
    await wait_for(lambda: r.playback.is_playing, 15, "the answer to play")
    await asyncio.sleep(played_s)
    for frame in user_speech_frames():
        r.mic.handle(frame)
        if r.mic.barge_ins:
            break
    assert r.mic.barge_ins == 1, "the gate never opened on the user's speech"
    assert not r.speaker.is_playing


def played_ms_from_file(r: Rig) -> float:
    """What the device really played: the file PCM holds all that was written to the device (the buffer the
    flush dropped included, which a card would not have played)."""
    buffer_s = r.playback.buffer_frames / RATE
    return (r.out.stat().st_size / 2 / RATE - buffer_s) * 1000


def check_store(r: Rig, generated: str, played_ms: float, whole_ms: float) -> dict[str, Any]:
    """The interrupted answer is stored once, cut to the share played (`played_ms` of its `whole_ms`, as the
    device's output says), in the same numbered file; returns it."""
    messages = stored(r.storage)
    assert len(messages) == len(r.agent.messages), "a message was stored twice, or not at all"
    assert len({m["tracking_id"] for m in messages}) == len(messages)
    [cut] = [m for m in messages if m["role"] == "assistant"]
    text = cut["content"][0]["text"]
    assert text != generated and text.endswith(MARK), text
    heard = text.removesuffix(MARK)
    assert generated.startswith(heard) and generated[len(heard) : len(heard) + 1] in (" ", ",", "."), text
    # The words kept follow the played share measured on the device's output, not on our bookkeeping.
    assert abs(len(heard) / len(generated) - played_ms / whole_ms) < 0.1, (text, played_ms, whole_ms)
    share = cut["metadata"]["custom"]["edgevoice"]["played_share"]
    assert abs(share * whole_ms - played_ms) < 100, (share, played_ms, whole_ms)
    assert cut["metadata"]["custom"]["bidi"] == {"kind": "transcript", "status": "complete"}
    in_memory = [m for m in r.agent.messages if m["role"] == "assistant"]
    assert in_memory[0]["content"] == cut["content"], "the history a reconnect replays is the cut one too"
    return cut


@pytest.fixture
def openai_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("OPENAI_API_KEY", "GOOGLE_API_KEY", "GEMINI_API_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-fake-edgevoice")


def openai_model(fake: FakeOpenAIRealtime) -> Any:
    settings = config.replace(config.Settings(), model={"provider": "openai_realtime", "endpoint": fake.url})
    return make_model(settings)


@contextlib.asynccontextmanager
async def running(r: Rig, inputs: list[Any], outputs: list[Any] | None = None) -> AsyncIterator[None]:
    """The agent runs (`BidiAgent.run`, as the connection runs it) and the playback plays for the block."""
    task = asyncio.create_task(r.agent.run(inputs=inputs, outputs=[r.speaker, *(outputs or [])]))
    r.playback.start()
    try:
        yield
        assert not task.done(), task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)
        r.playback.stop()


async def cut_by_the_user(r: Rig, inputs: list[Any], played_s: float, timeout: float = 20) -> None:
    async with running(r, inputs):
        await barge_in_after(r, played_s)
        await asyncio.sleep(PERIOD_MS / 1000 + 0.05)  # the writer's snd_pcm_drop writes the file PCM's buffer out
        size_after_cut = r.out.stat().st_size
        await wait_for(lambda: r.speaker.answers_cut >= 1, timeout, "the stored answer to be cut")
        await asyncio.sleep(0.2)  # whatever would still be written (a second rewrite, more audio) has its chance
        assert r.out.stat().st_size == size_after_cut, "playback went on after the barge-in"


def test_openai_barge_in_while_the_answer_streams(alsa: AsoundRc, tmp_path: Path, openai_env: None) -> None:
    """The answer is still being generated (2x real time) when the user talks over it: the model is asked to
    cancel and to truncate to what was played; the second of audio still in flight arrives muted and counts in
    the whole."""
    turn = Turn(user="tell me a story", assistant=STORY, audio_chunks=80)
    fake = FakeOpenAIRealtime([turn], pace_s=0.05, cancel_lag_chunks=10)
    with fake:
        r = rig(alsa, tmp_path, openai_model(fake), model_rate=24000)
        asyncio.run(asyncio.wait_for(cut_by_the_user(r, [Ask(bytes(3200)), r.mic], played_s=1.2), 60))
        assert fake.wait(lambda seen: any(m.get("type") == "conversation.item.truncate" for m in seen.messages))

    assert len(fake.client("response.cancel")) == 1
    [truncate] = fake.client("conversation.item.truncate")
    [(item, sent_ms)] = fake.item_audio_ms.items()
    assert truncate["item_id"] == item and truncate["content_index"] == 0
    assert sent_ms < 80 * 100, "the fake was cut off before the end of its answer"
    # Told what the device played, to within a period or two of what the file PCM says it played.
    assert abs(truncate["audio_end_ms"] - played_ms_from_file(r)) < 100, (truncate, played_ms_from_file(r))
    assert 600 < truncate["audio_end_ms"] < sent_ms
    # The share is of everything the answer sent, the muted rest included.
    check_store(r, STORY, played_ms_from_file(r), sent_ms)
    assert fake.errors == [], fake.errors


def test_openai_barge_in_after_the_whole_answer_arrived(alsa: AsoundRc, tmp_path: Path, openai_env: None) -> None:
    """The common case: the model sent its whole answer long before it was played. Nothing is left to cancel;
    the item is truncated and the stored answer, complete by then, is rewritten in place."""
    fake = FakeOpenAIRealtime([Turn(user="tell me a story", assistant=STORY, audio_chunks=50)])
    with fake:
        r = rig(alsa, tmp_path, openai_model(fake), model_rate=24000)
        asyncio.run(asyncio.wait_for(cut_by_the_user(r, [Ask(bytes(3200)), r.mic], played_s=1.5), 60))
        assert fake.wait(lambda seen: any(m.get("type") == "conversation.item.truncate" for m in seen.messages))

    assert fake.client("response.cancel") == [], "no response was running: nothing to cancel"
    [truncate] = fake.client("conversation.item.truncate")
    [(item, sent_ms)] = fake.item_audio_ms.items()
    assert truncate["item_id"] == item and sent_ms == 50 * 100
    assert abs(truncate["audio_end_ms"] - played_ms_from_file(r)) < 100, (truncate, played_ms_from_file(r))
    check_store(r, STORY, played_ms_from_file(r), sent_ms)
    assert fake.errors == [], fake.errors


def test_the_models_own_barge_in_cuts_the_store_and_is_not_told_back(
    alsa: AsoundRc, tmp_path: Path, openai_env: None
) -> None:
    """Server VAD heard the user over the answer and cancelled it (`turn_detected`): playback stops and the
    store is cut to the played share, and the model, which knows, gets no cancel or truncate from us."""
    fake = FakeOpenAIRealtime([Turn(user="tell me a story", assistant=STORY, audio_chunks=60)], pace_s=0.05)

    async def main(r: Rig) -> None:
        async with running(r, [Ask(bytes(3200))]):
            await wait_for(lambda: r.playback.is_playing, 15, "the answer to play")
            await asyncio.sleep(1.0)
            fake.barge_in()
            await wait_for(lambda: r.speaker.answers_cut >= 1, 15, "the stored answer to be cut")
            assert not r.playback.is_playing

    with fake:
        r = rig(alsa, tmp_path, openai_model(fake), model_rate=24000)
        asyncio.run(asyncio.wait_for(main(r), 60))
    assert fake.client("response.cancel") == [] and fake.client("conversation.item.truncate") == []
    [(_, sent_ms)] = fake.item_audio_ms.items()
    check_store(r, STORY, played_ms_from_file(r), sent_ms)


def test_local_model_answer_is_stored_as_played(alsa: AsoundRc, tmp_path: Path) -> None:
    """The offline model (it cannot be told: it hears the barge-in turn itself, and keeps streaming until then):
    all of its answer arrives, most of it muted, and the store keeps the played share."""
    model = LocalModel(pace_lead_s=0.5)
    r = rig(alsa, tmp_path, model, model_rate=RATE)
    counting = AudioCount()

    async def main() -> None:
        async with running(r, [Ask("what can you do")], [counting]):
            await barge_in_after(r, 1.5)
            await wait_for(lambda: r.speaker.answers_cut >= 1, 20, "the stored answer to be cut")

    asyncio.run(asyncio.wait_for(main(), 60))
    generated = responder.respond([], "what can you do", datetime.now())
    total_ms = counting.bytes / 2 / model.get_audio_config()["output"]["sample_rate"] * 1000
    cut = check_store(r, generated, played_ms_from_file(r), total_ms)
    assert r.agent.messages[0]["role"] == "user" and r.agent.messages[0]["content"] == [{"text": "what can you do"}]
    assert cut["content"][0]["text"].count(" ") < generated.count(" ")


# -- the bookkeeping alone (played.py) ----------------------------------------------------------------------


def test_cut_text_keeps_whole_words_of_the_played_share() -> None:
    text = "It is noon in Oslo, and raining."
    assert cut_text(text, 1.0) is None and cut_text(text, 0.99) is None  # every word was heard
    assert cut_text(text, 0.0) == MARK
    assert cut_text(text, 0.32) == "It is noon" + MARK  # "noon" ends at 10 of 32 characters
    assert cut_text(text, 0.3) == "It is" + MARK  # a word cut half-way was not heard
    assert cut_text(text, 0.6) == "It is noon in Oslo" + MARK  # its comma is not kept
    assert cut_text(text, 0.95) == "It is noon in Oslo, and" + MARK


def test_a_flush_takes_the_unplayed_audio_from_the_newest_answer_back() -> None:
    played = PlayedAudio()
    old = played.started("r1", playing=False)
    played.audio(2.0, queued=True)
    played.stopped("r1")
    new = played.started("r2", playing=True)  # r1 still plays: it is kept
    played.audio(1.0, queued=True)
    # 1.2 s queued and one 0.1 s device buffer: all of r2 and 0.3 s of r1 went unplayed.
    assert played.flushed(1.2, 0.1) == [new, old]
    assert new.played_s == 0.0 and old.played_s == pytest.approx(1.7)
    played.audio(0.5, queued=False)  # r2's rest arrives muted: it counts in its whole
    assert new.received_s == 1.5 and new.pending_cuts() == []  # r2 has not ended yet
    assert played.flushed(0.0, 0.1) == []  # a second flush (the model's own barge-in) changes nothing
    # With an empty queue the device buffer is not counted: it may have held nothing.
    fresh = PlayedAudio()
    answer = fresh.started("r3", playing=False)
    fresh.audio(1.0, queued=True)
    assert fresh.flushed(0.0, 0.1) == [] and answer.played_s is None and answer.share == 1.0


def test_cut_message_keeps_the_tracking_id_and_records_the_share() -> None:
    message = {
        "role": "assistant",
        "content": [{"text": "Once upon a time there was a speaker."}],
        "metadata": {"custom": {"bidi": {"kind": "transcript", "status": "complete"}}},
        "tracking_id": "t1",
    }
    assert find_transcript([message], "Once upon a time there was a speaker.") == "t1"
    cut = cut_message(message, 0.25)
    assert cut is not None and cut["tracking_id"] == "t1" and cut["content"] == [{"text": "Once upon" + MARK}]
    assert cut["metadata"]["custom"] == {
        "bidi": message["metadata"]["custom"]["bidi"],
        "edgevoice": {"played_share": 0.25},
    }
    assert message["content"][0]["text"].endswith("speaker.")  # the original is left as it was
    user = {**message, "role": "user"}
    assert cut_message(user, 0.25) is None and find_transcript([user], "Once upon a time there was a speaker.") is None
