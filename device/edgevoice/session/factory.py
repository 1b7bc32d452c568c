"""Builds the daemon's session manager from settings."""

from __future__ import annotations

import os
from pathlib import Path

from ..config import ConfigError, SessionSettings
from .atomic import make_dirs
from .current import current_session_id
from .durable import DurableFileSessionManager
from .retention import enforce


def make_session_manager(settings: SessionSettings, session_id: str | None = None) -> DurableFileSessionManager:
    """The store for `session_id` (default: the device's current one, see `current.py`) under
    `session.dir`, after retention has made room."""
    storage = Path(settings.dir)
    try:
        make_dirs(storage)
    except OSError as e:
        raise ConfigError(f"config: session.dir {str(storage)!r} cannot be created ({e.strerror})") from None
    if not os.access(storage, os.W_OK):
        raise ConfigError(f"config: session.dir {str(storage)!r} is not writable")
    sid = session_id or current_session_id(settings)
    enforce(settings, keep={sid})  # retention: only synced sessions, never the one in use
    return DurableFileSessionManager(sid, storage_dir=str(storage))
