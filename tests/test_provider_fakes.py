"""Every cloud provider's real Strands model, built by `make_model` and reached through `model.endpoint`,
talking to a fake on 127.0.0.1 through a real BidiAgent (fakes in tests/fakes/):

- OpenAI Realtime: plain websocket; Gemini Live: websocket over TLS with a self-signed certificate trusted
  through SSL_CERT_FILE; Nova Sonic: HTTP/2 over TLS with AWS event-stream framing, the real AWS CRT client
  trusting the fake's certificate (`nova_sonic`), and the same script behind the AWS SDK client seam
  (`nova_sonic_seam`, where a test can make the SDK raise what it likes).
- Per provider: connect, input audio reaching the fake, user and assistant transcripts, audio out, a tool
  call whose result the fake receives, a barge-in, the durable store holding both transcripts; then what a
  clean close and an abrupt drop look like to the application (pinned here: the supervision step builds on
  it, and a Strands upgrade that changes it must fail these tests).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from strands import tool
from strands.bidi import BidiAgent

from edgevoice.models import make_model
from edgevoice.session import DurableFileSessionManager
from tests.fakes.agent import Reader, speak, stored_messages, texts
from tests.fakes.base import Turn
from tests.toolrig import Rig, rig  # the fake started, credentials faked, `model.endpoint` at it

PROVIDERS = ["openai_realtime", "gemini_live", "nova_sonic", "nova_sonic_seam"]


@tool
def clock(city: str) -> str:
    """The time in a city."""
    return f"noon in {city}"


def agent_for(r: Rig, storage: Path | None = None) -> BidiAgent:
    manager = DurableFileSessionManager("s1", storage_dir=str(storage)) if storage else None
    return BidiAgent(model=make_model(r.settings), tools=[clock], session_manager=manager, agent_id="ev")


async def converse_one_turn(r: Rig, agent: BidiAgent) -> Reader:
    await asyncio.wait_for(agent.start(), 10)
    reader = Reader(agent)
    await speak(agent, 3200)
    assert await reader.wait(lambda x: r.fake.seen.turns_played >= 1 and x.count("bidi_response_stop") >= 1)
    return reader


def kinds(reader: Reader) -> list[str]:
    return [e["type"] for e in reader.events if isinstance(e, dict) and "type" in e]


TURNS = [
    Turn(user="my name is alice", assistant="hello alice"),
    Turn(user="what time is it in oslo", assistant="it is noon in oslo", tool=("clock", {"city": "Oslo"})),
    Turn(user="tell me a story", assistant="once upon a time", interrupt=True),
]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_conversation_through_the_endpoint(provider: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    storage = tmp_path / "sessions"

    async def main(r: Rig) -> None:
        agent = agent_for(r, storage)
        reader = await converse_one_turn(r, agent)
        try:
            # Tool call: the agent runs `clock`, the fake receives its result, then the spoken answer.
            await speak(agent, 3200)
            assert await reader.wait(lambda x: r.fake.seen.turns_played >= 2 and bool(x.tool_result_messages()))
            assert await reader.wait(lambda x: x.transcripts("assistant")[1:2] == ["it is noon in oslo"])
            # Barge-in: the user talks over the third answer.
            await speak(agent, 3200)
            assert await reader.wait(lambda x: x.count("bidi_barge_in") == 1)
            assert await reader.wait(lambda x: "bidi_response_stop" in kinds(x)[kinds(x).index("bidi_barge_in") :])
        finally:
            await asyncio.wait_for(agent.stop(), 10)
            await reader.cancel()
        assert reader.error is None, reader.error

        seen = r.fake.seen
        assert seen.connections == 1
        assert seen.audio_in == 3 * 3200, "the fake heard every byte of input audio"
        assert reader.count("bidi_connection_start") == 1
        assert reader.transcripts("user")[:3] == ["my name is alice", "what time is it in oslo", "tell me a story"]
        assert reader.transcripts("assistant") == ["hello alice", "it is noon in oslo", "once upon a time"]
        assert reader.audio_out() == r.fake.audio * 7, "3 + 3 answers' audio, and 1 chunk before the barge-in"
        assert len(seen.tool_results) == 1 and "noon in Oslo" in str(seen.tool_results[0])
        # The barge-in came after the interrupted answer's first audio and before its response stopped.
        seq = kinds(reader)
        barge = seq.index("bidi_barge_in")
        assert "bidi_audio_delta" in seq[barge - 3 : barge] and "bidi_response_stop" in seq[barge:]

        stored = stored_messages(storage, "s1", "ev")
        assert texts(stored, "user")[:3] == ["my name is alice", "what time is it in oslo", "tell me a story"]
        assert texts(stored, "assistant") == ["hello alice", "it is noon in oslo", "once upon a time"]
        assert any("toolResult" in b and "noon in Oslo" in str(b) for m in stored for b in m["content"])

    with rig(provider, TURNS, monkeypatch, tmp_path) as r:
        asyncio.run(asyncio.wait_for(main(r), 60))
        if provider.startswith("nova_sonic"):
            # Strands' opening sequence, decoded from the (signed, on the wire) event stream.
            assert [next(iter(m)) for m in r.fake.seen.messages[:2]] == ["sessionStart", "promptStart"]
        if provider == "nova_sonic_seam":
            assert r.fake.endpoints == ["https://127.0.0.1:9/nova"] and r.fake.model_ids == ["amazon.nova-2-5-sonic"]
        elif provider == "openai_realtime":
            path, headers = r.fake.seen.requests[0]
            assert path == "/v1/realtime?model=gpt-realtime" and headers["Authorization"] == "Bearer sk-fake-edgevoice"
        elif provider == "gemini_live":
            path, headers = r.fake.seen.requests[0]
            assert path.endswith("GenerativeService.BidiGenerateContent")
            assert headers["x-goog-api-key"] == "AIzaFakeEdgevoice"


@dataclass
class Outcome:
    """What the application sees when the connection goes away under a running agent."""

    receive: str  # what agent.receive() raised, or "hangs" when it neither raised nor ended in 3 s
    stop: str  # "returns" or what agent.stop() raised, within 10 s


def close_code(error: BaseException | None) -> int | None:
    """The websocket close code an error carries: websockets' received close frame, google-genai's code."""
    if error is None:
        return None
    if hasattr(error, "rcvd"):  # websockets.ConnectionClosed: None when no close frame came
        return error.rcvd.code if error.rcvd is not None else None
    code = getattr(error, "code", None)
    return code if isinstance(code, int) else None


def drop(provider: str, how: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, stop_s: float = 10) -> Outcome:
    async def main(r: Rig) -> Outcome:
        agent = agent_for(r)
        reader = await converse_one_turn(r, agent)
        getattr(r.fake, how)()
        if await reader.wait(lambda x: x.ended, 3):
            received = type(reader.error).__name__ if reader.error else "ends"
            code = close_code(reader.error)
            received += f" {code}" if code is not None else ""
        else:
            received = "hangs"
        started = time.monotonic()
        try:
            await asyncio.wait_for(agent.stop(), stop_s)
            stopped = "returns"
        except Exception as e:
            stopped = f"raises {type(e).__name__}"
        took = time.monotonic() - started
        assert took < stop_s + 0.5
        if took > 1:
            stopped += f" after {int(took)} s"
        await reader.cancel()
        return Outcome(received, stopped)

    with rig(provider, [Turn()], monkeypatch, tmp_path) as r:
        return asyncio.run(asyncio.wait_for(main(r), 30 + stop_s))


# What Strands 1.62 does, observed against the fakes. OpenAI surfaces websockets' ConnectionClosed,
# Gemini google-genai's APIError with the close code (1000 even for a normal close); Nova's receive() ends
# quietly, so agent.receive() waits forever and only a watchdog of the application's own can notice.
CLEAN_CLOSE = {
    "openai_realtime": Outcome("ConnectionClosedOK 1000", "returns"),
    "gemini_live": Outcome("APIError 1000", "returns"),
    "nova_sonic": Outcome("hangs", "returns"),
    "nova_sonic_seam": Outcome("hangs", "returns"),
}
ABRUPT_DROP = {
    "openai_realtime": Outcome("ConnectionClosedError", "returns"),
    "gemini_live": Outcome("APIError 1006", "returns"),
    # After a TCP reset Strands' stop() does not return: its stop sequence (contentEnd, promptEnd,
    # sessionEnd) waits on the dead HTTP/2 stream. The seam fake refuses sends on a dropped stream instead.
    "nova_sonic": Outcome("hangs", "raises TimeoutError after 10 s"),
    "nova_sonic_seam": Outcome("hangs", "raises RuntimeError"),
}


@pytest.mark.parametrize("provider", PROVIDERS)
def test_clean_close(provider: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert drop(provider, "close", monkeypatch, tmp_path) == CLEAN_CLOSE[provider]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_abrupt_drop(provider: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert drop(provider, "kill", monkeypatch, tmp_path) == ABRUPT_DROP[provider]


# A peer that stops answering (no data, no pong, no close handshake): nothing reaches the application, and
# stop() waits out websockets' 10 s close timeout. Nova's stop sequence still fits in the socket buffers,
# so its stop() returns at once.
HUNG = {
    "openai_realtime": Outcome("hangs", "returns after 10 s"),
    "gemini_live": Outcome("hangs", "returns after 10 s"),
    "nova_sonic": Outcome("hangs", "returns"),
    "nova_sonic_seam": Outcome("hangs", "returns"),
}


@pytest.mark.parametrize("provider", PROVIDERS)
def test_hung_peer(provider: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert drop(provider, "hang", monkeypatch, tmp_path, stop_s=20) == HUNG[provider]
