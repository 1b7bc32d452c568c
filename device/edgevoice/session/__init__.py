"""The session store seam: the daemon gets its session manager from `make_session_manager`."""

from .factory import TranscriptFileSessionManager, make_session_manager

__all__ = ["TranscriptFileSessionManager", "make_session_manager"]
