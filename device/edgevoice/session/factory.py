"""Builds the daemon's session manager from settings.

For now it is Strands' own FileSessionManager plus one fix: Strands 1.62's bidi loop appends each
transcript message empty at its start event and fills it in with MessageUpdatedEvent, which the
stock managers ignore; without the fix every stored transcript is empty and nothing is remembered.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from strands.hooks import MessageUpdatedEvent
from strands.hooks.registry import HookRegistry
from strands.session.file_session_manager import FileSessionManager
from strands.types.agent import LocalAgent

from ..config import ConfigError, SessionSettings, validate_session_id

log = logging.getLogger(__name__)

class TranscriptFileSessionManager(FileSessionManager):
    """FileSessionManager that also stores message updates (the final text of bidi transcripts)."""

    def register_hooks(self, registry: HookRegistry, **kwargs: Any) -> None:
        super().register_hooks(registry, **kwargs)
        registry.add_callback(MessageUpdatedEvent, self._on_message_updated)

    def _on_message_updated(self, event: MessageUpdatedEvent[LocalAgent]) -> None:
        agent_id = event.agent.agent_id
        for record in reversed(self._held_records.get(agent_id, [])):
            if record.message.get("tracking_id") == event.tracking_id:
                record.message = event.message
                self.session_repository.update_message(self.session_id, agent_id, record)
                return
        log.warning("tracking_id=<%s> | updated message not found in the session", event.tracking_id)


def make_session_manager(settings: SessionSettings) -> TranscriptFileSessionManager:
    session_id = validate_session_id(settings.session_id)
    storage = Path(settings.dir)
    try:
        storage.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as e:
        raise ConfigError(f"config: session.dir {str(storage)!r} cannot be created ({e.strerror})") from None
    if not os.access(storage, os.W_OK):
        raise ConfigError(f"config: session.dir {str(storage)!r} is not writable")
    return TranscriptFileSessionManager(session_id=session_id, storage_dir=str(storage))
