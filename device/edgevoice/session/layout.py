"""Strands' session layout on disk, plus the few files edgevoice adds beside it.

    <storage_dir>/session_<id>/session.json
                              /agents/agent_<id>/agent.json
                              /agents/agent_<id>/messages/message_<n>.json
                              /quarantine/            (edgevoice: files the start-up scan set aside)
                              /.synced                (edgevoice: written by the S3 sync service)
"""

from __future__ import annotations

import os
from pathlib import Path

SESSION_PREFIX = "session_"
AGENT_PREFIX = "agent_"
MESSAGE_PREFIX = "message_"
QUARANTINE = "quarantine"
SYNCED_MARKER = ".synced"
# Temp files: ours and stock Strands' (a crash can leave either behind).
TEMP_PREFIXES = (".edgevoice_", ".strands_")
TEMP_SUFFIX = ".tmp"


def session_dir(storage_dir: str | Path, session_id: str) -> Path:
    return Path(storage_dir) / f"{SESSION_PREFIX}{session_id}"


def looks_like_message(name: str) -> bool:
    return name.startswith(MESSAGE_PREFIX) and name.endswith(".json")


def message_index(name: str) -> int | None:
    """n for `message_<n>.json`, else None."""
    if not (name.startswith(MESSAGE_PREFIX) and name.endswith(".json")):
        return None
    digits = name[len(MESSAGE_PREFIX) : -5]
    # ASCII only: str.isdigit() also takes "²", which int() refuses.
    return int(digits) if digits.isascii() and digits.isdigit() else None


def is_temp(name: str) -> bool:
    return name.startswith(TEMP_PREFIXES) and name.endswith(TEMP_SUFFIX)


def newest_mtime(path: Path, *, skip: tuple[str, ...] = (QUARANTINE, SYNCED_MARKER)) -> float:
    """Newest mtime of any file under `path` (top-level names in `skip` left out; 0.0 if none).

    Files only: renaming the marker into place bumps its directory's mtime past the marker's own."""
    newest = 0.0
    for root, dirs, files in os.walk(path):
        if Path(root) == path:
            dirs[:] = [d for d in dirs if d not in skip]
            files = [f for f in files if f not in skip]
        for name in files:
            try:
                newest = max(newest, os.lstat(os.path.join(root, name)).st_mtime)
            except FileNotFoundError:
                continue
    return newest


def is_synced(session_path: Path) -> bool:
    """True when the sync service's marker is at least as new as everything else in the session."""
    marker = session_path / SYNCED_MARKER
    try:
        marked = marker.stat().st_mtime
    except FileNotFoundError:
        return False
    return marked >= newest_mtime(session_path)


def mark_synced(session_path: Path) -> None:
    """What the sync service writes once everything in the session is uploaded."""
    from .atomic import write_bytes

    write_bytes(session_path / SYNCED_MARKER, b"")
