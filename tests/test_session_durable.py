"""DurableFileSessionManager with a real BidiAgent and the local model: layout, ordering, final
transcripts, one write per message, fsync, permissions, and the start-up scan on corrupt files."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from strands.bidi import BidiAgent
from strands.hooks import HookProvider, HookRegistry, MessageAddedEvent
from strands.session.file_session_manager import FileSessionManager

from edgevoice.config import ConfigError
from edgevoice.session import DurableFileSessionManager, atomic
from edgevoice.session.layout import session_dir
from tests import talk
from tests.talk import exchange

SID = "kitchen"
AID = "edgevoice"


def agent_for(sm: Any, hooks: list[HookProvider] | None = None) -> BidiAgent:
    return talk.agent_for(sm, hooks=hooks)


def converse(storage: Path, lines: list[str], manager: type = DurableFileSessionManager, **kw: Any) -> BidiAgent:
    return talk.converse(storage, SID, *lines, manager=manager, **kw)


def messages_dir(storage: Path) -> Path:
    return session_dir(storage, SID) / "agents" / f"agent_{AID}" / "messages"


def stored(storage: Path) -> list[dict[str, Any]]:
    d = messages_dir(storage)
    files = sorted(d.glob("message_*.json"), key=lambda p: int(p.stem.split("_")[1]))
    return [json.loads(p.read_text()) for p in files]


def texts(records: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(r["message"]["role"], " ".join(b.get("text", "") for b in r["message"]["content"])) for r in records]


def test_layout_final_transcripts_and_stock_reads_it(tmp_path: Path) -> None:
    converse(tmp_path, ["my name is alice", "what is my name"])
    got = texts(stored(tmp_path))
    assert got == [
        ("user", "my name is alice"),
        ("assistant", "Nice to meet you, Alice."),
        ("user", "what is my name"),
        ("assistant", "Your name is Alice."),
    ]
    for rec in stored(tmp_path):
        assert rec["message"]["content"], "a transcript was stored empty"
    root = session_dir(tmp_path, SID)
    assert (root / "session.json").is_file() and (root / "agents" / f"agent_{AID}" / "agent.json").is_file()

    # Stock FileSessionManager restores what we wrote.
    agent = agent_for(FileSessionManager(SID, storage_dir=str(tmp_path)))
    assert [(m["role"], m["content"][0]["text"]) for m in agent.messages] == got


def test_a_constructor_hook_finds_the_message_on_disk(tmp_path: Path) -> None:
    seen: list[bool] = []

    class Peek(HookProvider):
        def register_hooks(self, registry: HookRegistry, **kwargs: Any) -> None:
            registry.add_callback(MessageAddedEvent, self.on_added)

        def on_added(self, event: MessageAddedEvent[Any]) -> None:
            n = len(event.agent.messages) - 1
            seen.append((messages_dir(tmp_path) / f"message_{n}.json").is_file())

    converse(tmp_path, ["hello"], hooks=[Peek()])
    assert seen == [True, True]


def test_restores_a_stock_directory_and_keeps_state(tmp_path: Path) -> None:
    async def stock() -> None:
        agent = agent_for(FileSessionManager(SID, storage_dir=str(tmp_path)))
        agent.state.set("room", "kitchen")
        await agent.start()
        await exchange(agent, "my name is bob")
        await agent.stop()

    asyncio.run(stock())
    agent = agent_for(DurableFileSessionManager(SID, storage_dir=str(tmp_path)))
    assert agent.state.get("room") == "kitchen"
    assert [m["role"] for m in agent.messages] == ["user", "assistant"]
    assert agent.messages[0]["content"][0]["text"] == "my name is bob"


def test_one_write_per_message_and_two_fsyncs_per_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    converse(tmp_path, ["hello"])  # the session and agent exist now
    writes: list[str] = []
    fsyncs: list[int] = []
    real_write, real_fsync = atomic.write_bytes, os.fsync

    def counting_write(path: Any, data: bytes) -> None:
        writes.append(Path(path).name)
        real_write(path, data)

    monkeypatch.setattr("edgevoice.session.held.write_bytes", counting_write)
    monkeypatch.setattr(os, "fsync", lambda fd: (fsyncs.append(fd), real_fsync(fd))[1])
    converse(tmp_path, ["what time is it"])
    # A text turn: the user message (1 write), the assistant transcript added (1) and completed (1).
    # agent.json did not change, so it was not written; nothing was read back.
    assert sorted(writes) == ["message_2.json", "message_3.json", "message_3.json"]
    assert len(fsyncs) == 2 * len(writes)  # the file, then its directory


def test_files_are_private(tmp_path: Path) -> None:
    converse(tmp_path / "s", ["hello"])
    for dirpath, dirs, files in os.walk(tmp_path / "s"):
        for d in dirs:
            assert stat.S_IMODE(os.stat(os.path.join(dirpath, d)).st_mode) == 0o700, d
        for f in files:
            assert stat.S_IMODE(os.stat(os.path.join(dirpath, f)).st_mode) == 0o600, f


@pytest.mark.parametrize("bad", ["../x", "a/b", "", "x" * 200])
def test_session_id_is_validated(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ConfigError):
        DurableFileSessionManager(bad, storage_dir=str(tmp_path))


CORRUPTIONS = {
    "truncated": lambda raw: raw[: len(raw) // 2],
    "zero_length": lambda raw: b"",
    "garbage": lambda raw: os.urandom(64),
    "wrong_schema": lambda raw: json.dumps({"hello": "world"}).encode(),
}


@pytest.fixture(scope="module")
def six_messages(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("six")
    converse(base, ["my name is alice", "hello", "what is my name"])
    return base


def copy_tree(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize("kind", sorted(CORRUPTIONS))
@pytest.mark.parametrize("where", ["session", "agent", "message_0", "message_2", "message_5"])
def test_corrupt_file_is_quarantined_and_the_rest_restores(
    six_messages: Path, tmp_path: Path, kind: str, where: str
) -> None:
    storage = copy_tree(six_messages, tmp_path / "s")
    root = session_dir(storage, SID)
    agent_dir = root / "agents" / f"agent_{AID}"
    target = {
        "session": root / "session.json",
        "agent": agent_dir / "agent.json",
    }.get(where, agent_dir / "messages" / f"{where}.json")
    before = texts(stored(storage))
    target.write_bytes(CORRUPTIONS[kind](target.read_bytes()))
    (agent_dir / "messages" / ".strands_x.tmp").write_text("half")  # a stale temp file too

    sm = DurableFileSessionManager(SID, storage_dir=str(storage))
    agent = agent_for(sm)
    report = sm.scan_report
    assert [r for r, _ in report.quarantined] == [target.relative_to(root).as_posix()]
    assert report.temp_removed == 1
    quarantined = root / "quarantine" / target.relative_to(root).as_posix().replace("/", "__")
    assert quarantined.exists() and quarantined.with_name(quarantined.name + ".reason").read_text().strip()

    expected = before
    if where.startswith("message_"):
        idx = int(where.split("_")[1])
        expected = before[:idx] + before[idx + 1 :]
    restored = [(m["role"], " ".join(b.get("text", "") for b in m["content"])) for m in agent.messages]
    assert restored == expected
    assert texts(stored(storage)) == expected  # renumbered on disk without a gap
    assert [r["message_id"] for r in stored(storage)] == list(range(len(expected)))

    # The conversation goes on from there, and stock Strands can read the repaired directory.
    async def more() -> None:
        await agent.start()
        await exchange(agent, "thank you")
        await agent.stop()

    asyncio.run(more())
    assert len(stored(storage)) == len(expected) + 2
    stock = agent_for(FileSessionManager(SID, storage_dir=str(storage)))
    assert len(stock.messages) == len(expected) + 2


def test_a_clean_directory_reports_nothing(six_messages: Path, tmp_path: Path) -> None:
    storage = copy_tree(six_messages, tmp_path / "s")
    sm = DurableFileSessionManager(SID, storage_dir=str(storage))
    assert sm.scan_report.clean
    assert len(agent_for(sm).messages) == 6
