"""The device's current session id: `<session.dir>/current` when it holds a valid id, else the configured one.

`edgevoice sessions reset` writes a new id there; the old session stays on disk untouched.
A corrupt `current` file is logged and ignored: the device always has a session to talk in.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

from ..config import ConfigError, SessionSettings, validate_session_id
from .atomic import write_bytes
from .layout import session_dir

log = logging.getLogger(__name__)

CURRENT_FILE = "current"
_MAX_READ = 512  # a valid id is at most 128 characters; anything longer is corrupt
_STAMP = "%Y%m%dT%H%M%SZ"


def read_current(storage_dir: str | Path) -> str | None:
    """The id in `<storage_dir>/current`, or None when the file is absent or does not hold a valid id."""
    path = Path(storage_dir) / CURRENT_FILE
    try:
        with open(path, "rb") as f:
            raw = f.read(_MAX_READ + 1)
    except FileNotFoundError:
        return None
    except OSError as e:
        log.warning("session: cannot read %s (%s); using session.session_id", path, e.strerror)
        return None
    try:
        text = raw.decode("utf-8")
        if len(raw) > _MAX_READ or text.count("\n") > 1:
            raise ValueError("more than one short line")
        return validate_session_id(text.strip(), key=str(path))
    except (UnicodeDecodeError, ValueError, ConfigError) as e:
        # ConfigError is a ValueError; both say why the content is unusable.
        log.warning("session: %s holds no valid session id (%s); using session.session_id", path, e)
        return None


def current_session_id(settings: SessionSettings) -> str:
    """The session the device talks in now."""
    return read_current(settings.dir) or validate_session_id(settings.session_id)


def new_session_id(settings: SessionSettings, now: datetime) -> str:
    """`<session.session_id>-<UTC time>`, made unique against stored sessions and the current id."""
    stamp = now.astimezone(UTC).strftime(_STAMP)
    base = validate_session_id(settings.session_id)[: 128 - len(stamp) - 1 - 4]  # room for "-NNN"
    taken = {current_session_id(settings)}
    candidate = f"{base}-{stamp}"
    n = 1
    while candidate in taken or session_dir(settings.dir, candidate).exists():
        n += 1
        candidate = f"{base}-{stamp}-{n}"
    return validate_session_id(candidate)


def set_current(storage_dir: str | Path, session_id: str) -> None:
    """Make `session_id` current: one line, written atomically and durably (0600; dirs 0700)."""
    validate_session_id(session_id)
    write_bytes(Path(storage_dir) / CURRENT_FILE, f"{session_id}\n".encode())
