"""The durable session store: `DurableFileSessionManager`, and the seam the daemon builds it through."""

from .durable import DurableFileSessionManager
from .factory import make_session_manager
from .scan import ScanReport

__all__ = ["DurableFileSessionManager", "ScanReport", "make_session_manager"]
