"""A full (ENOSPC) or read-only (EROFS) flash: the agent keeps talking, nothing stored is lost or
touched, and the held writes land once the flash takes them again. Runs on a small tmpfs mounted
by the test (root only; skipped with the reason elsewhere)."""

from __future__ import annotations

import asyncio
import copy
import errno
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from strands.bidi import BidiAgent

from edgevoice.models.local import LocalModel
from edgevoice.session import DurableFileSessionManager
from edgevoice.session.layout import is_temp, session_dir
from tests.talk import exchange
from tests.tmpflash import read_only, small_tmpfs

SID = "kitchen"
AID = "edgevoice"


@pytest.fixture
def flash(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs."""
    yield from small_tmpfs(tmp_path)


def agent_for(storage: Path) -> tuple[BidiAgent, DurableFileSessionManager]:
    sm = DurableFileSessionManager(SID, storage_dir=str(storage))
    return BidiAgent(model=LocalModel(pace_lead_s=None), session_manager=sm, agent_id=AID), sm


def texts(messages: list[Any]) -> list[tuple[str, str]]:
    return [(m["role"], " ".join(b.get("text", "") for b in m["content"])) for m in messages]


def stored_files(storage: Path) -> dict[str, bytes]:
    root = session_dir(storage, SID)
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def fill(path: Path) -> None:
    """Write until the filesystem is full."""
    with open(path, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 4096)
                f.flush()
        except OSError as e:
            assert e.errno == errno.ENOSPC
    assert os.statvfs(path.parent).f_bavail == 0


def outage_records(caplog: pytest.LogCaptureFixture, storage: Path) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and str(storage) in r.getMessage()]


def restored(storage: Path) -> BidiAgent:
    return agent_for(storage)[0]


def test_disk_full_the_agent_keeps_talking_and_writes_resume(flash: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> tuple[list[Any], dict[str, bytes]]:
        agent, sm = agent_for(flash)
        await agent.start()
        try:
            await exchange(agent, "my name is alice")
            before = stored_files(flash)
            fill(flash / "filler")
            caplog.clear()
            with caplog.at_level(logging.WARNING):
                agent.state.set("room", "kitchen")
                await exchange(agent, "what is my name")
                await exchange(agent, "what time is it")
                records = outage_records(caplog, flash)
            assert len(records) == 1, records  # logged once, with the path
            assert "No space left on device" in records[0]
            assert sm.pending_writes > 0
            during = stored_files(flash)
            assert {k: v for k, v in during.items() if k in before} == before  # nothing stored was touched
            assert not [name for name in during if is_temp(Path(name).name)]  # no half-written temp file left

            (flash / "filler").unlink()
            await exchange(agent, "tell me a joke")  # the next write flushes everything held
            assert sm.pending_writes == 0
            return copy.deepcopy(agent.messages), before
        finally:
            await agent.stop()

    messages, before = asyncio.run(main())
    assert len(messages) == 8
    after = stored_files(flash)
    earlier = [k for k in before if k.startswith(f"agents/agent_{AID}/messages/")]
    assert len(earlier) == 2 and {k: after[k] for k in earlier} == {k: before[k] for k in earlier}
    back = restored(flash)
    assert texts(back.messages) == texts(messages)
    assert all(text for _, text in texts(back.messages))  # final transcripts, none stored empty
    assert back.state.get("room") == "kitchen"


def test_read_only_flash_then_retry_pending(flash: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> list[Any]:
        agent, sm = agent_for(flash)
        await agent.start()
        try:
            await exchange(agent, "my name is bob")
            before = stored_files(flash)
            read_only(flash, True)
            try:
                caplog.clear()
                with caplog.at_level(logging.WARNING):
                    await exchange(agent, "what is my name")
                    await exchange(agent, "what day is it")
                    records = outage_records(caplog, flash)
                assert len(records) == 1 and "Read-only file system" in records[0], records
                assert sm.pending_writes > 0
                assert sm.retry_pending() is False  # still read-only
            finally:
                read_only(flash, False)
            assert stored_files(flash) == before
            assert sm.retry_pending() is True
            assert sm.pending_writes == 0
            return copy.deepcopy(agent.messages)
        finally:
            await agent.stop()

    messages = asyncio.run(main())
    assert len(messages) == 6
    assert texts(restored(flash).messages) == texts(messages)


def test_a_new_session_starts_on_read_only_flash(flash: Path) -> None:
    async def main() -> DurableFileSessionManager:
        agent, sm = agent_for(flash)
        await agent.start()
        try:
            await exchange(agent, "my name is carol")
        finally:
            await agent.stop()
        return sm

    read_only(flash, True)
    try:
        sm = asyncio.run(main())
        assert sm.pending_writes > 0
    finally:
        read_only(flash, False)
    assert sm.retry_pending() is True
    assert texts(restored(flash).messages) == [("user", "my name is carol"), ("assistant", "Nice to meet you, Carol.")]
