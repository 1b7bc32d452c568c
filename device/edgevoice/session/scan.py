"""The start-up scan: make any session directory restorable before Strands reads it.

Unreadable, truncated or schema-invalid files move to `session_<id>/quarantine/` with a `.reason`
file beside them; stale temp files go; message files are renumbered without gaps; a missing or
bad `session.json`/`agent.json` is written anew, so a restore always gets every intact message.
The scan never fails because of what is on disk. It parses every message once and hands the
parsed messages to the restore, which then needs no second read.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from strands.types.session import Session, SessionAgent, SessionMessage, SessionType, decode_bytes_values

from .atomic import durable_rename, make_dirs, write_bytes
from .jsonfile import BadFile, load_object
from .layout import AGENT_PREFIX, QUARANTINE, is_temp, looks_like_message, message_index, session_dir

log = logging.getLogger(__name__)

_ROLES = ("user", "assistant")
_MESSAGE_FIELDS = ("message", "message_id", "redact_message", "created_at", "updated_at")


@dataclass
class ScanReport:
    quarantined: list[tuple[str, str]] = field(default_factory=list)
    """(path relative to the session directory, why) for every file set aside."""
    skipped: list[tuple[str, str]] = field(default_factory=list)
    """Bad files that could not be moved (read-only flash): left in place, not restored."""
    temp_removed: int = 0
    renumbered: int = 0
    rewritten: list[str] = field(default_factory=list)
    """session.json / agent.json files written anew."""

    @property
    def clean(self) -> bool:
        return not (self.quarantined or self.skipped or self.temp_removed or self.renumbered or self.rewritten)


@dataclass
class ScanResult:
    report: ScanReport
    messages: dict[str, list[SessionMessage]]
    """agent id -> its intact messages in order, as they are on disk after the scan."""


def dumps(data: dict[str, Any]) -> bytes:
    """The bytes Strands' FileSessionManager would write for `data` (same formatting)."""
    return json.dumps(data, indent=2, ensure_ascii=False).encode("utf-8")


def _check_session(data: dict[str, Any], session_id: str) -> None:
    if data.get("session_id") != session_id:
        raise BadFile(f"session_id is {data.get('session_id')!r}, expected {session_id!r}")
    if not isinstance(data.get("session_type"), str):
        raise BadFile("session_type missing")


def _check_agent(data: dict[str, Any], agent_id: str) -> SessionAgent:
    if data.get("agent_id") != agent_id:
        raise BadFile(f"agent_id is {data.get('agent_id')!r}, expected {agent_id!r}")
    for key in ("state", "conversation_manager_state"):
        if not isinstance(data.get(key), dict):
            raise BadFile(f"{key} missing or not an object")
    try:
        return SessionAgent.from_dict(data)
    except Exception as e:
        raise BadFile(f"not a session agent: {e}") from None


def _check_message(data: dict[str, Any]) -> SessionMessage:
    for key in ("message", "redact_message"):
        m = data.get(key)
        if key == "redact_message" and m is None:
            continue
        if not isinstance(m, dict) or m.get("role") not in _ROLES or not isinstance(m.get("content"), list):
            raise BadFile(f"{key} has no valid role and content list")
        if not all(isinstance(block, dict) for block in m["content"]):
            raise BadFile(f"{key} content blocks are not objects")
    if not isinstance(data.get("message_id"), int):
        raise BadFile("message_id missing or not an integer")
    try:
        # Built directly: SessionMessage.from_dict inspects the class signature once per key, which
        # was three quarters of a 1,000-message restore.
        return SessionMessage(**decode_bytes_values({k: data[k] for k in _MESSAGE_FIELDS if k in data}))
    except Exception as e:
        raise BadFile(f"not a session message: {e}") from None


class _Scanner:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.report = ScanReport()

    def quarantine(self, path: Path, why: str) -> None:
        rel = path.relative_to(self.root).as_posix()
        qdir = self.root / QUARANTINE
        name = rel.replace("/", "__")
        target = qdir / name
        n = 1
        while target.exists():
            target = qdir / f"{name}.{n}"
            n += 1
        try:
            durable_rename(path, target)
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            write_bytes(target.with_name(target.name + ".reason"), f"{stamp} {why}\n".encode())
        except OSError as e:
            # Read-only flash: it stays where it is; the restore skips it all the same.
            log.error("session scan: cannot quarantine %s (%s): %s; skipping it", rel, why, e.strerror)
            self.report.skipped.append((rel, why))
            return
        self.report.quarantined.append((rel, why))
        log.warning("session scan: quarantined %s: %s", rel, why)

    def remove_temps(self) -> None:
        for dirpath, dirs, files in os.walk(self.root):
            if Path(dirpath) == self.root and QUARANTINE in dirs:
                dirs.remove(QUARANTINE)
            for name in files:
                if is_temp(name):
                    with contextlib.suppress(OSError):
                        os.unlink(os.path.join(dirpath, name))
                        self.report.temp_removed += 1

    def rewrite(self, path: Path, data: dict[str, Any]) -> None:
        write_bytes(path, dumps(data))
        self.report.rewritten.append(path.relative_to(self.root).as_posix())

    def session(self, session_id: str) -> None:
        path = self.root / "session.json"
        if path.exists():
            try:
                _check_session(load_object(path), session_id)
                return
            except BadFile as e:
                self.quarantine(path, str(e))
        self.rewrite(path, Session(session_id=session_id, session_type=SessionType.AGENT).to_dict())

    def agent(self, agent_dir: Path) -> list[SessionMessage]:
        agent_id = agent_dir.name[len(AGENT_PREFIX) :]
        path = agent_dir / "agent.json"
        messages = self.messages(agent_dir / "messages")
        try:
            _check_agent(load_object(path), agent_id)
        except BadFile as e:
            if path.exists() or path.is_symlink():
                self.quarantine(path, str(e))
            if messages:
                # Without agent.json Strands would take this for a new agent and write over its messages.
                # With no messages it may: the agent then starts with the state its constructor gives.
                self.rewrite(path, SessionAgent(agent_id=agent_id, state={}, conversation_manager_state={}).to_dict())
        return messages

    def messages(self, mdir: Path) -> list[SessionMessage]:
        make_dirs(mdir)
        found: list[tuple[int, Path, SessionMessage]] = []
        for entry in mdir.iterdir():
            n = message_index(entry.name)
            if n is None:
                if looks_like_message(entry.name):  # stock Strands would fail on int() of its name
                    self.quarantine(entry, "message file name without a number")
                continue
            try:
                found.append((n, entry, _check_message(load_object(entry))))
            except BadFile as e:
                self.quarantine(entry, str(e))
        found.sort(key=lambda t: t[0])
        out: list[SessionMessage] = []
        for want, (n, path, msg) in enumerate(found):
            if n != want or msg.message_id != want:
                # Ascending order: the target index is never above the source, so nothing is overwritten.
                # Rename first (atomic: the file is under one name or the other), then fix its id;
                # a crash in between is mended by the next scan.
                target = mdir / f"message_{want}.json"
                if target != path:
                    durable_rename(path, target)
                msg.message_id = want
                write_bytes(target, dumps(msg.to_dict()))
                self.report.renumbered += 1
            out.append(msg)
        return out


def scan_session(storage_dir: str | Path, session_id: str) -> ScanResult:
    """Scan and repair `session_<id>` under `storage_dir`; a missing session is simply reported clean."""
    root = session_dir(storage_dir, session_id)
    messages: dict[str, list[SessionMessage]] = {}
    s = _Scanner(root)
    if not root.is_dir():
        return ScanResult(s.report, messages)
    s.remove_temps()
    s.session(session_id)
    agents = root / "agents"
    make_dirs(agents)
    for agent_dir in sorted(agents.iterdir()):
        if agent_dir.is_dir() and agent_dir.name.startswith(AGENT_PREFIX):
            messages[agent_dir.name[len(AGENT_PREFIX) :]] = s.agent(agent_dir)
    r = s.report
    if not r.clean:
        log.warning(
            "session scan of %s: %d quarantined, %d temp files removed, %d messages renumbered, rewrote %s",
            root, len(r.quarantined), r.temp_removed, r.renumbered, ", ".join(r.rewritten) or "nothing",
        )
    return ScanResult(r, messages)
