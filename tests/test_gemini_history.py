"""Gemini Live conversation history across reconnects and restarts (`edgevoice/models/gemini_live.py`).

The real `BidiAgent`, the real Strands Gemini model (our subclass, built by `make_model`) and the real
`DurableFileSessionManager` on a tmp dir, against the fake endpoint (`tests/fakes/gemini.py`), which keeps
sessions, issues resumption handles and refuses a resume as Google does.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from strands.bidi import BidiAgent
from strands.bidi.models.google import GoogleGeminiLiveModel

from edgevoice import config
from edgevoice.models import DEFAULT_MODEL_IDS, gemini_live, make_model
from edgevoice.models.gemini_live import GeminiLiveModel, ResumeState, replay_history
from edgevoice.session import DurableFileSessionManager
from edgevoice.session.durable import detach
from tests.fakes.agent import Reader, speak, stored_messages, texts
from tests.fakes.base import Turn
from tests.fakes.gemini import FakeGeminiLive

KEY = "AIzaFakeEdgevoice"
CLOUD_ENV = ("GOOGLE_API_KEY", "GEMINI_API_KEY", "GOOGLE_GEMINI_BASE_URL")
TURNS = [
    Turn(user="my name is alice", assistant="hello alice"),
    Turn(user="i live in oslo", assistant="oslo is lovely"),
    Turn(user="what is my name", assistant="your name is alice"),
    Turn(user="thanks", assistant="you are welcome"),
]


@contextmanager
def gemini(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[tuple[FakeGeminiLive, config.Settings]]:
    for var in CLOUD_ENV:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("GOOGLE_API_KEY", KEY)
    monkeypatch.setattr(gemini_live, "_STATES", {})  # this test's process: no handle from another test
    fake = FakeGeminiLive(TURNS, tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(fake.cert))  # read when make_model builds the genai client
    fake.start()
    try:
        settings = config.replace(
            config.Settings(),
            model={"provider": "gemini_live", "endpoint": fake.url},
            session={"dir": str(tmp_path / "sessions"), "agent_id": "ev"},
        )
        yield fake, settings
    finally:
        fake.stop()


def store(settings: config.Settings) -> DurableFileSessionManager:
    return DurableFileSessionManager("s1", storage_dir=settings.session.dir)


def agent_for(settings: config.Settings, manager: DurableFileSessionManager) -> BidiAgent:
    return BidiAgent(model=make_model(settings), session_manager=manager, agent_id="ev")


def state(settings: config.Settings) -> ResumeState:
    m = settings.model
    return gemini_live.resume_state(m.endpoint, DEFAULT_MODEL_IDS["gemini_live"], settings.session.dir, "ev")


def stored(settings: config.Settings) -> list[dict[str, Any]]:
    return stored_messages(Path(settings.session.dir), "s1", "ev")


async def until(predicate: Callable[[], bool], timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


async def turn(fake: FakeGeminiLive, agent: BidiAgent, reader: Reader, n: int) -> None:
    """Speak, and wait until the fake played its `n`th turn and the agent finished the answer."""
    stops = reader.count("bidi_response_stop")
    await speak(agent, 3200)
    assert await reader.wait(lambda r: fake.seen.turns_played >= n and r.count("bidi_response_stop") > stops)


async def start(agent: BidiAgent) -> Reader:
    await asyncio.wait_for(agent.start(), 10)
    return Reader(agent)


async def stop(agent: BidiAgent, reader: Reader) -> None:
    await asyncio.wait_for(agent.stop(), 10)
    await reader.cancel()


async def handle_held(fake: FakeGeminiLive, settings: config.Settings) -> str:
    """The handle the fake issued last, once the model holds it (it arrives after turnComplete)."""
    assert await until(lambda: bool(fake.issued) and state(settings).handle == fake.issued[-1])
    return fake.issued[-1]


async def drop(fake: FakeGeminiLive, reader: Reader) -> None:
    fake.kill()
    assert await reader.wait(lambda r: r.ended, 5)


async def first_turn_then_drop(fake: FakeGeminiLive, settings: config.Settings, agent: BidiAgent) -> str:
    """A turn, a drop, and the daemon's stop of the failed agent; the handle the model held."""
    reader = await start(agent)
    await turn(fake, agent, reader, 1)
    handle = await handle_held(fake, settings)
    await drop(fake, reader)
    await stop(agent, reader)
    return handle


async def cut_off_second_turn(fake: FakeGeminiLive, agent: BidiAgent, reader: Reader) -> None:
    """The first turn plays out; the connection drops after the first audio of the second answer."""
    await turn(fake, agent, reader, 1)
    fake.stall_answers = True
    await speak(agent, 3200)
    assert await reader.wait(lambda r: r.count("bidi_audio_delta") >= 4)  # 3 of turn 1, 1 of turn 2
    await drop(fake, reader)
    fake.stall_answers = False


def run(main: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(main(), 60))


ALICE_AND_OSLO = [("user", "my name is alice"), ("model", "hello alice"), ("user", "i live in oslo")]


def test_both_sides_are_stored_also_for_a_turn_a_drop_cut_off(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """(a) Each turn's user and assistant transcripts land in the store; a drop in the middle of an answer
    keeps what was transcribed (Strands alone would store "[Transcript unavailable.]" for both)."""

    async def main() -> None:
        agent = agent_for(settings, store(settings))
        reader = await start(agent)
        await cut_off_second_turn(fake, agent, reader)
        await stop(agent, reader)

    with gemini(monkeypatch, tmp_path) as (fake, settings):
        fake.transcription_finished = False  # as Google: the user's words close with the answer
        run(main)
        setup = fake.setups[0]
        assert "inputAudioTranscription" in setup and "outputAudioTranscription" in setup
    messages = stored(settings)
    assert texts(messages, "user") == ["my name is alice", "i live in oslo"]
    assert texts(messages, "assistant") == ["hello alice", "oslo is lovely"]
    assert "[Transcript unavailable.]" not in str(messages)  # what Strands alone stores for both


def test_transcription_is_requested_whatever_the_params(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    async def main() -> None:
        params = {"input_audio_transcription": None, "output_audio_transcription": None, "session_resumption": None}
        model = GeminiLiveModel(
            model_id="gemini-x", client_args={"api_key": KEY, "http_options": {"base_url": fake.url}}, params=params
        )
        await model.start("be brief")
        await model.stop()

    with gemini(monkeypatch, tmp_path) as (fake, _):
        run(main)
        assert {"inputAudioTranscription", "outputAudioTranscription", "sessionResumption"} <= set(fake.setups[0])


def test_a_reconnect_resumes_the_session(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """(b) A drop, then the daemon's restart of the same agent (stop, start): the model resumes with the last
    handle; the fake's session still knows the first turn, nothing is replayed, and the talk goes on."""

    async def main() -> None:
        agent = agent_for(settings, store(settings))
        handle = await first_turn_then_drop(fake, settings, agent)

        reader = await start(agent)
        assert fake.resumed == [handle] and fake.refused == []
        await turn(fake, agent, reader, 2)
        await stop(agent, reader)

    with gemini(monkeypatch, tmp_path) as (fake, settings):
        run(main)
        assert len(fake.sessions) == 1 and fake.histories == []
        said = [("assistant" if role == "model" else role, text) for role, text in ALICE_AND_OSLO]
        assert fake.sessions[0].context == [*said, ("assistant", "oslo is lovely")]
    messages = stored(settings)
    assert texts(messages, "user") == ["my name is alice", "i live in oslo"]
    assert texts(messages, "assistant") == ["hello alice", "oslo is lovely"]


def test_a_turn_cut_off_by_a_drop_is_replayed_not_resumed_past(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """(b, c) The last handle came before a turn the drop cut off: resuming would restore a session that
    never heard that turn, which the store holds. The start begins a new session with the stored history,
    the cut-off turn in it."""

    async def main() -> None:
        agent = agent_for(settings, store(settings))
        reader = await start(agent)
        await cut_off_second_turn(fake, agent, reader)
        assert state(settings).handle == fake.issued[-1] == "handle-0-1"  # issued after the first turn
        await stop(agent, reader)

        reader = await start(agent)
        await turn(fake, agent, reader, 2)  # the fake's third turn, the second it played to the end
        await stop(agent, reader)

    with gemini(monkeypatch, tmp_path) as (fake, settings):
        fake.transcription_finished = False
        run(main)
        assert fake.resumed == [] and len(fake.sessions) == 2
        assert fake.histories == [[*ALICE_AND_OSLO, ("model", "oslo is lovely")]]
    assert texts(stored(settings), "user") == ["my name is alice", "i live in oslo", "what is my name"]


def test_a_new_model_after_an_abandoned_stop_closes_the_old_socket_then_resumes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """(b) After a stop the connection gave up on, a new agent and model (built by `make_model` again) find
    the handle, close the old socket that still holds the session (Gemini refuses a resume while it is open),
    and resume."""

    async def main() -> None:
        manager = store(settings)
        old = agent_for(settings, manager)
        old_reader = await start(old)
        await turn(fake, old, old_reader, 1)
        handle = await handle_held(fake, settings)
        assert fake.open_sockets() == 1  # the old agent's stop never returned: its socket is still open

        detach(manager, old)  # what daemon/agents.py does before building the new agent
        new = agent_for(settings, manager)
        assert new.model is not old.model
        reader = await start(new)
        assert fake.resumed == [handle] and fake.refused == []
        await turn(fake, new, reader, 2)
        assert await old_reader.wait(lambda r: r.ended, 5)
        await stop(old, old_reader)
        await stop(new, reader)

    with gemini(monkeypatch, tmp_path) as (fake, settings):
        run(main)
        assert len(fake.sessions) == 1 and fake.histories == []
    assert texts(stored(settings), "user") == ["my name is alice", "i live in oslo"]


@pytest.mark.parametrize("when", ["at_setup", "after_setup"])
def test_a_refused_resume_starts_a_new_session_with_the_stored_history(
    when: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """(c) Gemini refuses the handle (expired): the same start goes on with a new session and the stored
    history. Refused right after set-up instead, the handle is dropped, so the next start is new (not
    another refused resume, for ever)."""

    async def main() -> None:
        agent = agent_for(settings, store(settings))
        handle = await first_turn_then_drop(fake, settings, agent)

        fake.refuse_resumes = True
        fake.refuse_after_setup = when == "after_setup"
        reader = await start(agent)
        if when == "after_setup":
            assert await reader.wait(lambda r: r.ended, 5)
            assert getattr(reader.error, "code", None) == 1011
            await stop(agent, reader)
            reader = await start(agent)
        assert fake.refused == [(handle, "session handle expired")]
        await turn(fake, agent, reader, 2)
        await stop(agent, reader)

    with gemini(monkeypatch, tmp_path) as (fake, settings):
        run(main)
        assert fake.histories == [ALICE_AND_OSLO[:2]]
        assert len(fake.sessions) == 2 and fake.sessions[1].context[:2] == fake.histories[0]
    assert texts(stored(settings), "user") == ["my name is alice", "i live in oslo"]


def test_a_new_process_replays_the_newest_stored_history(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """(c) A daemon restart (no handle: a new process, a new store manager over the same dir) starts a new
    session seeded with the stored transcripts of both sides, the newest `HISTORY_MAX_CHARS` of them."""

    async def first_process() -> None:
        agent = agent_for(settings, store(settings))
        reader = await start(agent)
        for n in (1, 2, 3):
            await turn(fake, agent, reader, n)
        await stop(agent, reader)

    async def second_process() -> None:
        agent = agent_for(settings, store(settings))
        reader = await start(agent)
        await turn(fake, agent, reader, 4)
        await stop(agent, reader)

    with gemini(monkeypatch, tmp_path) as (fake, settings):
        run(first_process)
        monkeypatch.setattr(gemini_live, "_STATES", {})
        # Room for the last turn and a half: the half ("oslo is lovely") is left out, so it opens with the user.
        budget = len("i live in oslo") - 1 + len("oslo is lovely") + len("what is my name") + len("your name is alice")
        monkeypatch.setattr(gemini_live, "HISTORY_MAX_CHARS", budget)
        run(second_process)
        assert fake.resumed == [] and len(fake.sessions) == 2
        assert fake.histories == [[("user", "what is my name"), ("model", "your name is alice")]]
    messages = stored(settings)
    assert texts(messages, "user") == ["my name is alice", "i live in oslo", "what is my name", "thanks"]
    assert texts(messages, "assistant")[-1] == "you are welcome"


def test_replayed_history_drops_what_gemini_cannot_take() -> None:
    messages: Any = [
        {"role": "assistant", "content": [{"text": "left over from an earlier answer"}]},
        {"role": "user", "content": [{"text": "what time is it"}]},
        {"role": "assistant", "content": [{"toolUse": {"toolUseId": "t", "name": "clock", "input": {}}}]},
        {"role": "user", "content": [{"toolResult": {"toolUseId": "t", "status": "success", "content": []}}]},
        {"role": "assistant", "content": [{"text": " "}]},
        {"role": "assistant", "content": [{"text": "it is noon"}]},
        {"role": "user", "content": []},  # a transcript still pending
    ]
    assert replay_history(messages) == [
        {"role": "user", "content": [{"text": "what time is it"}]},
        {"role": "assistant", "content": [{"text": "it is noon"}]},
    ]


def test_keepalive_tolerates_slow_pongs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """(d) Gemini's pongs take 8-30 s. Time scaled 100x: pings every 0.2 s (20 s), pongs 0.3 s (30 s) late,
    an idle 1.2 s (two minutes). With websockets' default timeout (20 s, 0.2 here) the client closes the
    connection itself (1011); with ours it stays up, pinging all along. Strands leaves websockets' default."""

    async def idle(timeout_s: float) -> BaseException | None:
        """What ended the connection in an idle two minutes (None: it stayed up)."""
        monkeypatch.setattr(gemini_live, "PING_INTERVAL_S", 0.2)
        monkeypatch.setattr(gemini_live, "PING_TIMEOUT_S", timeout_s)
        agent = agent_for(settings, store(settings))
        reader = await start(agent)
        ws = agent.model._live_session._ws  # type: ignore[attr-defined]
        assert (ws.ping_interval, ws.ping_timeout) == (0.2, timeout_s)
        ended = await reader.wait(lambda r: r.ended, 1.2)
        await stop(agent, reader)
        assert ended == (reader.error is not None)
        return reader.error

    ours_s = gemini_live.PING_TIMEOUT_S / 100

    async def main() -> None:
        plain = GoogleGeminiLiveModel(
            model_id="m", client_args={"api_key": KEY, "http_options": {"base_url": fake.url}}
        )
        await plain.start()
        ws = plain._live_session._ws
        assert (ws.ping_interval, ws.ping_timeout) == (20, 20)
        await plain.stop()

        trap = await idle(0.2)
        # The client closed it: a 1011 close frame sent by websockets (google-genai reports it as 1006,
        # since no close frame came back), the one Google's server logs as 1011.
        sent = getattr(trap and trap.__context__, "sent", None)
        assert sent is not None and (sent.code, sent.reason) == (1011, "keepalive ping timeout")
        assert await until(lambda: any("received 1011" in how for how in fake.seen.closed)), fake.seen.closed
        pongs = fake.pongs
        ours = await idle(ours_s)
        assert ours is None
        assert fake.pongs - pongs >= 2

    with gemini(monkeypatch, tmp_path) as (fake, settings):
        fake.pong_delay = 0.3
        run(main)


def test_the_factory_shares_one_resume_state_per_conversation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOOGLE_API_KEY", KEY)
    monkeypatch.setattr(gemini_live, "_STATES", {})
    settings = config.replace(config.Settings(), model={"provider": "gemini_live"})
    elsewhere = config.replace(settings, session={"dir": "/elsewhere"})
    one, two, other = make_model(settings), make_model(settings), make_model(elsewhere)
    assert isinstance(one, GeminiLiveModel) and isinstance(two, GeminiLiveModel) and isinstance(other, GeminiLiveModel)
    one._resume.handle = "h"
    assert two._live_session_handle == "h" and other._live_session_handle is None
