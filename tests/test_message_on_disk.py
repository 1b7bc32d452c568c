"""The store's promise, on every provider: a `MessageAddedEvent` is observed only once its message is on disk
(and a `MessageUpdatedEvent` only once the update is), for user, assistant, tool-use and tool-result messages.

Each provider's real model runs in a real BidiAgent against its fake on 127.0.0.1 (Nova Sonic on the wire,
through the real AWS CRT client), with `DurableFileSessionManager` on a temporary directory and the device's
tools (`DeviceTools`: the model calls `current_time`). The hook is passed to the agent's constructor, which
Strands 1.62 registers before the session manager: the order in which a hook would see a message first.
Inside each event it reads the message files back and looks for the message by its tracking id.

`local` cannot call tools: it hears a spoken question (espeak-ng), and its tool messages are the ones the
offline fallback records for a call that the cloud model made before its connection dropped.
The control at the end runs the same hook over Strands' stock FileSessionManager, which fails it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

import pytest
from strands.bidi import BidiAgent
from strands.hooks import HookProvider, HookRegistry, MessageAddedEvent, MessageUpdatedEvent
from strands.session.file_session_manager import FileSessionManager

from edgevoice.daemon.tools import DeviceTools
from edgevoice.models import make_model
from edgevoice.session import DurableFileSessionManager
from edgevoice.session.durable import detach
from tests.fakes.agent import Reader, speak, stored_messages
from tests.fakes.base import Turn
from tests.toolrig import Lookup, Rig, Says, drop, finish, message_files, rig, until

KINDS = {"user", "assistant", "toolUse", "toolResult"}


def kind(message: dict[str, Any]) -> str:
    blocks = message["content"]
    for key in ("toolUse", "toolResult"):
        if any(key in b for b in blocks):
            return key
    return str(message["role"])


class OnDisk(HookProvider):
    """Reads the store back inside every message event: the message must be there, as the event has it."""

    def __init__(self, storage: Path) -> None:
        self.storage = storage
        self.seen: dict[str, int] = {}  # kind -> events checked and found on disk
        self.updates = 0  # update events checked and found on disk
        self.events = 0  # every event, found or not
        self.missing: list[str] = []

    def register_hooks(self, registry: HookRegistry, **kwargs: Any) -> None:
        registry.add_callback(MessageAddedEvent, self.added)
        registry.add_callback(MessageUpdatedEvent, self.updated)

    def _on_disk(self, message: Any) -> bool:
        want = json.loads(json.dumps(message))  # as it is written: bytes and tuples become JSON
        for path in message_files(self.storage, "s1", "ev"):
            stored = json.loads(path.read_text())["message"]
            if stored.get("tracking_id") == want["tracking_id"]:
                return bool(stored == want)
        return False

    def added(self, event: MessageAddedEvent[Any]) -> None:
        self.events += 1
        what = kind(dict(event.message))
        if self._on_disk(event.message):
            self.seen[what] = self.seen.get(what, 0) + 1
        else:
            self.missing.append(f"added {what}: {json.dumps(event.message)[:120]}")

    def updated(self, event: MessageUpdatedEvent[Any]) -> None:
        self.events += 1
        if self._on_disk(event.message):
            self.updates += 1
        else:
            self.missing.append(f"updated: {json.dumps(event.message)[:120]}")


TIME_TURN = Turn(user="what time is it", assistant="it is five past two", tool=("current_time", {}))


@pytest.mark.parametrize("provider", ["openai_realtime", "gemini_live", "nova_sonic"])
def test_every_message_is_on_disk_when_a_hook_hears_of_it(
    provider: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    storage = tmp_path / "sessions"
    hook = OnDisk(storage)

    async def main(settings: Any, fake: Any) -> None:
        tools = DeviceTools()
        agent = BidiAgent(
            model=make_model(settings),
            tools=tools.tools,
            hooks=[hook, *tools.hooks],
            session_manager=DurableFileSessionManager("s1", storage_dir=str(storage)),
            agent_id="ev",
        )
        await asyncio.wait_for(agent.start(), 10)
        reader = Reader(agent)
        try:
            await speak(agent, 3200)
            assert await reader.wait(
                lambda x: fake.seen.turns_played >= 1 and "it is five past two" in x.transcripts("assistant")
            )
            assert await reader.wait(lambda x: bool(x.tool_result_messages()))
        finally:
            await asyncio.wait_for(agent.stop(), 10)
            await reader.cancel()
        result = json.dumps(fake.seen.tool_results)
        assert "UTC" in result, "the fake received current_time's answer"

    with rig(provider, [TIME_TURN], monkeypatch, tmp_path) as r:
        asyncio.run(asyncio.wait_for(main(r.settings, r.fake), 60))
    assert hook.missing == []
    assert set(hook.seen) == KINDS, hook.seen
    # The dispatch pair and the result pair: two of each tool message; transcripts are filled in by updates.
    assert hook.seen["toolUse"] == 2 and hook.seen["toolResult"] == 2
    assert hook.updates >= 2
    assert sum(hook.seen.values()) == len(stored_messages(storage, "s1", "ev"))


def local_session(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, manager_class: type[FileSessionManager]) -> OnDisk:
    """A cloud call in flight when its connection drops, then the offline model over the same store: the result
    recorded there, and one spoken turn ("what time is it") answered."""
    from edgevoice.models.local import LocalModel
    from tests.audiogen import speak as say
    from tests.audiogen import to_s16

    storage = tmp_path / "sessions"
    hook = OnDisk(storage)
    question = to_s16(say("What time is it?")) + bytes(16000 * 2)  # and a second of digital silence: turn end

    async def main(r: Rig) -> None:
        lookup = Lookup(0.3)
        tools = DeviceTools([lookup.tool])
        manager = manager_class("s1", storage_dir=str(storage))
        cloud = BidiAgent(
            model=make_model(r.settings), tools=tools.tools, hooks=tools.hooks, session_manager=manager, agent_id="ev"
        )
        run = asyncio.ensure_future(cloud.run(inputs=[Says(), *tools.inputs], outputs=list(tools.outputs)))
        assert await until(lookup.started.is_set)
        drop(r)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(run, 10)
        assert await until(lookup.finished.is_set)
        detach(manager, cloud)
        local = BidiAgent(
            model=LocalModel(pace_lead_s=None),
            tools=tools.tools,
            hooks=[hook, *tools.hooks],
            session_manager=manager,
            agent_id="ev",
        )
        run = asyncio.ensure_future(local.run(inputs=[*tools.inputs], outputs=list(tools.outputs)))
        try:
            assert await until(lambda: hook.events >= 2)  # the result pair, recorded for the cloud's call
            for i in range(0, len(question), 640):
                await local.send(_audio(question[i : i + 640]))
            # Added empty, then filled in: the user's transcript and the answer's.
            assert await until(lambda: hook.events >= 6, 20)
        finally:
            await finish(run)

    with rig("openai_realtime", [Turn(tool=("lookup", {"city": "Oslo"}))], monkeypatch, tmp_path) as r:
        asyncio.run(asyncio.wait_for(main(r), 60))
    return hook


def _audio(pcm: bytes) -> Any:
    from strands.bidi.types.media import AudioDelta

    return AudioDelta(format="pcm", source={"bytes": pcm})


def test_local_every_message_is_on_disk_when_a_hook_hears_of_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    hook = local_session(monkeypatch, tmp_path, DurableFileSessionManager)
    assert hook.missing == []
    assert set(hook.seen) == KINDS, hook.seen
    assert hook.seen["toolUse"] == 1 and hook.seen["toolResult"] == 1  # the pair recorded for the cloud's call
    stored = stored_messages(tmp_path / "sessions", "s1", "ev")
    assert any("time" in b.get("text", "").lower() for m in stored if m["role"] == "user" for b in m["content"])


def test_control_strands_stock_store_fails_the_same_hook(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The hook can tell: over Strands' FileSessionManager (registered after the constructor's hooks) it hears
    of each message before it is written."""
    hook = local_session(monkeypatch, tmp_path, FileSessionManager)
    assert any(m.startswith("added toolUse") for m in hook.missing)
    assert any(m.startswith("added user") for m in hook.missing)
    assert any(m.startswith("updated") for m in hook.missing)  # the stock store ignores updates altogether
