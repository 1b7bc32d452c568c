"""The store cannot be used at start (read-only or full flash, a missing session.json on a full card):
the speaker still starts and talks, the session is held in memory, the manager says why, and what was held
lands once the flash works again, over nothing that was stored. Runs on a small tmpfs mounted by the test
(root only; skipped with the reason elsewhere), as tests/test_session_enospc.py does."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edgevoice.commands.demo import speak_to_raw
from edgevoice.config import SessionSettings
from edgevoice.session import DurableFileSessionManager, make_session_manager
from edgevoice.session.layout import session_dir
from tests.alsa import AsoundRc
from tests.talk import agent_for, converse, exchange
from tests.test_session_enospc import fill
from tests.tmpflash import read_only, small_tmpfs

SID = "kitchen"
EDGEVOICE = str(Path(sys.executable).parent / "edgevoice")


@pytest.fixture
def flash(tmp_path: Path) -> Iterator[Path]:
    yield from small_tmpfs(tmp_path)


def texts(messages: list[Any]) -> list[str]:
    return [" ".join(b.get("text", "") for b in m["content"]) for m in messages]


def on_disk(storage: Path) -> list[str]:
    mdir = session_dir(storage, SID) / "agents" / "agent_edgevoice" / "messages"
    n = len(list(mdir.iterdir()))
    return [texts([json.loads((mdir / f"message_{i}.json").read_bytes())["message"]])[0] for i in range(n)]


def talk_once(sm: DurableFileSessionManager, text: str) -> list[str]:
    async def main() -> list[str]:
        agent = agent_for(sm)
        await agent.start()
        try:
            await exchange(agent, text)
        finally:
            await agent.stop()
        return texts(agent.messages)

    return asyncio.run(asyncio.wait_for(main(), 60))


FIRST = ["my name is alice", "Nice to meet you, Alice."]
SECOND = ["what is my name", "Your name is Alice."]


@pytest.mark.parametrize("where", ["existing", "missing"])
def test_read_only_session_dir_at_start(flash: Path, where: str, caplog: pytest.LogCaptureFixture) -> None:
    storage = flash / "sessions"
    if where == "existing":
        converse(storage, SID, "my name is alice")
    read_only(flash, True)
    try:
        with caplog.at_level(logging.WARNING):
            sm = make_session_manager(SessionSettings(dir=str(storage), session_id=SID))
            said = talk_once(sm, "what is my name" if where == "existing" else "my name is alice")
        assert said == (FIRST + SECOND if where == "existing" else FIRST)
        assert sm.degraded and sm.storage_problem and "Read-only file system" in sm.storage_problem
        assert sm.pending_writes > 0 and sm.retry_pending() is False
        said_once = [r for r in caplog.records if r.name.startswith("edgevoice.session.held")]
        assert len(said_once) == 1, [r.getMessage() for r in said_once]  # said once, not per write
    finally:
        read_only(flash, False)
    assert sm.retry_pending() is True and not sm.degraded
    assert on_disk(storage) == (FIRST + SECOND if where == "existing" else FIRST)


@pytest.mark.parametrize("lost", ["session.json", "agent.json"])
def test_full_flash_and_a_missing_file_at_start(flash: Path, lost: str) -> None:
    storage = flash / "sessions"
    converse(storage, SID, "my name is alice")
    root = session_dir(storage, SID)
    (root / ("agents/agent_edgevoice/agent.json" if lost == "agent.json" else "session.json")).unlink()
    fill(flash / "filler")
    sm = DurableFileSessionManager(SID, storage_dir=str(storage))
    assert sm.scan_report.rewritten and sm.pending_writes > 0 and sm.degraded
    # The rebuilt file is held in memory and read back from there: the agent is not taken for new, its
    # messages are restored, and the next ones are numbered after them (not over them).
    assert talk_once(sm, "what is my name") == FIRST + SECOND
    (flash / "filler").unlink()
    assert sm.retry_pending() is True
    assert on_disk(storage) == FIRST + SECOND
    assert json.loads((root / lost if lost == "session.json" else root / "agents/agent_edgevoice" / lost).read_text())


def test_held_writes_are_named_at_exit(flash: Path, caplog: pytest.LogCaptureFixture) -> None:
    storage = flash / "sessions"
    converse(storage, SID, "my name is alice")
    read_only(flash, True)
    try:
        sm = DurableFileSessionManager(SID, storage_dir=str(storage))
        talk_once(sm, "what is my name")
        with caplog.at_level(logging.WARNING):
            lost = sm.close()
    finally:
        read_only(flash, False)
    assert sorted(Path(p).name for p in lost) == ["message_2.json", "message_3.json"]
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR and "at exit" in r.getMessage()]
    assert len(errors) == 1 and "2 write(s) held in memory are lost at exit" in errors[0]
    assert "message_2.json" in errors[0] and "what is my name" not in errors[0]  # names, never content


def test_the_daemon_starts_and_talks_on_a_read_only_flash(flash: Path, tmp_path: Path) -> None:
    raw = tmp_path / "mic.raw"
    frames = speak_to_raw("Hello.", "en-us", raw)
    home = tmp_path / "home"
    home.mkdir()
    alsa = AsoundRc(home).capture("mic", raw).playback("spk", tmp_path / "out.raw")
    alsa.path.write_text("".join(alsa._parts), encoding="utf-8")
    storage = flash / "sessions"
    storage.mkdir()
    cfg = tmp_path / "edgevoice.toml"
    cfg.write_text(
        f'[audio]\ncapture_device = "mic"\nplayback_device = "spk"\n[session]\ndir = "{storage}"\n'
        'session_id = "kitchen"\n'
    )
    read_only(flash, True)
    try:
        r = subprocess.run(
            [EDGEVOICE, "run", "--config", str(cfg), "--input-pace", "4", "--input-frames", str(frames)],
            capture_output=True, text=True, timeout=120, env=alsa.env(),
        )
    finally:
        read_only(flash, False)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out.raw").stat().st_size > 16000  # the answer was played
    assert "Traceback" not in r.stderr
    assert r.stderr.count("Read-only file system") == 1, r.stderr  # said once
    assert "write(s) held in memory are lost at exit" in r.stderr and "message_1.json" in r.stderr
    assert list(storage.iterdir()) == []


@pytest.mark.parametrize("bad", [True, False])
def test_read_only_flash_with_a_bad_file_or_a_gap(flash: Path, bad: bool) -> None:
    storage = flash / "sessions"
    converse(storage, SID, "my name is alice", "what is my name")
    mdir = session_dir(storage, SID) / "agents" / "agent_edgevoice" / "messages"
    if bad:
        (mdir / "message_1.json").write_bytes(b'{"trunc')  # cannot be quarantined: read-only
    else:
        (mdir / "message_1.json").unlink()  # a gap that cannot be closed: read-only
    kept = {p.name: p.read_bytes() for p in mdir.iterdir()}
    read_only(flash, True)
    try:
        sm = DurableFileSessionManager(SID, storage_dir=str(storage))
        said = talk_once(sm, "what time is it")
    finally:
        read_only(flash, False)
    assert said[:3] == ["my name is alice", "what is my name", "Your name is Alice."]
    assert sm.retry_pending() is True
    after = {p.name: p.read_bytes() for p in mdir.iterdir()}
    assert {k: after[k] for k in kept} == kept  # nothing stored was renamed over or replaced
    assert sorted(set(after) - set(kept)) == ["message_4.json", "message_5.json"]  # numbered after all of them
