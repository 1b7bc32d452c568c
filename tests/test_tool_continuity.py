"""A tool call that outlives its connection (`edgevoice.daemon.tools`), on the real BidiAgent and each provider's
real model against its fake on 127.0.0.1.

Strands 1.62 cancels a running tool with the agent (`_AgentLoop.stop` cancels the task pool), and the daemon
reconnects by cancelling `agent.run`: without continuity the result never reaches anyone and the store keeps
only the dispatch placeholder (pinned below). With it, the work goes on, the result is recorded once with
its toolUse and sent on the next connection (OpenAI natively, Nova Sonic and Gemini Live as a text turn),
where the model answers it. Strands' own restart delivers a result in flight itself; one it handed to the
old connection and never saw answered it does not send again, continuity does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path
from typing import Any

import pytest
from strands import tool
from strands.bidi import BidiAgent
from strands.bidi.hooks import BidiAfterConnectionRestartEvent

from edgevoice.daemon.tools import DeviceTools, ToolContinuity, describe_time
from edgevoice.models import make_model
from edgevoice.session import DurableFileSessionManager
from edgevoice.session.durable import detach
from tests.fakes.agent import stored_messages, texts
from tests.fakes.base import Turn
from tests.toolrig import (
    Lookup,
    Rig,
    Says,
    SlowFirstAnswer,
    check_store,
    drop,
    finish,
    rig,
    tool_pairs,
    tool_use_id,
    until,
)

ANSWER = "it is 42 degrees in oslo"
TURNS = [
    Turn(user="weather in oslo", assistant=ANSWER, tool=("lookup", {"city": "Oslo"})),
    Turn(user="", assistant=ANSWER),  # Gemini's fake answers a late (text) result with its next turn
]
PROVIDERS = ["openai_realtime", "gemini_live", "nova_sonic_seam"]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_result_in_flight_when_the_connection_drops_is_answered_on_the_next(
    provider: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    storage = tmp_path / "sessions"

    async def main(r: Rig) -> None:
        lookup = Lookup()
        tools = DeviceTools([lookup.tool])
        manager = DurableFileSessionManager("s1", storage_dir=str(storage))
        model = make_model(r.settings)
        agent = BidiAgent(model=model, tools=tools.tools, hooks=tools.hooks, session_manager=manager, agent_id="ev")
        inputs, outputs = [Says(), *tools.inputs], list(tools.outputs)
        sent: list[float] = []
        tools.continuity.on_sent = lambda: sent.append(time.monotonic())
        run = asyncio.ensure_future(agent.run(inputs=inputs, outputs=outputs))
        assert await until(lookup.started.is_set)
        drop(r)
        with pytest.raises(Exception):  # noqa: B017  (what each provider raises on a drop is pinned elsewhere)
            await asyncio.wait_for(run, 10)
        assert not lookup.finished.is_set(), "the tool was still running when its connection went"
        # What the connection does after a stop that returned: the same agent, run again.
        run = asyncio.ensure_future(agent.run(inputs=inputs, outputs=outputs))
        try:
            assert await until(lambda: bool(r.fake.results))
            assert await until(lambda: ANSWER in texts(stored_messages(storage, "s1", "ev"), "assistant"))
            assert await until(lambda: not tools.continuity.calls), "the answer settles the call"
        finally:
            await finish(run)
        assert r.fake.seen.connections == 2
        [(conn, what)] = r.fake.results
        assert conn == 2 and "42 degrees in Oslo" in what
        if provider == "openai_realtime":  # natively: the function_call_output's output
            assert what == '[{"text": "42 degrees in Oslo"}]'
        else:
            assert "A tool call finished after the connection was re-established" in what  # a text turn
        assert len(sent) == 1, "the connection's watch hears that an answer is owed"
        messages = check_store(storage, tool_use_id(storage))
        last = [m for m in messages if any("toolResult" in b for b in m["content"])][-1]
        assert last["metadata"]["custom"]["bidi"]["kind"] == "tool_result"
        assert messages[-1]["role"] == "assistant" and messages[-1]["content"] == [{"text": ANSWER}]

    with rig(provider, TURNS, monkeypatch, tmp_path, anywhere=True) as r:
        asyncio.run(asyncio.wait_for(main(r), 60))


def test_without_continuity_strands_loses_the_result(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """What the test above would see without `DeviceTools`: Strands 1.62 cancels the tool with the agent."""
    storage = tmp_path / "sessions"

    async def main(r: Rig) -> None:
        lookup = Lookup(0.5)
        manager = DurableFileSessionManager("s1", storage_dir=str(storage))
        agent = BidiAgent(model=make_model(r.settings), tools=[lookup.tool], session_manager=manager, agent_id="ev")
        run = asyncio.ensure_future(agent.run(inputs=[Says()], outputs=[]))
        assert await until(lookup.started.is_set)
        drop(r)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(run, 10)
        run = asyncio.ensure_future(agent.run(inputs=[Says(0)], outputs=[]))
        try:
            await asyncio.sleep(1.5)
        finally:
            await finish(run)
        assert r.fake.seen.connections == 2 and r.fake.results == [] and not lookup.finished.is_set()
        messages = stored_messages(storage, "s1", "ev")
        assert tool_pairs(messages, tool_use_id(storage)) == {"dispatch": 1, "result": 0, "stray": 0}

    with rig("openai_realtime", TURNS, monkeypatch, tmp_path, anywhere=True) as r:
        asyncio.run(asyncio.wait_for(main(r), 60))


def test_a_cancelled_run_hands_the_result_to_a_fresh_agent_over_the_same_store(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The connection's other path: `agent.run` cancelled (a hung connection), its stop abandoned, and a fresh
    agent with a fresh model restores the history from the store. The result is ready before it connects."""
    storage = tmp_path / "sessions"

    async def main(r: Rig) -> None:
        lookup = Lookup(0.3)
        tools = DeviceTools([lookup.tool])
        manager = DurableFileSessionManager("s1", storage_dir=str(storage))

        def build() -> BidiAgent:
            return BidiAgent(
                model=make_model(r.settings),
                tools=tools.tools,
                hooks=tools.hooks,
                session_manager=manager,
                agent_id="ev",
            )

        old = build()
        run = asyncio.ensure_future(old.run(inputs=[Says(), *tools.inputs], outputs=list(tools.outputs)))
        assert await until(lookup.started.is_set)
        await finish(run)
        assert await until(lookup.finished.is_set), "the work went on without a connection"
        detach(manager, old)
        fresh = build()
        assert tool_pairs(fresh.messages, tool_use_id(storage)) == {"dispatch": 1, "result": 0, "stray": 0}
        run = asyncio.ensure_future(fresh.run(inputs=[*tools.inputs], outputs=list(tools.outputs)))
        try:
            assert await until(lambda: ANSWER in texts(stored_messages(storage, "s1", "ev"), "assistant"))
        finally:
            await finish(run)
        assert [c for c, _ in r.fake.results] == [2]
        check_store(storage, tool_use_id(storage))

    with rig("openai_realtime", TURNS, monkeypatch, tmp_path, anywhere=True) as r:
        asyncio.run(asyncio.wait_for(main(r), 60))


def test_through_the_daemons_connection(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Wired as the daemon wires it: `DeviceTools` streams beside the mic and the speaker in `Connection`, whose
    watch hears of the result sent on the new connection."""
    from edgevoice.daemon.connection import Connection

    storage = tmp_path / "sessions"

    async def fast(seconds: float) -> None:
        await asyncio.sleep(min(seconds, 0.05))

    async def main(r: Rig) -> None:
        lookup = Lookup()
        tools = DeviceTools([lookup.tool])
        manager = DurableFileSessionManager("s1", storage_dir=str(storage))

        async def build() -> BidiAgent:
            model = make_model(r.settings)
            return BidiAgent(model=model, tools=tools.tools, hooks=tools.hooks, session_manager=manager, agent_id="ev")

        fired: list[object] = []
        connection = Connection(
            build, inputs=[Says(), *tools.inputs], outputs=list(tools.outputs), fire=fired.append, sleep=fast
        )
        due: list[bool] = []
        tools.continuity.on_sent = lambda: (due.append(True), connection.response_due())
        task = asyncio.ensure_future(connection.run())
        try:
            assert await until(lookup.started.is_set)
            drop(r)
            assert await until(lambda: ANSWER in texts(stored_messages(storage, "s1", "ev"), "assistant"))
        finally:
            await finish(task)
        assert connection.reconnects == 1 and due == [True]
        assert [c for c, _ in r.fake.results] == [2]
        check_store(storage, tool_use_id(storage))

    with rig("openai_realtime", TURNS, monkeypatch, tmp_path, anywhere=True) as r:
        asyncio.run(asyncio.wait_for(main(r), 60))


def test_the_offline_fallback_records_the_result_and_the_cloud_answers_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The cloud drops mid-tool and the `local` model takes over: it cannot use a tool result, so the result is
    recorded there (once); the cloud model, back within `max_age_s`, is sent it and answers."""
    from edgevoice.models.local import LocalModel

    storage = tmp_path / "sessions"

    async def main(r: Rig) -> None:
        lookup = Lookup(0.3)
        tools = DeviceTools([lookup.tool])
        manager = DurableFileSessionManager("s1", storage_dir=str(storage))

        def build(model: Any) -> BidiAgent:
            return BidiAgent(model=model, tools=tools.tools, hooks=tools.hooks, session_manager=manager, agent_id="ev")

        agent = build(make_model(r.settings))
        run = asyncio.ensure_future(agent.run(inputs=[Says(), *tools.inputs], outputs=list(tools.outputs)))
        assert await until(lookup.started.is_set)
        drop(r)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(run, 10)
        detach(manager, agent)
        agent = build(LocalModel(pace_lead_s=None))
        run = asyncio.ensure_future(agent.run(inputs=[*tools.inputs], outputs=list(tools.outputs)))
        try:
            assert await until(lambda: tool_pairs(stored_messages(storage, "s1", "ev"), tool_use_id(storage))["result"])
            await asyncio.sleep(0.2)
        finally:
            await finish(run)
        assert r.fake.results == [] and list(tools.continuity.calls), "recorded offline, still owed to the cloud"
        detach(manager, agent)
        agent = build(make_model(r.settings))
        run = asyncio.ensure_future(agent.run(inputs=[*tools.inputs], outputs=list(tools.outputs)))
        try:
            assert await until(lambda: ANSWER in texts(stored_messages(storage, "s1", "ev"), "assistant"))
            # The transcript is stored before the answer's end reaches the continuity output: wait for it.
            assert await until(lambda: not tools.continuity.calls)
        finally:
            await finish(run)
        assert [c for c, _ in r.fake.results] == [2]
        check_store(storage, tool_use_id(storage))

    with rig("openai_realtime", TURNS, monkeypatch, tmp_path, anywhere=True) as r:
        asyncio.run(asyncio.wait_for(main(r), 60))


def test_a_stale_result_is_recorded_but_not_sent(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    storage = tmp_path / "sessions"

    async def main(r: Rig) -> None:
        lookup = Lookup(0.2)
        tools = DeviceTools([lookup.tool], max_age_s=0.0)
        manager = DurableFileSessionManager("s1", storage_dir=str(storage))
        agent = BidiAgent(
            model=make_model(r.settings), tools=tools.tools, hooks=tools.hooks, session_manager=manager, agent_id="ev"
        )
        run = asyncio.ensure_future(agent.run(inputs=[Says(), *tools.inputs], outputs=list(tools.outputs)))
        assert await until(lookup.started.is_set)
        drop(r)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(run, 10)
        assert await until(lookup.finished.is_set)
        await asyncio.sleep(0.05)
        run = asyncio.ensure_future(agent.run(inputs=[*tools.inputs], outputs=list(tools.outputs)))
        try:
            assert await until(lambda: not tools.continuity.calls)
            await asyncio.sleep(0.3)
        finally:
            await finish(run)
        assert r.fake.results == [], "a stale answer is not spoken"
        check_store(storage, tool_use_id(storage))

    with rig("openai_realtime", TURNS, monkeypatch, tmp_path, anywhere=True) as r:
        asyncio.run(asyncio.wait_for(main(r), 60))


@pytest.mark.parametrize("continuity", [True, False])
def test_strands_restart_after_the_result_was_handed_over(
    continuity: bool, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Strands' proactive restart (`restart_after_s`) between the result's send and its answer: Strands 1.62
    does not ask the new connection for the answer; continuity sends the result again after the restart."""
    storage = tmp_path / "sessions"

    async def main(r: Rig) -> None:
        lookup = Lookup(0.1)
        tools = DeviceTools([lookup.tool])
        manager = DurableFileSessionManager("s1", storage_dir=str(storage))
        model = make_model(r.settings)
        model.update_config(connection={"restart_after_s": 1})
        restarts: list[float] = []

        def once(event: BidiAfterConnectionRestartEvent) -> None:
            restarts.append(time.monotonic())
            model.update_config(connection={"restart_after_s": 0})  # one restart is enough

        agent = BidiAgent(
            model=model,
            tools=tools.tools if continuity else [lookup.tool],
            hooks=tools.hooks if continuity else [],
            session_manager=manager,
            agent_id="ev",
        )
        agent.add_hook(once, BidiAfterConnectionRestartEvent)
        inputs = [Says(), *tools.inputs] if continuity else [Says()]
        run = asyncio.ensure_future(agent.run(inputs=inputs, outputs=list(tools.outputs) if continuity else []))
        try:
            assert await until(lambda: bool(restarts), 15)
            answered = await until(lambda: ANSWER in texts(stored_messages(storage, "s1", "ev"), "assistant"), 3)
        finally:
            await finish(run)
        assert r.fake.seen.connections == 2
        assert [c for c, _ in r.fake.results] == ([1, 2] if continuity else [1])
        assert answered is continuity
        check_store(storage, tool_use_id(storage))

    with rig("openai_realtime", TURNS, monkeypatch, tmp_path, anywhere=True, openai=SlowFirstAnswer) as r:
        asyncio.run(asyncio.wait_for(main(r), 60))


def test_strands_restart_with_the_tool_still_running_delivers_it_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Strands 1.62 keeps running a tool across its own restart and sends the result once the new connection
    is up; continuity must not send it a second time."""
    storage = tmp_path / "sessions"

    async def main(r: Rig) -> None:
        lookup = Lookup(1.8)
        tools = DeviceTools([lookup.tool])
        manager = DurableFileSessionManager("s1", storage_dir=str(storage))
        model = make_model(r.settings)
        model.update_config(connection={"restart_after_s": 1})
        agent = BidiAgent(model=model, tools=tools.tools, hooks=tools.hooks, session_manager=manager, agent_id="ev")
        agent.add_hook(
            lambda e: model.update_config(connection={"restart_after_s": 0}), BidiAfterConnectionRestartEvent
        )
        run = asyncio.ensure_future(agent.run(inputs=[Says(), *tools.inputs], outputs=list(tools.outputs)))
        try:
            assert await until(lambda: ANSWER in texts(stored_messages(storage, "s1", "ev"), "assistant"), 15)
            await asyncio.sleep(0.5)
        finally:
            await finish(run)
        assert r.fake.seen.connections == 2
        assert [c for c, _ in r.fake.results] == [2]
        check_store(storage, tool_use_id(storage))

    with rig("openai_realtime", TURNS, monkeypatch, tmp_path, anywhere=True) as r:
        asyncio.run(asyncio.wait_for(main(r), 60))


def test_a_tool_past_its_timeout_gives_an_error_result_and_a_failure_too() -> None:
    continuity = ToolContinuity(timeout_s=0.2)

    @tool(name="stuck")
    async def stuck() -> str:
        """Never finishes."""
        await asyncio.sleep(30)
        return "never"

    @tool(name="broken")
    def broken() -> str:
        """Fails."""
        raise OSError("sensor unplugged")

    async def main() -> None:
        started = time.monotonic()
        result = await continuity.run(stuck, {"toolUseId": "t1", "name": "stuck", "input": {}}, {}, {})
        assert time.monotonic() - started < 2
        assert result["status"] == "error" and "did not finish within 0.2 s" in result["content"][0]["text"]
        result = await continuity.run(broken, {"toolUseId": "t2", "name": "broken", "input": {}}, {}, {})
        assert result["status"] == "error" and "sensor unplugged" in json.dumps(result["content"])

    asyncio.run(main())


def test_current_time_answers_the_local_date_and_time() -> None:
    from datetime import datetime, timedelta, timezone

    now = datetime(2026, 11, 29, 14, 5, tzinfo=timezone(timedelta(hours=1), "CET"))
    assert describe_time(now) == "Sunday 29 November 2026, 14:05 CET (UTC+01:00)"
    tools = DeviceTools(clock=lambda: now)
    [current_time] = [t for t in tools.tools if t.tool_name == "current_time"]
    assert "date and time" in current_time.tool_spec["description"]

    async def call() -> Any:
        use = {"toolUseId": "c1", "name": "current_time", "input": {}}
        return await tools.continuity.run(current_time.inner, use, {}, {})  # the wrapped @tool, run directly

    assert asyncio.run(call())["content"] == [{"text": "Sunday 29 November 2026, 14:05 CET (UTC+01:00)"}]
