"""What makes a stored file or directory usable: one verdict for the daemon's scan and the read-only views.

The scan (`scan.py`) quarantines what fails here and the viewer (`inspect.py`) skips and reports it, with
the same reason, so `edgevoice sessions show` never disagrees with what the daemon restores. No Strands
import: `edgevoice sessions` must stay fast.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from .jsonfile import BadFile

ROLES = ("user", "assistant")
MESSAGE_FIELDS = ("message", "message_id", "redact_message", "created_at", "updated_at")
SYMLINK = "a symlink (not followed)"
UNNUMBERED = "message file name without a number"  # stock Strands fails on int() of such a name


def check_dir(path: Path) -> None:
    """BadFile unless `path` is a real directory. Symlinks are never followed: a link could point the
    store (and the views) at another session, or outside session.dir. FileNotFoundError when absent."""
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        raise BadFile(SYMLINK)
    if not stat.S_ISDIR(st.st_mode):
        raise BadFile("not a directory")


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # JSON true is not an index


def check_session(data: dict[str, Any], session_id: str) -> None:
    if data.get("session_id") != session_id:
        raise BadFile(f"session_id is {data.get('session_id')!r}, expected {session_id!r}")
    if not isinstance(data.get("session_type"), str):
        raise BadFile("session_type missing")


def check_agent(data: dict[str, Any], agent_id: str) -> None:
    if data.get("agent_id") != agent_id:
        raise BadFile(f"agent_id is {data.get('agent_id')!r}, expected {agent_id!r}")
    for key in ("state", "conversation_manager_state"):
        if not isinstance(data.get(key), dict):
            raise BadFile(f"{key} missing or not an object")


def _valid_message(m: Any) -> bool:
    return (
        isinstance(m, dict)
        and m.get("role") in ROLES
        and isinstance(m.get("content"), list)
        and all(isinstance(block, dict) for block in m["content"])
    )


def check_message(data: dict[str, Any]) -> dict[str, Any]:
    """The fields of a usable message record (those Strands' SessionMessage takes), or BadFile."""
    for key in ("message", "redact_message"):
        m = data.get(key)
        if key == "redact_message" and m is None:
            continue
        if not _valid_message(m):
            raise BadFile(f"{key} has no valid role and content list")
    if not is_int(data.get("message_id")):
        raise BadFile("message_id missing or not an integer")
    for key in ("created_at", "updated_at"):
        if key in data and not isinstance(data[key], str):
            raise BadFile(f"{key} is not a string")
    return {k: data[k] for k in MESSAGE_FIELDS if k in data}
