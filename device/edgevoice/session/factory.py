"""Builds the daemon's session manager from settings."""

from __future__ import annotations

import os
from pathlib import Path

from ..config import ConfigError, SessionSettings
from .atomic import make_dirs
from .durable import DurableFileSessionManager


def make_session_manager(settings: SessionSettings, session_id: str | None = None) -> DurableFileSessionManager:
    """The store for `session_id` (default: the configured one) under `session.dir`."""
    storage = Path(settings.dir)
    try:
        make_dirs(storage)
    except OSError as e:
        raise ConfigError(f"config: session.dir {str(storage)!r} cannot be created ({e.strerror})") from None
    if not os.access(storage, os.W_OK):
        raise ConfigError(f"config: session.dir {str(storage)!r} is not writable")
    return DurableFileSessionManager(session_id or settings.session_id, storage_dir=str(storage))
