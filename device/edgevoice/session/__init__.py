"""The durable session store: `DurableFileSessionManager`, and the seam the daemon builds it through.

Loaded lazily: `edgevoice sessions` reads stored sessions without importing Strands.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .durable import DurableFileSessionManager
    from .factory import make_session_manager
    from .scan import ScanReport

__all__ = ["DurableFileSessionManager", "ScanReport", "make_session_manager"]


def __getattr__(name: str) -> Any:
    if name == "DurableFileSessionManager":
        from .durable import DurableFileSessionManager

        return DurableFileSessionManager
    if name == "make_session_manager":
        from .factory import make_session_manager

        return make_session_manager
    if name == "ScanReport":
        from .scan import ScanReport

        return ScanReport
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
