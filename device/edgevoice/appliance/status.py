"""What the daemon is doing now, told to systemd (`STATUS=`) and to `edgevoice status` (a JSON file).

One `Status` holds the facts (the voice loop's state, the connection's phase, the session, the provider,
the last error, the store's trouble, the sync backlog); every change re-renders the one line a person reads
in `systemctl status` (`listening`, `offline, 3 sessions waiting to sync`, `idle, storage read-only`) and
rewrites the file atomically. No transcript and no secret is ever part of it: the last error is the
connection's own reason line, which went through the same words the log uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from .notify import Notifier

log = logging.getLogger(__name__)

DEFAULT_PATH = "/run/edgevoice/status.json"
"""Where the unit's daemon writes it (`RuntimeDirectory=edgevoice`), and where `edgevoice status` looks."""


def status_path(configured: str, environ: Mapping[str, str] | None = None) -> str:
    """The daemon's status file: `service.status_file`, else `$RUNTIME_DIRECTORY/status.json` under systemd,
    else "" (none: a daemon run by hand, a test, the demo)."""
    if configured:
        return configured
    runtime = (os.environ if environ is None else environ).get("RUNTIME_DIRECTORY", "")
    # systemd lists one directory per RuntimeDirectory= entry, colon-separated; ours is the first.
    return os.path.join(runtime.split(":")[0], "status.json") if runtime else ""


FORMAT = 1
"""Version of the status file's layout; `edgevoice status` refuses others by name."""


@dataclass(frozen=True)
class Facts:
    state: str = "starting"
    """The voice loop's state (`daemon/state.py`: idle, listening, thinking, speaking, offline), or
    `starting` before the first frame, `stopping` after SIGTERM."""
    connection: str = "stopped"
    """The connection's phase (`daemon/connection.py`): connecting, connected, backing_off, fallback, idle."""
    session_id: str = ""
    provider: str = ""
    last_error: str | None = None
    """The connection's last failure reason, kept after it recovered (with `last_error_at`)."""
    last_error_at: float | None = None
    storage: str | None = None
    """Why the conversation is not all on the flash now (the store's own line), or None."""
    capture: str | None = None
    """What keeps the microphone from delivering (`waiting for the microphone <device>`), or None."""
    sync_backlog: int | None = None
    """Sessions not yet confirmed in S3; None when sync is off or not counted yet."""


def line(f: Facts) -> str:
    """The one line `systemctl status` shows."""
    parts = [f.state]
    if f.capture:
        parts.append(f.capture)
    if f.connection == "fallback":
        parts.append("offline model answering")
    if f.storage:
        parts.append("storage read-only" if "read-only" in f.storage.lower() else f"storage: {f.storage}")
    if f.sync_backlog:
        noun = "session" if f.sync_backlog == 1 else "sessions"
        parts.append(f"{f.sync_backlog} {noun} waiting to sync")
    return ", ".join(parts)


class Status:
    """The facts, and where they go on every change: `notifier` (STATUS=) and `path` (empty: no file)."""

    def __init__(self, notifier: Notifier, path: str, *, clock: Callable[[], float] = time.time, **facts: Any) -> None:
        self._notifier = notifier
        self._path = Path(path) if path else None
        self._clock = clock
        self._started = clock()
        self.facts = Facts(**facts)
        self._sent: str | None = None
        self._file_broken = False

    def update(self, **changes: Any) -> None:
        if changes.get("last_error") is not None:
            from ..logs import redact  # the file is read by anyone who can run `edgevoice status`

            changes["last_error"] = redact(changes["last_error"])
            changes["last_error_at"] = self._clock()
        new = replace(self.facts, **changes)
        if new == self.facts and self._sent is not None:
            return
        self.facts = new
        self.publish()

    def line(self) -> str:
        return line(self.facts)

    def publish(self) -> None:
        text = line(self.facts)
        if text != self._sent:
            self._sent = text
            self._notifier.send(f"STATUS={text}")
        self._write()

    def as_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "pid": os.getpid(),
            "started_at": self._started,
            "updated_at": self._clock(),
            "status": line(self.facts),
            **asdict(self.facts),
        }

    def _write(self) -> None:
        if self._path is None or self._file_broken:
            return
        tmp = self._path.with_name(f".{self._path.name}.{os.getpid()}.tmp")
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(self.as_dict()) + "\n")
            # Readable by anyone on the device (no secret is in it): `edgevoice status` without sudo, though
            # the unit's UMask=0077 would make it the service user's alone.
            tmp.chmod(0o644)
            # /run is a tmpfs: the rename is all the atomicity a reader needs, and there is no flash to fsync.
            os.replace(tmp, self._path)
        except OSError as e:
            self._file_broken = True  # once: a daemon run by hand as a user cannot write /run/edgevoice
            log.warning(
                "status: cannot write %s (%s); `edgevoice status` will not see this daemon", self._path, e.strerror
            )
            with contextlib.suppress(OSError):
                tmp.unlink()

    def remove(self) -> None:
        """At exit: a stale file would tell `edgevoice status` that a dead daemon is listening."""
        if self._path is not None and not self._file_broken:
            with contextlib.suppress(OSError):
                self._path.unlink()


class SyncBacklog:
    """The service that counts the sessions sync has not confirmed, every `period_s` and whenever poked (the
    connection changed phase: a new session may be on disk, and offline is when the count matters), in a
    thread (it lists the flash), into `status`. Only run when sync is configured."""

    def __init__(self, status: Status, storage_dir: str, period_s: float = 60.0) -> None:
        self._status = status
        self._dir = storage_dir
        self._period_s = period_s
        self._poked: asyncio.Event | None = None

    def poke(self) -> None:
        """Count again now (call on the loop)."""
        if self._poked is not None:
            self._poked.set()

    def count(self) -> int | None:
        from ..session.inspect import StoreError, list_sessions

        try:
            return sum(not s.synced for s in list_sessions(self._dir))
        except (StoreError, OSError):
            return None  # no store yet, or unreadable: the store's own status says so

    async def run(self) -> None:
        self._poked = poked = asyncio.Event()
        while True:
            poked.clear()
            self._status.update(sync_backlog=await asyncio.to_thread(self.count))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(poked.wait(), self._period_s)


class Watch:
    """The service that copies facts that change without an event into `status` every `period_s`:
    `facts` maps a field of `Facts` to what reads it (the store's trouble, the microphone's absence)."""

    def __init__(self, status: Status, facts: Mapping[str, Callable[[], object]], period_s: float = 2.0) -> None:
        self._status = status
        self._facts = dict(facts)
        self._period_s = period_s

    async def run(self) -> None:
        while True:
            self._status.update(**{name: read() for name, read in self._facts.items()})
            await asyncio.sleep(self._period_s)
