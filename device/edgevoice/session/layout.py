"""Strands' session layout on disk, plus the few files edgevoice adds beside it.

    <storage_dir>/session_<id>/session.json
                              /agents/agent_<id>/agent.json
                              /agents/agent_<id>/messages/message_<n>.json
                              /quarantine/            (edgevoice: files the start-up scan set aside)
    <storage_dir>/.sync/session_<id>.json     (edgevoice: what S3 confirmed, `sync/state.py`)
"""

from __future__ import annotations

from pathlib import Path

SESSION_PREFIX = "session_"
AGENT_PREFIX = "agent_"
MESSAGE_PREFIX = "message_"
QUARANTINE = "quarantine"
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
