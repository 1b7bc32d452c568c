"""DurableFileSessionManager: Strands' FileSessionManager, made safe for a device that loses power.

Same arguments, same on-disk layout (stock FileSessionManager and S3SessionManager read what it
writes, and it restores what they wrote). What it adds:
- every write is atomic and durable (see `atomic.py`); files 0600, directories 0700;
- a start-up scan quarantines what cannot be read and repairs the rest (see `scan.py`);
- its message callbacks run before every other hook (`HookOrder.SDK_FIRST`), including hooks
  passed to the agent's constructor, which Strands registers first: a hook that sees
  `MessageAddedEvent` finds the message on disk;
- transcript messages, which Strands' bidi loop adds empty and fills in later, are stored again
  with their final text on `MessageUpdatedEvent` (the stock managers ignore it);
- one file write per appended message: `agent.json` only when its content changed, no reads;
- a full, read-only or broken disk never stops the conversation, at start or later: the failure is
  logged once, the write is held in memory (`held.py`) and retried at the next write (or
  `retry_pending()`), nothing stored is touched; `storage_problem` says why, `close()` names at exit
  what never landed;
- an agent.json with no conversation manager state (rebuilt by the scan, or written by a BidiAgent)
  restores under a plain `Agent` too;
- `detach(agent)`: a new agent with the same id may take over (the daemon's fresh agent after a stop that
  never returned); it restores the whole history from the store, writes held in memory included, and
  what the old agent still does is not stored.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from datetime import UTC, datetime
from typing import Any, cast

from strands.agent.agent import Agent
from strands.hooks import (
    AfterInvocationEvent,
    AfterMultiAgentInvocationEvent,
    AfterNodeCallEvent,
    AgentInitializedEvent,
    MessageAddedEvent,
    MessageUpdatedEvent,
    MultiAgentInitializedEvent,
)
from strands.hooks.registry import HookOrder, HookRegistry
from strands.session.file_session_manager import FileSessionManager
from strands.session.repository_session_manager import RepositorySessionManager
from strands.types.agent import LocalAgent
from strands.types.exceptions import SessionException
from strands.types.session import Session, SessionAgent, SessionMessage, SessionType

from ..config import validate_session_id
from .atomic import make_dirs
from .held import HeldWrites
from .layout import message_index
from .scan import ScanReport, dumps, scan_session

log = logging.getLogger(__name__)


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _content(agent: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in agent.items() if k not in ("created_at", "updated_at")}


class DurableFileSessionManager(FileSessionManager):
    """A drop-in for `FileSessionManager(session_id, storage_dir=..., **kwargs)` that never loses an
    acknowledged message and never fails to start because of what is on disk."""

    def __init__(self, session_id: str, storage_dir: str | None = None, **kwargs: Any) -> None:
        validate_session_id(session_id, "session_id")
        storage = storage_dir or self._default_storage_dir()
        self._held = HeldWrites()
        self._make_dirs(storage)
        self._agents_written: dict[str, dict[str, Any]] = {}  # agent id -> content last written
        self._agents_created_at: dict[str, str] = {}
        self._initializing: LocalAgent | None = None
        self._owners: dict[str, LocalAgent] = {}  # agent id -> the agent whose messages are stored
        self._warned: set[int] = set()  # detached agents already named in the log
        result = scan_session(storage, session_id, self._held)  # it blocks in `_held` what must not be written
        self.scan_report: ScanReport = result.report
        self._restored: dict[str, list[SessionMessage]] | None = result.messages
        # FileSessionManager.__init__ only sets storage_dir and runs os.makedirs, which raises on a
        # read-only or broken flash; the store must start there all the same (writes are held).
        self.storage_dir = storage
        RepositorySessionManager.__init__(self, session_id=session_id, session_repository=self)

    # -- hooks ----------------------------------------------------------------------------
    def register_hooks(self, registry: HookRegistry, **kwargs: Any) -> None:
        first = HookOrder.SDK_FIRST
        registry.add_callback(AgentInitializedEvent, lambda e: self.initialize(e.agent))
        registry.add_callback(MessageAddedEvent, self._on_message_added, order=first)
        registry.add_callback(MessageUpdatedEvent, self._on_message_updated, order=first)
        registry.add_callback(AfterInvocationEvent, lambda e: self.sync_agent(e.agent))
        registry.add_callback(MultiAgentInitializedEvent, lambda e: self.initialize_multi_agent(e.source))
        registry.add_callback(AfterNodeCallEvent, lambda e: self.sync_multi_agent(e.source))
        registry.add_callback(AfterMultiAgentInvocationEvent, lambda e: self.sync_multi_agent(e.source))

    def _detached(self, agent: LocalAgent) -> bool:
        owner = self._owners.get(agent.agent_id)
        if owner is None or owner is agent:
            return False
        if id(agent) not in self._warned:  # once per detached agent
            self._warned.add(id(agent))
            log.warning("session store: messages from a detached agent %r are not stored", agent.agent_id)
        return True

    def _on_message_added(self, event: MessageAddedEvent[LocalAgent]) -> None:
        if self._detached(event.agent):
            return
        self.append_message(event.message, event.agent)
        self.sync_agent(event.agent)

    def _on_message_updated(self, event: MessageUpdatedEvent[LocalAgent]) -> None:
        if self._detached(event.agent):
            return
        agent_id = event.agent.agent_id
        for record in reversed(self._held_records.get(agent_id, [])):
            if record.message.get("tracking_id") == event.tracking_id:
                record.message = event.message
                self.update_message(self.session_id, agent_id, record)
                return
        log.warning("tracking_id=<%s> | updated message is not in the session; not stored", event.tracking_id)

    # -- writes ---------------------------------------------------------------------------
    def _write_file(self, path: str, data: dict[str, Any]) -> None:
        self._held.write(path, dumps(data))

    @property
    def pending_writes(self) -> int:
        """Writes held in memory because the flash would not take them (or the scan blocked their path)."""
        return self._held.count

    @property
    def storage_problem(self) -> str | None:
        """One line saying why the conversation is not (all) on the flash now, or None: for the status."""
        return self._held.problem

    @property
    def write_started(self) -> float | None:
        """When (time.monotonic) the write in progress began, or None (`appliance/watchdog.py`)."""
        return self._held.write_started

    @property
    def degraded(self) -> bool:
        return self._held.problem is not None

    def retry_pending(self) -> bool:
        """Try the held writes again, oldest first; True when none is left that may be written."""
        return self._held.retry()

    def close(self) -> list[str]:
        """At exit: a last retry, then log (and return) the files whose latest bytes were never stored."""
        return self._held.close()

    def _make_dirs(self, path: str) -> None:
        # A full, read-only or broken flash must not stop a session: held writes create their
        # directories when they go through.
        with contextlib.suppress(OSError):
            make_dirs(path)

    # -- reads: held bytes first, blocked paths never --------------------------------------------
    def _read_file(self, path: str) -> dict[str, Any]:
        held = self._held.read(path)
        if held is not None:
            return cast(dict[str, Any], json.loads(held))
        return super()._read_file(path)

    def read_session(self, session_id: str, **kwargs: Any) -> Session | None:
        path = f"{self._get_session_path(session_id)}/session.json"
        if session_id != self.session_id:
            return super().read_session(session_id, **kwargs)
        if self._held.read(path) is not None:
            return Session.from_dict(self._read_file(path))
        if not self._held.blocked(path):
            try:
                return super().read_session(session_id, **kwargs)
            except (OSError, SessionException) as e:
                log.error("session store: cannot read %s (%s)", path, e)
        if os.path.lexists(self._get_session_path(session_id)):
            # A session is there that the scan could not repair: it is not new (a new one would
            # number its messages from 0 over the stored ones). It lives in memory.
            return Session(session_id=session_id, session_type=SessionType.AGENT)
        return None

    def initialize(self, agent: LocalAgent, **kwargs: Any) -> None:
        self._initializing = agent  # read_agent completes a rebuilt agent.json for this agent's kind
        try:
            super().initialize(agent, **kwargs)
        finally:
            self._initializing = None
        self._owners[agent.agent_id] = agent

    def detach(self, agent: LocalAgent) -> None:
        """Let another agent with `agent`'s id take over: it restores the history from the store (`list_messages`
        sees held writes too), and nothing `agent` does from now on is stored."""
        if self._owners.get(agent.agent_id) is agent:
            self._latest_agent_message.pop(agent.agent_id, None)
            self._held_records.pop(agent.agent_id, None)

    # -- the repository, without reads on the write path ------------------------------------
    def create_session(self, session: Session, **kwargs: Any) -> Session:
        session_dir = self._get_session_path(session.session_id)
        for sub in ("agents", "multi_agents"):
            self._make_dirs(f"{session_dir}/{sub}")
        self._write_file(f"{session_dir}/session.json", session.to_dict())
        return session

    def create_agent(self, session_id: str, session_agent: SessionAgent, **kwargs: Any) -> None:
        agent_dir = self._get_agent_path(session_id, session_agent.agent_id)
        self._make_dirs(f"{agent_dir}/messages")
        data = session_agent.to_dict()
        self._write_file(f"{agent_dir}/agent.json", data)
        self._agents_written[session_agent.agent_id] = _content(data)
        self._agents_created_at[session_agent.agent_id] = session_agent.created_at

    def read_agent(self, session_id: str, agent_id: str, **kwargs: Any) -> SessionAgent | None:
        path = f"{self._get_agent_path(session_id, agent_id)}/agent.json"
        if session_id != self.session_id:
            return super().read_agent(session_id, agent_id, **kwargs)
        agent: SessionAgent | None
        if self._held.read(path) is not None:  # e.g. the scan's rebuilt agent.json on a full flash
            agent = SessionAgent.from_dict(self._read_file(path))
        elif self._held.blocked(path):
            return None
        else:
            try:
                agent = super().read_agent(session_id, agent_id, **kwargs)
            except (OSError, SessionException) as e:
                log.error("session store: cannot read %s (%s)", path, e)
                return None
        if agent is not None:
            self._complete_conversation_manager_state(agent)
            self._agents_written[agent_id] = _content(agent.to_dict())
            self._agents_created_at[agent_id] = agent.created_at
        return agent

    def _complete_conversation_manager_state(self, stored: SessionAgent) -> None:
        # `{}` records nothing: the scan's rebuilt agent.json, or one a BidiAgent wrote (it has no
        # conversation manager). A plain Agent refuses to restore it ("Invalid conversation manager
        # state"); its own manager's fresh state (nothing removed) says the same and restores every message.
        agent = self._initializing
        if isinstance(agent, Agent) and "__name__" not in stored.conversation_manager_state:
            stored.conversation_manager_state = agent.conversation_manager.get_state()

    def update_agent(self, session_id: str, session_agent: SessionAgent, **kwargs: Any) -> None:
        agent_id = session_agent.agent_id
        if agent_id not in self._agents_created_at and self.read_agent(session_id, agent_id) is None:
            raise SessionException(f"Agent {agent_id} in session {session_id} does not exist")
        session_agent.created_at = self._agents_created_at[agent_id]
        data = session_agent.to_dict()
        if _content(data) == self._agents_written.get(agent_id):
            return  # nothing changed: no write
        self._write_file(f"{self._get_agent_path(session_id, agent_id)}/agent.json", data)
        self._agents_written[agent_id] = _content(data)

    def update_message(self, session_id: str, agent_id: str, session_message: SessionMessage, **kwargs: Any) -> None:
        # The record carries its own created_at; stock re-reads the file for it.
        session_message.updated_at = _now()
        path = self._get_message_path(session_id, agent_id, session_message.message_id)
        self._write_file(path, session_message.to_dict())

    def list_messages(
        self, session_id: str, agent_id: str, limit: int | None = None, offset: int = 0, **kwargs: Any
    ) -> list[SessionMessage]:
        # The start-up scan already parsed every intact message: the restore reads nothing twice.
        restored = self._restored
        if restored is not None and session_id == self.session_id and agent_id in restored:
            messages = restored.pop(agent_id)
            return messages[offset : None if limit is None else offset + limit]
        if session_id != self.session_id:
            return super().list_messages(session_id, agent_id, limit=limit, offset=offset, **kwargs)
        # A second restore in this process (an agent taking over after `detach`): what is on disk and what
        # is held in memory (a full or read-only flash), each file read through the held bytes first.
        directory = os.path.join(self._get_agent_path(session_id, agent_id), "messages")
        names: set[str] = set()
        with contextlib.suppress(FileNotFoundError):  # everything held: the flash never took the directory
            names.update(os.listdir(directory))
        names.update(os.path.basename(p) for p in self._held.paths_in(directory))
        indexed = sorted((i, n) for n in names if (i := message_index(n)) is not None)
        chosen = indexed[offset : None if limit is None else offset + limit]
        return [SessionMessage.from_dict(self._read_file(os.path.join(directory, n))) for _, n in chosen]


def detach(manager: object, agent: LocalAgent) -> None:
    """Let a new agent with `agent`'s id use `manager` (see `DurableFileSessionManager.detach`); for Strands'
    own repository managers, forget the old agent's bookkeeping so the new one restores from the store."""
    if isinstance(manager, DurableFileSessionManager):
        manager.detach(agent)
    elif isinstance(manager, RepositorySessionManager):
        manager._latest_agent_message.pop(agent.agent_id, None)
