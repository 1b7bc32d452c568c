"""Read-only views of stored sessions: the listing retention plans over, and conversations to show or export.

Nothing here writes, repairs or quarantines: a file that cannot be used is skipped and reported as a
`Problem`, so looking at a damaged store never changes it (the daemon's start-up scan does the repair).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import ConfigError, validate_session_id
from ..sync.state import is_synced, is_uploaded
from .jsonfile import BadFile, load_object
from .layout import (
    AGENT_PREFIX,
    QUARANTINE,
    SESSION_PREFIX,
    looks_like_message,
    message_index,
)
from .renumber import order_key
from .validate import UNNUMBERED, check_agent, check_dir, check_message, check_session

_REASON = ".reason"


class StoreError(Exception):
    """The session directory itself cannot be read; the message is one line naming `session.dir`."""


class UnknownSession(Exception):
    """No stored session has this id; the message is one line naming it."""


@dataclass(frozen=True)
class SessionInfo:
    """One stored session, from directory metadata only (no file is parsed)."""

    session_id: str
    path: Path
    size_bytes: int
    """Every file under the session, quarantine included: what deleting it frees."""
    last_activity: float
    """Newest mtime (epoch s) of the conversation's files (quarantine/ left out)."""
    synced: bool
    """Every file confirmed in S3 as it is now (`sync/state.py`)."""
    quarantined: int
    """Files the start-up scan set aside (their `.reason` notes not counted)."""
    messages: dict[str, int] = field(default_factory=dict)
    """agent id -> number of message files."""

    @property
    def message_count(self) -> int:
        return sum(self.messages.values())


def check_store(storage_dir: Path) -> None:
    """StoreError unless `session.dir` is a readable directory. Every `edgevoice sessions` action checks
    this, `reset` too: it must not create a store `list` would then call missing (the daemon creates it,
    owned by the user it runs as)."""
    if not storage_dir.exists():
        raise StoreError(f"session.dir {str(storage_dir)!r} does not exist")
    if not storage_dir.is_dir():
        raise StoreError(f"session.dir {str(storage_dir)!r} is not a directory")
    if not os.access(storage_dir, os.R_OK | os.X_OK):
        raise StoreError(f"session.dir {str(storage_dir)!r} cannot be read (permission denied)")


def session_info(path: Path) -> SessionInfo:
    """Sizes, activity, message counts and sync state of the session directory `path`."""
    size = quarantined = 0
    newest: float | None = None
    messages: dict[str, int] = {}
    uploaded: dict[str, os.stat_result] = {}  # what the sync state must cover (`sync.state.session_files`)
    for root, _dirs, files in os.walk(path):
        rel = Path(root).relative_to(path).parts
        in_quarantine = rel[:1] == (QUARANTINE,)
        # agents/agent_<id>/messages/message_<n>.json
        agent = rel[1].removeprefix(AGENT_PREFIX) if len(rel) == 3 and rel[::2] == ("agents", "messages") else None
        for name in files:
            try:
                st = os.lstat(os.path.join(root, name))
            except OSError:
                continue  # gone since the listing (a writer is active); not ours to judge
            size += st.st_size
            if in_quarantine:
                quarantined += not name.endswith(_REASON)
                continue
            newest = st.st_mtime if newest is None or st.st_mtime > newest else newest
            if is_uploaded(name):
                uploaded["/".join((*rel, name))] = st
            if agent is not None and message_index(name) is not None:
                messages[agent] = messages.get(agent, 0) + 1
    if newest is None:
        newest = path.lstat().st_mtime
    return SessionInfo(
        session_id=path.name.removeprefix(SESSION_PREFIX),
        path=path,
        size_bytes=size,
        last_activity=newest,
        synced=is_synced(path, uploaded),
        quarantined=quarantined,
        messages=dict(sorted(messages.items())),
    )


def list_sessions(storage_dir: str | Path) -> list[SessionInfo]:
    """Every `session_<id>` directory under `storage_dir`, least recently active first."""
    storage = Path(storage_dir)
    check_store(storage)
    try:
        entries = list(os.scandir(storage))
    except OSError as e:
        raise StoreError(f"session.dir {str(storage)!r} cannot be read ({e.strerror})") from None
    out = []
    for entry in entries:
        if entry.name.startswith(SESSION_PREFIX) and len(entry.name) > len(SESSION_PREFIX):
            try:
                if entry.is_dir(follow_symlinks=False):
                    out.append(session_info(Path(entry.path)))
            except OSError:
                continue  # deleted while we looked
    return sorted(out, key=lambda s: (s.last_activity, s.session_id))


# --- conversations ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """A file that was skipped, relative to the session directory, and why."""

    path: str
    reason: str
    index: int | None = None
    """For a message file: its number, so the gap shows where it was."""


@dataclass(frozen=True)
class StoredMessage:
    agent_id: str
    message_id: int
    index: int
    """n of `message_<n>.json`."""
    role: str
    content: list[dict[str, Any]]
    """What a restore gives the agent: the redacted content when the message was redacted."""
    created_at: str
    redacted: bool


@dataclass(frozen=True)
class AgentRecord:
    agent_id: str
    state: dict[str, Any] | None
    """Key-value agent state from agent.json; None when agent.json is missing or unusable."""
    conversation_manager_state: dict[str, Any] | None
    messages: list[StoredMessage]
    problems: list[Problem]


@dataclass(frozen=True)
class Conversation:
    session_id: str
    created_at: str | None
    agents: list[AgentRecord]
    problems: list[Problem]
    """Every skipped file, the agents' included."""
    quarantine: list[tuple[str, str]]
    """(file name, reason) for what the start-up scan set aside."""


def _message(agent_id: str, index: int, data: dict[str, Any]) -> StoredMessage:
    fields = check_message(data)  # the scan's verdict: what it would quarantine is skipped here
    redact = fields.get("redact_message")
    shown = redact if redact is not None else fields["message"]
    created = fields.get("created_at")
    return StoredMessage(
        agent_id=agent_id,
        message_id=fields["message_id"],
        index=index,
        role=shown["role"],
        content=shown["content"],
        created_at=created if isinstance(created, str) else "",
        redacted=redact is not None,
    )


def _dir_problem(root: Path, path: Path) -> Problem | None:
    """Why the directory `path` is not read (a symlink, not a directory, unreadable), as the scan says it."""
    try:
        check_dir(path)
    except FileNotFoundError:
        return None
    except BadFile as e:
        return Problem(path.relative_to(root).as_posix(), str(e))
    except OSError as e:
        return Problem(path.relative_to(root).as_posix(), f"cannot be read ({e.strerror})")
    return None


def _listing(root: Path, path: Path, problems: list[Problem]) -> list[str]:
    if (p := _dir_problem(root, path)) is not None:
        problems.append(p)
        return []
    try:
        return sorted(os.listdir(path))
    except FileNotFoundError:
        return []
    except OSError as e:
        problems.append(Problem(path.relative_to(root).as_posix(), f"cannot be read ({e.strerror})"))
        return []


def _agent(root: Path, agent_dir: Path) -> AgentRecord:
    agent_id = agent_dir.name.removeprefix(AGENT_PREFIX)
    problems: list[Problem] = []
    state = cm_state = None
    agent_file = agent_dir / "agent.json"
    try:
        data = load_object(agent_file)
        check_agent(data, agent_id)
        state, cm_state = data["state"], data["conversation_manager_state"]
    except BadFile as e:
        problems.append(Problem(agent_file.relative_to(root).as_posix(), str(e)))
    found: list[tuple[tuple[int, bool, str], StoredMessage]] = []
    mdir = agent_dir / "messages"
    for name in _listing(root, mdir, problems):
        rel = (mdir / name).relative_to(root).as_posix()
        n = message_index(name)
        if n is None:
            if looks_like_message(name):
                problems.append(Problem(rel, UNNUMBERED))
            continue  # temp files and strangers are not messages
        try:
            found.append((order_key(n, name), _message(agent_id, n, load_object(mdir / name))))
        except BadFile as e:
            problems.append(Problem(rel, str(e), n))
    # The order the daemon restores them in (equal numbers: canonical name first, then by name).
    messages = [m for _, m in sorted(found, key=lambda t: t[0])]
    problems.sort(key=lambda p: (p.index is None, p.index or 0, p.path))
    return AgentRecord(agent_id, state, cm_state, messages, problems)


def _quarantine(root: Path) -> list[tuple[str, str]]:
    qdir = root / QUARANTINE
    try:
        names = sorted(os.listdir(qdir))
    except OSError:
        return []
    out = []
    for name in names:
        if name.endswith(_REASON):
            continue
        try:
            reason = (qdir / (name + _REASON)).read_text(encoding="utf-8", errors="replace").strip()
        except OSError:
            reason = "no reason recorded"
        out.append((name, reason.splitlines()[0] if reason else "no reason recorded"))
    return out


def session_path(storage_dir: str | Path, session_id: str) -> Path:
    """The directory of a stored session; StoreError or UnknownSession when there is none to read."""
    storage = Path(storage_dir)
    check_store(storage)
    try:
        validate_session_id(session_id)
    except ConfigError:
        raise UnknownSession(f"no session {session_id!r} in session.dir {str(storage)!r}") from None
    path = storage / f"{SESSION_PREFIX}{session_id}"
    if path.is_symlink() or not path.is_dir():
        raise UnknownSession(f"no session {session_id!r} in session.dir {str(storage)!r}")
    if not os.access(path, os.R_OK | os.X_OK):
        raise StoreError(f"session {session_id!r} in session.dir {str(storage)!r} cannot be read")
    return path


def read_conversation(storage_dir: str | Path, session_id: str) -> Conversation:
    """Every readable message of every agent of a session, and what could not be read."""
    root = session_path(storage_dir, session_id)
    problems: list[Problem] = []
    created = None
    try:
        data = load_object(root / "session.json")
        check_session(data, session_id)
        created = data.get("created_at") if isinstance(data.get("created_at"), str) else None
    except BadFile as e:
        problems.append(Problem("session.json", str(e)))
    agents = []
    for name in _listing(root, root / "agents", problems):
        if not name.startswith(AGENT_PREFIX):
            continue
        agent_dir = root / "agents" / name
        if (p := _dir_problem(root, agent_dir)) is not None:
            problems.append(p)  # a symlinked agent is not followed, as the daemon does not
            continue
        record = _agent(root, agent_dir)
        agents.append(record)
        problems += record.problems
    return Conversation(session_id, created, agents, problems, _quarantine(root))
