"""The start-up scan's repairs never destroy what they should keep (issue 10, part 2).

Duplicate and zero-padded message numbers, bad files that cannot be moved aside, directories where
files belong (and the reverse), symlinked directories, and the repairs under a plain `strands.Agent`
as well as a `BidiAgent`. Session files are built by hand; the restore is the real one.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from collections.abc import AsyncGenerator, AsyncIterable
from pathlib import Path
from typing import Any

import pytest
from strands import Agent
from strands.models.model import Model

from edgevoice.session import DurableFileSessionManager
from edgevoice.session.layout import session_dir
from tests import talk

SID = "kitchen"
AID = "edgevoice"
EDGEVOICE = str(Path(sys.executable).parent / "edgevoice")


class NoModel(Model):
    """A model a plain Agent can be built with; never invoked (the restore runs in the constructor)."""

    def update_config(self, **model_config: Any) -> None:
        pass

    def get_config(self) -> Any:
        return {}

    def structured_output(self, *args: Any, **kwargs: Any) -> AsyncGenerator[dict[str, Any], None]:
        raise NotImplementedError

    def stream(self, *args: Any, **kwargs: Any) -> AsyncIterable[Any]:
        raise NotImplementedError


def plain_agent(storage: Path) -> tuple[Agent, DurableFileSessionManager]:
    sm = DurableFileSessionManager(SID, storage_dir=str(storage))
    return Agent(model=NoModel(), session_manager=sm, agent_id=AID, callback_handler=None), sm


def bidi_agent(storage: Path) -> tuple[Any, DurableFileSessionManager]:
    sm = DurableFileSessionManager(SID, storage_dir=str(storage))
    return talk.agent_for(sm), sm


AGENTS = {"plain": plain_agent, "bidi": bidi_agent}


def agent_dir(storage: Path) -> Path:
    return session_dir(storage, SID) / "agents" / f"agent_{AID}"


def mdir(storage: Path) -> Path:
    return agent_dir(storage) / "messages"


def record(i: int, text: str, role: str = "user") -> dict[str, Any]:
    return {
        "message": {"role": role, "content": [{"text": text}]},
        "message_id": i,
        "redact_message": None,
        "created_at": "2026-11-29T10:00:00+00:00",
        "updated_at": "2026-11-29T10:00:00+00:00",
    }


def make_store(storage: Path, files: dict[str, dict[str, Any] | bytes], *, agent: bool = True) -> None:
    """A session whose messages directory holds `files` (name -> record or raw bytes)."""
    root = session_dir(storage, SID)
    mdir(storage).mkdir(parents=True)
    (root / "session.json").write_text(json.dumps({"session_id": SID, "session_type": "AGENT"}))
    if agent:
        (agent_dir(storage) / "agent.json").write_text(
            json.dumps({"agent_id": AID, "state": {"room": "hall"}, "conversation_manager_state": {}})
        )
    for name, content in files.items():
        raw = content if isinstance(content, bytes) else json.dumps(content).encode()
        (mdir(storage) / name).write_bytes(raw)


def texts(messages: list[Any]) -> list[str]:
    return [" ".join(b.get("text", "") for b in m["content"]) for m in messages]


def on_disk(storage: Path) -> dict[str, str]:
    """message file name -> its text (or "<bad>" when it is not a message)."""
    out = {}
    for p in sorted(mdir(storage).iterdir()):
        try:
            out[p.name] = texts([json.loads(p.read_bytes())["message"]])[0]
        except (ValueError, KeyError, TypeError, IsADirectoryError):
            out[p.name] = "<bad>"
    return out


# --- duplicate and padded numbers ------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(AGENTS))
def test_a_duplicate_index_keeps_both_messages(tmp_path: Path, kind: str) -> None:
    make_store(
        tmp_path,
        {
            "message_0.json": record(0, "zero"),
            "message_1.json": record(1, "one"),
            "message_01.json": record(1, "one again"),
            "message_2.json": record(2, "two"),
            "message_3.json": record(3, "three"),
        },
    )
    agent, sm = AGENTS[kind](tmp_path)
    # Equal numbers: the canonical name first, then by name; nothing set aside, nothing lost.
    assert texts(agent.messages) == ["zero", "one", "one again", "two", "three"]
    assert sm.scan_report.quarantined == []
    assert on_disk(tmp_path) == {
        "message_0.json": "zero",
        "message_1.json": "one",
        "message_2.json": "one again",
        "message_3.json": "two",
        "message_4.json": "three",
    }
    ids = [json.loads((mdir(tmp_path) / f"message_{i}.json").read_bytes())["message_id"] for i in range(5)]
    assert ids == [0, 1, 2, 3, 4]


def test_padded_numbers_and_gaps_keep_their_order(tmp_path: Path) -> None:
    make_store(
        tmp_path,
        {
            "message_007.json": record(7, "seven"),
            "message_2.json": record(2, "two"),
            "message_7.json": record(7, "seven canonical"),
            "message_0002.json": record(2, "two padded"),
            "message_10.json": record(10, "ten"),
        },
    )
    agent, _ = bidi_agent(tmp_path)
    want = ["two", "two padded", "seven canonical", "seven", "ten"]
    assert texts(agent.messages) == want
    assert list(on_disk(tmp_path).values()) == [want[i] for i in (0, 1, 2, 3, 4)]
    assert sorted(on_disk(tmp_path)) == [f"message_{i}.json" for i in range(5)]
    # A second scan finds nothing left to do: the repair is complete and stable.
    again = DurableFileSessionManager(SID, storage_dir=str(tmp_path))
    assert again.scan_report.clean


def test_a_hard_link_left_by_an_interrupted_rename_is_not_a_second_message(tmp_path: Path) -> None:
    # A crash between link() and unlink() of a no-replace rename leaves one file under two names.
    make_store(tmp_path, {"message_0.json": record(0, "zero"), "message_2.json": record(2, "two")})
    os.link(mdir(tmp_path) / "message_2.json", mdir(tmp_path) / "message_1.json")
    agent, _ = bidi_agent(tmp_path)
    assert texts(agent.messages) == ["zero", "two"]
    assert on_disk(tmp_path) == {"message_0.json": "zero", "message_1.json": "two"}


# --- a bad file that cannot be moved aside ---------------------------------------------------------


def test_a_bad_file_that_cannot_be_quarantined_is_never_renamed_over(tmp_path: Path) -> None:
    make_store(
        tmp_path,
        {"message_0.json": record(0, "zero"), "message_1.json": b'{"trunc', "message_2.json": record(2, "two")},
    )
    (session_dir(tmp_path, SID) / "quarantine").write_text("a file where the quarantine directory goes")
    agent, sm = bidi_agent(tmp_path)
    assert texts(agent.messages) == ["zero", "two"]
    assert [p for p, _ in sm.scan_report.skipped] == ["agents/agent_edgevoice/messages/message_1.json"]
    # The bad file keeps its slot; nothing was renamed onto it.
    assert on_disk(tmp_path) == {"message_0.json": "zero", "message_1.json": "<bad>", "message_2.json": "two"}
    assert (mdir(tmp_path) / "message_1.json").read_bytes() == b'{"trunc'


# --- plain Agent ------------------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["missing", "corrupt"])
@pytest.mark.parametrize("kind", sorted(AGENTS))
def test_a_rebuilt_agent_json_restores_under_both_agent_kinds(tmp_path: Path, kind: str, damage: str) -> None:
    make_store(tmp_path, {"message_0.json": record(0, "zero"), "message_1.json": record(1, "one", "assistant")})
    path = agent_dir(tmp_path) / "agent.json"
    if damage == "missing":
        path.unlink()
    else:
        path.write_bytes(b"\x00garbage")
    agent, sm = AGENTS[kind](tmp_path)
    assert texts(agent.messages) == ["zero", "one"]
    assert sm.scan_report.rewritten == ["agents/agent_edgevoice/agent.json"]


def test_a_plain_agent_restores_a_session_a_bidi_agent_wrote(tmp_path: Path) -> None:
    talk.converse(tmp_path, SID, "my name is alice")
    agent, _ = plain_agent(tmp_path)
    assert texts(agent.messages) == ["my name is alice", "Nice to meet you, Alice."]


# --- the wrong kind of entry, and unreadable directories -----------------------------------------------


def test_agents_is_a_file(tmp_path: Path) -> None:
    make_store(tmp_path, {})
    agents = session_dir(tmp_path, SID) / "agents"
    import shutil

    shutil.rmtree(agents)
    agents.write_text("not a directory")
    agent, sm = bidi_agent(tmp_path)
    assert agent.messages == []
    assert [p for p, _ in sm.scan_report.quarantined] == ["agents"]
    assert (session_dir(tmp_path, SID) / "quarantine" / "agents").read_text() == "not a directory"
    assert agents.is_dir()


def test_messages_is_a_file_and_a_message_is_a_directory(tmp_path: Path) -> None:
    make_store(tmp_path, {"message_0.json": record(0, "zero"), "message_2.json": record(2, "two")})
    (mdir(tmp_path) / "message_1.json").mkdir()
    (mdir(tmp_path) / "message_1.json" / "inside").write_text("kept")
    agent, sm = bidi_agent(tmp_path)
    assert texts(agent.messages) == ["zero", "two"]
    q = session_dir(tmp_path, SID) / "quarantine"
    assert (q / "agents__agent_edgevoice__messages__message_1.json" / "inside").read_text() == "kept"
    assert sm.scan_report.skipped == []


def test_an_unreadable_messages_directory_does_not_stop_the_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Root ignores permission bits, so the failing card is simulated: listing this directory fails.
    make_store(tmp_path, {"message_0.json": record(0, "zero")})
    bad = str(mdir(tmp_path))
    real_scandir = os.scandir

    def failing_scandir(path: Any = ".") -> Any:
        if os.fspath(path) == bad:
            raise OSError(errno.EIO, os.strerror(errno.EIO), bad)
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", failing_scandir)
    agent, sm = bidi_agent(tmp_path)
    assert agent.messages == []
    assert sm.storage_problem is not None and "messages" in sm.storage_problem
    # Nothing is written into a directory whose contents are unknown: a write there could replace
    # a message the scan could not see.
    monkeypatch.setattr(os, "scandir", real_scandir)
    assert on_disk(tmp_path) == {"message_0.json": "zero"}


# --- symlinks and the one validator -------------------------------------------------------------------


@pytest.mark.parametrize("which", ["messages", "agent", "agents"])
def test_symlinked_directories_are_quarantined_and_the_views_agree(tmp_path: Path, which: str) -> None:
    storage = tmp_path / "s"
    elsewhere = tmp_path / "elsewhere"
    make_store(storage, {"message_0.json": record(0, "zero")})
    target = {"messages": mdir(storage), "agent": agent_dir(storage), "agents": agent_dir(storage).parent}[which]
    target.rename(elsewhere)
    target.symlink_to(elsewhere, target_is_directory=True)
    cfg = tmp_path / "e.toml"
    cfg.write_text(f'[session]\ndir = "{storage}"\nsession_id = "{SID}"\n')

    def export() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [EDGEVOICE, "sessions", "--config", str(cfg), "export", SID], capture_output=True, text=True, timeout=60
        )

    before = export()
    assert before.returncode == 0 and before.stdout == ""  # the view does not follow it...
    assert "a symlink (not followed)" in before.stderr
    agent, sm = bidi_agent(storage)
    assert agent.messages == []  # ...and neither does the daemon
    rel = target.relative_to(session_dir(storage, SID)).as_posix()
    assert sm.scan_report.quarantined == [(rel, "a symlink (not followed)")]
    assert [p.name for p in elsewhere.rglob("message_*.json")] == ["message_0.json"]  # the target is untouched
    assert not target.is_symlink()


def test_the_scan_and_the_viewer_judge_a_message_alike(tmp_path: Path) -> None:
    from edgevoice.session.inspect import read_conversation

    bool_id = record(1, "one")
    bool_id["message_id"] = True
    make_store(tmp_path, {"message_0.json": record(0, "zero"), "message_1.json": bool_id})
    seen = read_conversation(tmp_path, SID)
    assert [p.path.rsplit("/", 1)[1] for p in seen.problems] == ["message_1.json"]
    _, sm = bidi_agent(tmp_path)
    assert [p.rsplit("/", 1)[1] for p, _ in sm.scan_report.quarantined] == ["message_1.json"]
    assert sm.scan_report.quarantined[0][1] == seen.problems[0].reason


def test_the_viewer_does_not_import_strands(tmp_path: Path) -> None:
    make_store(tmp_path, {"message_0.json": record(0, "zero")})
    code = (
        "import sys; from edgevoice.session.inspect import read_conversation;"
        f"read_conversation({str(tmp_path)!r}, {SID!r});"
        "assert not [m for m in sys.modules if m.startswith('strands')], 'strands imported'"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def test_messages_is_a_file(tmp_path: Path) -> None:
    make_store(tmp_path, {})
    mdir(tmp_path).rmdir()
    mdir(tmp_path).write_text("not a directory")
    agent, sm = bidi_agent(tmp_path)
    assert agent.messages == [] and not sm.degraded
    assert [p for p, _ in sm.scan_report.quarantined] == ["agents/agent_edgevoice/messages"]
    assert mdir(tmp_path).is_dir()


def test_a_symlinked_session_is_refused_by_the_daemon_and_the_views(tmp_path: Path) -> None:
    from edgevoice.session.inspect import UnknownSession, list_sessions, read_conversation

    real = tmp_path / "real"
    make_store(real, {"message_0.json": record(0, "zero")})
    storage = tmp_path / "s"
    storage.mkdir()
    session_dir(storage, SID).symlink_to(session_dir(real, SID), target_is_directory=True)
    before = sorted((p.relative_to(real).as_posix(), p.read_bytes()) for p in real.rglob("*") if p.is_file())
    assert list_sessions(storage) == []
    with pytest.raises(UnknownSession):
        read_conversation(storage, SID)
    agent, sm = bidi_agent(storage)
    assert agent.messages == [] and sm.degraded  # the conversation is held in memory
    after = sorted((p.relative_to(real).as_posix(), p.read_bytes()) for p in real.rglob("*") if p.is_file())
    assert after == before  # nothing written through the link


@pytest.mark.parametrize("mechanism", ["renameat2", "link", "check"])
def test_no_replace_rename_on_every_fallback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mechanism: str) -> None:
    from edgevoice.session import atomic

    if mechanism != "renameat2":
        monkeypatch.setattr(atomic, "_renameat2", None)  # a C library or filesystem without it
    if mechanism == "check":

        def no_links(*args: Any, **kwargs: Any) -> None:
            raise OSError(errno.EPERM, "links not supported (FAT)")

        monkeypatch.setattr(os, "link", no_links)
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_text("a")
    b.write_text("b")
    with pytest.raises(FileExistsError):
        atomic.rename_noreplace(a, b)
    assert (a.read_text(), b.read_text()) == ("a", "b")
    b.unlink()
    atomic.rename_noreplace(a, b)
    assert not a.exists() and b.read_text() == "a"
    # And the whole repair with it.
    make_store(
        tmp_path / "s",
        {"message_1.json": record(1, "one"), "message_01.json": record(1, "one b"), "message_2.json": record(2, "two")},
    )
    agent, _ = bidi_agent(tmp_path / "s")
    assert texts(agent.messages) == ["one", "one b", "two"]
    assert on_disk(tmp_path / "s") == {"message_0.json": "one", "message_1.json": "one b", "message_2.json": "two"}


@pytest.mark.parametrize("bad", ["agent.json", "session.json"])
def test_a_bad_agent_or_session_file_left_in_place_keeps_the_conversation(tmp_path: Path, bad: str) -> None:
    import asyncio

    make_store(tmp_path, {"message_0.json": record(0, "my name is alice"), "message_1.json": record(1, "hi")})
    path = agent_dir(tmp_path) / "agent.json" if bad == "agent.json" else session_dir(tmp_path, SID) / "session.json"
    path.write_bytes(b"\x00garbage")
    (session_dir(tmp_path, SID) / "quarantine").write_text("a file where the quarantine directory goes")
    kept = {p.name: p.read_bytes() for p in mdir(tmp_path).iterdir()}

    async def main() -> Any:
        agent, sm = bidi_agent(tmp_path)
        assert texts(agent.messages) == ["my name is alice", "hi"]  # not taken for a new agent
        await agent.start()
        try:
            await talk.exchange(agent, "what is my name")
        finally:
            await agent.stop()
        return sm

    sm = asyncio.run(asyncio.wait_for(main(), 60))
    assert path.read_bytes() == b"\x00garbage"  # never written over
    assert sm.degraded and "could not move aside" in (sm.storage_problem or "")
    after = {p.name: p.read_bytes() for p in mdir(tmp_path).iterdir()}
    assert {k: after[k] for k in kept} == kept  # the new messages went after the old ones
    assert sorted(set(after) - set(kept)) == ["message_2.json", "message_3.json"]
