"""Retention: caps on the total bytes and the age of stored sessions.

Only sessions already synced (the sync service's marker is newer than everything else in them) are
ever deleted, least recently active first, and never one the caller keeps (the current session).
When the cap cannot be met that way, the store stays over it and says so in the log: an unsynced
conversation is worth more than free space.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Collection, Iterable
from pathlib import Path

from ..config import SessionSettings
from ..sync.state import forget, is_synced
from .atomic import fsync_dir
from .current import current_session_id
from .inspect import SessionInfo, list_sessions

log = logging.getLogger(__name__)

DAY_S = 86400.0
# A session is first renamed to this prefix (one atomic step, never half-listed), then removed.
DELETING_PREFIX = ".deleting-"


def select_for_deletion(
    sessions: Iterable[SessionInfo],
    max_bytes: int,
    max_age_days: float,
    now: float,
    keep: Collection[str] = (),
) -> list[SessionInfo]:
    """The sessions to delete, least recently active first. Pure: decides over a listing only.

    Every synced session not in `keep` whose last activity is more than `max_age_days` before `now`
    goes; then, while the total of all sessions is above `max_bytes`, the least recently active
    remaining synced ones. 0 disables either cap.
    """
    listing = list(sessions)
    candidates = sorted(
        (s for s in listing if s.synced and s.session_id not in keep),
        key=lambda s: (s.last_activity, s.session_id),
    )
    doomed: list[SessionInfo] = []
    if max_age_days > 0:
        cutoff = now - max_age_days * DAY_S
        doomed = [s for s in candidates if s.last_activity < cutoff]
    if max_bytes > 0:
        total = sum(s.size_bytes for s in listing) - sum(s.size_bytes for s in doomed)
        for s in candidates[len(doomed) :]:  # doomed is a prefix: candidates are oldest first
            if total <= max_bytes:
                break
            doomed.append(s)
            total -= s.size_bytes
    return doomed


def plan_retention(
    storage_dir: str | Path, max_bytes: int, max_age_days: float, now: float, keep: Collection[str] = ()
) -> list[SessionInfo]:
    """What `apply_retention` would delete now (reads sizes and mtimes only)."""
    if max_bytes <= 0 and max_age_days <= 0:
        return []
    return select_for_deletion(list_sessions(storage_dir), max_bytes, max_age_days, now, keep)


def _remove_leftovers(storage: Path) -> None:
    """Finish deletions a crash interrupted."""
    for entry in os.scandir(storage):
        if entry.name.startswith(DELETING_PREFIX) and entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
            log.info("retention: removed %s left by an interrupted deletion", entry.path)
            fsync_dir(storage)


def _delete(storage: Path, s: SessionInfo, why: str) -> bool:
    # Re-checked at the last moment: the daemon may have written to it since the plan.
    if not is_synced(s.path):
        log.info("retention: kept session %s: written since it was synced", s.session_id)
        return False
    doomed = storage / f"{DELETING_PREFIX}{s.path.name}"
    try:
        os.rename(s.path, doomed)
        fsync_dir(storage)
        shutil.rmtree(doomed)
        fsync_dir(storage)
        forget(s.path)
    except OSError as e:
        log.error("retention: cannot delete session %s (%s): %s", s.session_id, s.path, e.strerror)
        return False
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(s.last_activity))
    log.info(
        "retention: deleted session %s (%d bytes, %d messages, last activity %s): %s",
        s.session_id,
        s.size_bytes,
        s.message_count,
        stamp,
        why,
    )
    return True


def apply_retention(
    storage_dir: str | Path, max_bytes: int, max_age_days: float, now: float, keep: Collection[str] = ()
) -> list[SessionInfo]:
    """Delete what `plan_retention` says, durably (the parent directory fsynced); returns what went."""
    storage = Path(storage_dir)
    if max_bytes <= 0 and max_age_days <= 0:
        return []
    _remove_leftovers(storage)
    listing = list_sessions(storage)
    deleted = []
    cutoff = now - max_age_days * DAY_S
    for s in select_for_deletion(listing, max_bytes, max_age_days, now, keep):
        aged = max_age_days > 0 and s.last_activity < cutoff
        why = f"older than {max_age_days:g} days" if aged else f"over session.max_bytes {max_bytes}"
        if _delete(storage, s, why):
            deleted.append(s)
    total = sum(s.size_bytes for s in listing) - sum(s.size_bytes for s in deleted)
    if 0 < max_bytes < total:
        log.warning(
            "retention: %d bytes stored, over session.max_bytes %d: the rest is unsynced or current", total, max_bytes
        )
    return deleted


def enforce(settings: SessionSettings, now: float | None = None, keep: Collection[str] = ()) -> list[SessionInfo]:
    """Retention as configured; the current session (and any id in `keep`) is never deleted."""
    return apply_retention(
        settings.dir,
        settings.max_bytes,
        settings.max_age_days,
        time.time() if now is None else now,
        {current_session_id(settings), *keep},
    )
