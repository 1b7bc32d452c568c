"""Builds the daemon's session manager from settings."""

from __future__ import annotations

import logging
from pathlib import Path

from ..config import SessionSettings
from .current import current_session_id
from .durable import DurableFileSessionManager
from .inspect import StoreError
from .retention import enforce

log = logging.getLogger(__name__)


def make_session_manager(settings: SessionSettings, session_id: str | None = None) -> DurableFileSessionManager:
    """The store for `session_id` (default: the device's current one, see `current.py`) under
    `session.dir`, after retention has made room.

    An unusable `session.dir` (read-only, full, missing and not creatable, not a directory) does not stop
    the speaker: the manager keeps the conversation in memory, says so once in the log and in
    `storage_problem`, and lands it when the flash takes writes again."""
    storage = Path(settings.dir)
    sid = session_id or current_session_id(settings)
    try:
        enforce(settings, keep={sid})  # retention: only synced sessions, never the one in use
    except (OSError, StoreError) as e:
        log.error("retention: skipped, session.dir %r cannot be used (%s)", str(storage), e)
    return DurableFileSessionManager(sid, storage_dir=str(storage))
