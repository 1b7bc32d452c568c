"""`edgevoice sessions list | show | export | reset` through the installed console script.

Sessions are written by a real BidiAgent (local model) through the durable store, or by stock
FileSessionManager, or damaged by hand for the corrupt cases.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import stat
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from strands.session.file_session_manager import FileSessionManager
from strands.types.session import SessionAgent, SessionMessage

from edgevoice.config import SessionSettings
from edgevoice.session import DurableFileSessionManager
from edgevoice.session.current import CURRENT_FILE, current_session_id, new_session_id, read_current, set_current
from edgevoice.session.layout import session_dir
from tests import talk
from tests.synckit import mark_synced

EDGEVOICE = str(Path(sys.executable).parent / "edgevoice")
MESSAGES = Path("agents/agent_edgevoice/messages")


def converse(storage: Path, session_id: str, *texts: str, state: dict[str, int] | None = None) -> None:
    talk.converse(storage, session_id, *texts, state=state)


def tool_session(storage: Path) -> None:
    """A tool exchange, written through stock FileSessionManager's repository API."""
    sm = FileSessionManager("tools", storage_dir=str(storage))
    sm.create_agent("tools", SessionAgent(agent_id="edgevoice", state={}, conversation_manager_state={}))
    use = {"toolUse": {"toolUseId": "t1", "name": "get_time", "input": {"zone": "UTC"}}}
    result = {"toolResult": {"toolUseId": "t1", "status": "success", "content": [{"text": "10:45"}]}}
    for i, (role, content) in enumerate(
        [
            ("user", [{"text": "what time is it"}]),
            ("assistant", [use]),
            ("user", [result]),
            ("assistant", [{"text": "It is 10:45."}]),
        ]
    ):
        sm.create_message("tools", "edgevoice", SessionMessage({"role": role, "content": content}, i))


@pytest.fixture(scope="session")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    storage = tmp_path_factory.mktemp("sessions_cli") / "sessions"
    converse(storage, "default", "my name is Bob", "what is my name", state={"volume": 7})
    converse(storage, "kitchen", "call me Max")
    tool_session(storage)
    return storage


@pytest.fixture
def store(template: Path, tmp_path: Path) -> Path:
    storage = tmp_path / "sessions"
    shutil.copytree(template, storage)
    return storage


def config_for(tmp_path: Path, storage: Path, session_id: str = "default") -> Path:
    p = tmp_path / "edgevoice.toml"
    p.write_text(f'[session]\ndir = "{storage}"\nsession_id = "{session_id}"\n')
    return p


def edgevoice(cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [EDGEVOICE, "sessions", "--config", str(cfg), *args], capture_output=True, text=True, timeout=60
    )


def snapshot(storage: Path) -> dict[str, tuple[int, int, bytes]]:
    """Every path under the store with its mode, mtime and content: what "never modified" means."""
    out = {}
    for root, dirs, files in os.walk(storage):
        for name in (*dirs, *files):
            p = Path(root) / name
            st = p.lstat()
            out[str(p.relative_to(storage))] = (st.st_mode, st.st_mtime_ns, p.read_bytes() if p.is_file() else b"")
    return out


def message_files(storage: Path, sid: str) -> list[dict[str, object]]:
    d = session_dir(storage, sid) / MESSAGES
    return [json.loads((d / f"message_{i}.json").read_text()) for i in range(len(list(d.iterdir())))]


def tree_size(path: Path) -> int:
    return sum((Path(r) / f).stat().st_size for r, _, fs in os.walk(path) for f in fs)


def test_list_one_line_per_session_marks_current(store: Path, tmp_path: Path) -> None:
    mark_synced(session_dir(store, "kitchen"))
    before = snapshot(store)
    r = edgevoice(config_for(tmp_path, store), "list")
    assert r.returncode == 0, r.stderr
    header, *lines = r.stdout.splitlines()
    assert header.split() == ["SESSION", "SIZE", "MESSAGES", "LAST", "ACTIVITY", "SYNCED", "QUARANTINED"]
    rows = {line[2:].split()[0]: line for line in lines}
    assert sorted(rows) == ["default", "kitchen", "tools"]
    assert [line[0] for line in lines if line.startswith("*")] == ["*"] and rows["default"].startswith("* ")
    for sid, line in rows.items():
        n = len(list((session_dir(store, sid) / MESSAGES).iterdir()))
        assert f" {tree_size(session_dir(store, sid))} B " in line
        assert f" {n} (edgevoice {n}) " in line
        assert re.search(r" \d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ ", line)
        assert line.split()[-2:] == ["yes" if sid == "kitchen" else "no", "0"]
    assert snapshot(store) == before


def test_list_json(store: Path, tmp_path: Path) -> None:
    r = edgevoice(config_for(tmp_path, store, "kitchen"), "list", "--json")
    assert r.returncode == 0, r.stderr
    rows = {row["session_id"]: row for row in map(json.loads, r.stdout.splitlines())}
    assert sorted(rows) == ["default", "kitchen", "tools"]
    assert [sid for sid, row in rows.items() if row["current"]] == ["kitchen"]
    d = rows["default"]
    assert d["messages"] == 4 and d["messages_by_agent"] == {"edgevoice": 4}
    assert d["size_bytes"] == tree_size(session_dir(store, "default"))
    assert d["synced"] is False and d["quarantined"] == 0 and d["stored"] is True
    mtime = max((Path(r) / f).stat().st_mtime for r, _, fs in os.walk(session_dir(store, "default")) for f in fs)
    assert d["last_activity"] == datetime.fromtimestamp(mtime, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_show_the_conversation_as_text(store: Path, tmp_path: Path) -> None:
    before = snapshot(store)
    r = edgevoice(config_for(tmp_path, store), "show", "default")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    said = [re.sub(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ\] ", "", line) for line in lines if line.startswith("[")]
    assert said == [
        "you: my name is Bob",
        "assistant: Nice to meet you, Bob.",
        "you: what is my name",
        "assistant: Your name is Bob.",
    ]
    assert lines[0].startswith("session default: 4 messages")
    assert lines[-1] == 'state: {"volume": 7}'
    assert snapshot(store) == before


def test_show_summarizes_tool_use_and_results(store: Path, tmp_path: Path) -> None:
    r = edgevoice(config_for(tmp_path, store), "show", "tools")
    assert r.returncode == 0, r.stderr
    said = [line.split("] ", 1)[1] for line in r.stdout.splitlines() if line.startswith("[")]
    assert said == [
        "you: what time is it",
        'assistant: [tool use get_time {"zone": "UTC"}]',
        "you: [tool result get_time (success): 10:45]",
        "assistant: It is 10:45.",
    ]


def test_export_json_lines_match_the_stored_messages(store: Path, tmp_path: Path) -> None:
    before = snapshot(store)
    r = edgevoice(config_for(tmp_path, store), "export", "default")
    assert r.returncode == 0 and r.stderr == ""
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    stored = message_files(store, "default")
    assert len(rows) == len(stored) == 4
    for row, m in zip(rows, stored, strict=True):
        msg = m["message"]
        assert isinstance(msg, dict)
        assert row == {
            "agent_id": "edgevoice",
            "message_id": m["message_id"],
            "role": msg["role"],
            "content": msg["content"],
            "created_at": m["created_at"],
        }
    assert snapshot(store) == before


def test_corrupt_files_are_skipped_and_reported_never_repaired(store: Path, tmp_path: Path) -> None:
    mdir = session_dir(store, "default") / MESSAGES
    (mdir / "message_1.json").write_bytes((mdir / "message_1.json").read_bytes()[:40])  # truncated
    (mdir / "message_2.json").write_bytes(b"")
    (session_dir(store, "default") / "agents/agent_edgevoice/agent.json").write_bytes(b"\x00garbage")
    before = snapshot(store)
    cfg = config_for(tmp_path, store)

    show = edgevoice(cfg, "show", "default")
    assert show.returncode == 0, show.stderr
    lines = show.stdout.splitlines()
    agent_at = lines.index("--- agent edgevoice")
    body = [line for line in lines[agent_at:] if line.startswith(("[", "!"))]
    assert [line.split("] ", 1)[-1] if line.startswith("[") else line.split(":")[0] for line in body] == [
        "you: my name is Bob",
        f"! skipped {MESSAGES}/message_1.json",
        f"! skipped {MESSAGES}/message_2.json",
        "assistant: Your name is Bob.",
    ]
    assert "empty (zero length)" in body[2] and "not valid JSON" in body[1]
    assert "! skipped agents/agent_edgevoice/agent.json: not valid JSON" in show.stdout
    assert lines[-1] == "3 file(s) could not be read and were skipped"

    export = edgevoice(cfg, "export", "default")
    assert export.returncode == 0
    assert [json.loads(line)["message_id"] for line in export.stdout.splitlines()] == [0, 3]
    assert len(export.stderr.splitlines()) == 3 and "message_1.json" in export.stderr

    listed = edgevoice(cfg, "list", "--json")
    assert listed.returncode == 0
    assert snapshot(store) == before  # nothing quarantined, nothing rewritten


def test_quarantine_from_the_start_up_scan_is_counted_and_shown(store: Path, tmp_path: Path) -> None:
    mdir = session_dir(store, "kitchen") / MESSAGES
    (mdir / "message_0.json").write_text('{"message": "not a message", "message_id": 0}')
    manager = DurableFileSessionManager("kitchen", storage_dir=str(store))  # the daemon's start-up scan
    assert len(manager.scan_report.quarantined) == 1
    cfg = config_for(tmp_path, store)
    rows = {row["session_id"]: row for row in map(json.loads, edgevoice(cfg, "list", "--json").stdout.splitlines())}
    assert rows["kitchen"]["quarantined"] == 1 and rows["default"]["quarantined"] == 0
    assert rows["kitchen"]["messages"] == 1
    show = edgevoice(cfg, "show", "kitchen").stdout
    assert re.search(r"^quarantined: .*message_0\.json: .*role and content", show, re.M)


@pytest.mark.parametrize(("action", "sid"), [("show", "nosuch"), ("show", "../default"), ("export", "")])
def test_unknown_id_exits_2_naming_it(action: str, sid: str, store: Path, tmp_path: Path) -> None:
    r = edgevoice(config_for(tmp_path, store), action, sid)
    assert r.returncode == 2 and r.stdout == ""
    assert len(r.stderr.splitlines()) == 1 and repr(sid) in r.stderr


@pytest.mark.parametrize(
    ("kind", "args"),
    [("missing", ("list",)), ("file", ("list",)), ("missing", ("show", "default")), ("file", ("export", "default"))],
)
def test_unusable_session_dir_exits_2_naming_it(kind: str, args: tuple[str, ...], tmp_path: Path) -> None:
    storage = tmp_path / "nothere"
    if kind == "file":
        storage.write_text("not a directory")
    r = edgevoice(config_for(tmp_path, storage), *args)
    assert r.returncode == 2 and r.stdout == ""
    assert len(r.stderr.splitlines()) == 1
    assert "session.dir" in r.stderr and str(storage) in r.stderr


def test_reset_starts_a_new_current_session_and_keeps_the_old(store: Path, tmp_path: Path) -> None:
    cfg = config_for(tmp_path, store)
    before = snapshot(store)
    r = edgevoice(cfg, "reset")
    assert r.returncode == 0, r.stderr
    new = r.stdout.strip()
    assert re.fullmatch(r"default-\d{8}T\d{6}Z", new)
    current = store / CURRENT_FILE
    assert current.read_text() == new + "\n"
    assert stat.S_IMODE(current.stat().st_mode) == 0o600
    after = snapshot(store)
    assert after.pop(CURRENT_FILE)[2] == (new + "\n").encode()
    assert after == before  # every session untouched
    listed = edgevoice(cfg, "list").stdout.splitlines()
    assert [line for line in listed if line.startswith("*")] == [f"* {new:<{len(new)}}  (current; nothing stored yet)"]
    assert any(line.startswith("  default ") for line in listed)

    again = edgevoice(cfg, "reset").stdout.strip()  # within the same second: still a new id
    assert again != new and again.startswith("default-") and current.read_text() == again + "\n"


def test_new_session_ids_are_unique_and_valid(store: Path) -> None:
    settings = SessionSettings(dir=str(store), session_id="x" * 128)
    now = datetime(2026, 11, 25, 10, 45, tzinfo=UTC)
    first = new_session_id(settings, now)
    assert len(first) <= 128 and first.endswith("-20261125T104500Z")
    set_current(store, first)
    second = new_session_id(settings, now)
    assert second == first + "-2"
    (store / f"session_{second}").mkdir()
    assert new_session_id(settings, now) == first + "-3"


@pytest.mark.parametrize("content", [b"../etc\n", b"", b"a\nb\n", b"\xff\xfe", b"x" * 600, b"has space\n"])
def test_a_corrupt_current_file_is_reported_and_ignored(
    content: bytes, store: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (store / CURRENT_FILE).write_bytes(content)
    settings = SessionSettings(dir=str(store), session_id="kitchen")
    with caplog.at_level(logging.WARNING, logger="edgevoice.session.current"):
        assert read_current(store) is None
        assert current_session_id(settings) == "kitchen"
    assert "holds no valid session id" in caplog.text and str(store / CURRENT_FILE) in caplog.text


def test_list_with_a_corrupt_current_file_falls_back_to_the_configured_id(store: Path, tmp_path: Path) -> None:
    (store / CURRENT_FILE).write_bytes(b"../../etc/passwd\n")
    r = edgevoice(config_for(tmp_path, store, "kitchen"), "list", "--json")
    assert r.returncode == 0
    assert [row["session_id"] for row in map(json.loads, r.stdout.splitlines()) if row["current"]] == ["kitchen"]
    assert "holds no valid session id" in r.stderr


def test_reset_and_list_agree_on_a_missing_session_dir(tmp_path: Path) -> None:
    storage = tmp_path / "nothere" / "sessions"
    cfg = config_for(tmp_path, storage)
    reset, listed = edgevoice(cfg, "reset"), edgevoice(cfg, "list")
    assert reset.returncode == listed.returncode == 2 and reset.stdout == ""
    assert reset.stderr == listed.stderr == f"edgevoice: session.dir {str(storage)!r} does not exist\n"
    assert not (tmp_path / "nothere").exists()  # the daemon creates the store, as the user it runs as


def test_views_agree_with_the_daemon_on_duplicate_numbers(tmp_path: Path) -> None:
    storage = tmp_path / "sessions"
    mdir = session_dir(storage, "dup") / MESSAGES
    mdir.mkdir(parents=True)
    for name, i, text in [("message_0.json", 0, "zero"), ("message_01.json", 1, "one b"), ("message_1.json", 1, "one")]:
        rec = {"message": {"role": "user", "content": [{"text": text}]}, "message_id": i, "created_at": ""}
        (mdir / name).write_text(json.dumps(rec))
    cfg = config_for(tmp_path, storage)
    before = [json.loads(line)["content"][0]["text"] for line in edgevoice(cfg, "export", "dup").stdout.splitlines()]
    from tests.talk import agent_for

    restored = agent_for(DurableFileSessionManager("dup", storage_dir=str(storage))).messages
    assert before == [m["content"][0]["text"] for m in restored] == ["zero", "one", "one b"]
    after = [json.loads(line)["content"][0]["text"] for line in edgevoice(cfg, "export", "dup").stdout.splitlines()]
    assert after == before
