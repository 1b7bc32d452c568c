"""Compatibility both ways: stock FileSessionManager and DurableFileSessionManager read each other's
directories, and stock S3SessionManager restores an uploaded copy of ours (moto on 127.0.0.1).
Agent state (key-value) and tool use/result messages come back with the conversation."""

from __future__ import annotations

import asyncio
import copy
import json
from pathlib import Path
from typing import Any

from strands.session.file_session_manager import FileSessionManager
from strands.session.s3_session_manager import S3SessionManager
from strands.types.content import Message

from edgevoice.session import DurableFileSessionManager
from edgevoice.session.layout import QUARANTINE, session_dir
from tests.s3server import REGION, boto_session, client, s3_server, upload_tree
from tests.talk import agent_for, exchange

SID = "kitchen"
AID = "edgevoice"
STATE = {"room": "kitchen", "volume": 7, "prefs": {"units": "metric", "names": ["alice", "bob"]}}
TOOL_TURN: list[Message] = [
    {"role": "user", "content": [{"text": "what is the weather"}]},
    {
        "role": "assistant",
        "content": [
            {"text": "Let me look."},
            {"toolUse": {"toolUseId": "tool-1", "name": "weather", "input": {"city": "Graz", "days": 2}}},
        ],
    },
    {
        "role": "user",
        "content": [{"toolResult": {"toolUseId": "tool-1", "status": "success", "content": [{"json": {"c": 21}}]}}],
    },
    {"role": "assistant", "content": [{"text": "It is 21 degrees in Graz."}]},
]


def write_conversation(manager: Any) -> tuple[list[Message], dict[str, Any]]:
    """Talk, set state, add a tool use/result exchange, talk again; returns messages and state."""

    async def main() -> tuple[list[Message], dict[str, Any]]:
        agent = agent_for(manager)
        for key, value in STATE.items():
            agent.state.set(key, value)
        await agent.start()
        try:
            await exchange(agent, "my name is alice")
            await agent._append_messages(*copy.deepcopy(TOOL_TURN))
            await exchange(agent, "what is my name")
        finally:
            await agent.stop()
        return copy.deepcopy(agent.messages), agent.state.get()

    return asyncio.run(main())


def content(messages: list[Message]) -> list[tuple[Any, ...]]:
    """What a restore must give back: role, content blocks and metadata, in order."""
    return [(m["role"], m["content"], m.get("metadata")) for m in messages]


def on_disk(storage: Path) -> list[dict[str, Any]]:
    mdir = session_dir(storage, SID) / "agents" / f"agent_{AID}" / "messages"
    files = sorted(mdir.glob("message_*.json"), key=lambda p: int(p.stem.split("_")[1]))
    return [json.loads(p.read_bytes()) for p in files]


def test_stock_directory_restores_under_durable_and_stays_readable(tmp_path: Path) -> None:
    written, state = write_conversation(FileSessionManager(SID, storage_dir=str(tmp_path)))
    assert len(written) == 8
    stock_view = agent_for(FileSessionManager(SID, storage_dir=str(tmp_path)))
    assert len(stock_view.messages) == 8  # stock stores its transcripts empty: compare with what it restores

    sm = DurableFileSessionManager(SID, storage_dir=str(tmp_path))
    ours = agent_for(sm)
    assert sm.scan_report.quarantined == [] and sm.scan_report.renumbered == 0
    assert content(ours.messages) == content(stock_view.messages)
    assert [r["message"]["content"] for r in on_disk(tmp_path)] == [m["content"] for m in ours.messages]
    assert ours.state.get() == state == STATE
    users = [m for m in ours.messages if m["role"] == "user"]
    assert content(users) == content([m for m in written if m["role"] == "user"])  # texts and the tool result
    assert content(ours.messages[2:6]) == content(TOOL_TURN)
    assert [m["metadata"]["custom"]["bidi"]["status"] for m in ours.messages if "metadata" in m] == ["pending"] * 2

    async def go_on() -> str:  # the migrated session goes on under our manager
        await ours.start()
        try:
            return await exchange(ours, "what time is it")
        finally:
            await ours.stop()

    assert asyncio.run(go_on()).startswith("It is ")
    again = agent_for(FileSessionManager(SID, storage_dir=str(tmp_path)))  # and stock still reads it
    assert content(again.messages) == content(ours.messages)
    assert len(again.messages) == 10 and again.state.get() == STATE


def test_durable_directory_restores_under_stock(tmp_path: Path) -> None:
    written, state = write_conversation(DurableFileSessionManager(SID, storage_dir=str(tmp_path)))
    assert len(written) == 8 and all(m["content"] for m in written)
    stock = agent_for(FileSessionManager(SID, storage_dir=str(tmp_path)))
    assert content(stock.messages) == content(written)
    assert stock.state.get() == state == STATE

    async def ask() -> str:
        await stock.start()
        try:
            return await exchange(stock, "what is my name")
        finally:
            await stock.stop()

    assert asyncio.run(ask()) == "Your name is Alice."  # the restored history is the real one


def test_uploaded_copy_restores_under_s3_session_manager(tmp_path: Path) -> None:
    written, state = write_conversation(DurableFileSessionManager(SID, storage_dir=str(tmp_path)))
    bucket, prefix = "edgevoice-sessions", "devices/pi-0001"
    with s3_server() as endpoint:
        s3 = client(endpoint)
        s3.create_bucket(Bucket=bucket)
        keys = upload_tree(s3, bucket, prefix, session_dir(tmp_path, SID), skip=(QUARANTINE,))
        assert f"{prefix}/session_{SID}/agents/agent_{AID}/messages/message_7.json" in keys
        sm = S3SessionManager(SID, bucket=bucket, prefix=prefix, boto_session=boto_session(),
                              region_name=REGION, endpoint_url=endpoint)
        restored = agent_for(sm)
        assert content(restored.messages) == content(written)
        assert restored.state.get() == state == STATE
