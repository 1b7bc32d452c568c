"""Reading one stored JSON file, with a one-line reason when it cannot be used (no Strands import)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class BadFile(Exception):
    """A stored file that cannot be used; the message says why."""


def load_object(path: Path) -> dict[str, Any]:
    """The JSON object in `path`, or BadFile: a symlink, unreadable, empty, not JSON, not an object."""
    if path.is_symlink():
        raise BadFile("a symlink (not followed)")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise BadFile(f"unreadable ({e.strerror})") from None
    if not raw:
        raise BadFile("empty (zero length)")
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BadFile(f"not valid JSON, truncated or garbage ({e})") from None
    if not isinstance(data, dict):
        raise BadFile(f"not a JSON object ({type(data).__name__})")
    return data
