"""Writes the flash would not take, held in memory and retried: how the store keeps talking when the SD card
is full, read-only (Raspberry Pi OS remounts a failing card so) or otherwise unusable.

Every failed write is held (newest bytes per file, in order of first failure) and retried, oldest first,
before the next write and whenever `retry()` is called (the daemon does every 5 s). Reads of a held file
see the held bytes, so a restore after a failed repair still finds `session.json` and `agent.json`
(without them Strands would take the agent for new and number its messages from 0 again, over the
old ones). Paths the start-up scan blocked (a bad file it could not move aside, a directory it could not
read) are never written: their writes stay in memory for the life of the process and are named at exit.
No Strands import.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from .atomic import write_bytes

log = logging.getLogger(__name__)


def key(path: str | os.PathLike[str]) -> str:
    """One spelling per file: Strands joins strings, the scan joins Paths (`./x` vs `x`)."""
    return os.path.normpath(os.fspath(path))


class HeldWrites:
    def __init__(self) -> None:
        self._pending: dict[str, bytes] = {}
        self._blocked: dict[str, str] = {}  # path -> why
        self._failing: str | None = None  # what the first failure of the current outage said
        # The daemon builds the agent (and restores) in a thread while its 5 s poller retries on the loop.
        self._lock = threading.RLock()
        self.write_started: float | None = None
        """When (time.monotonic) the write in progress began, or None: the watchdog's sign of a hung flash."""

    # -- what cannot be written ------------------------------------------------------------------
    def block(self, paths: Iterable[Path], why: str) -> None:
        for p in paths:
            self._blocked.setdefault(key(p), why)

    def blocked(self, path: str) -> bool:
        k = key(path)
        return any(k == b or k.startswith(b + os.sep) for b in self._blocked)

    # -- writes ------------------------------------------------------------------------------------
    def write(self, path: str | os.PathLike[str], data: bytes) -> None:
        with self._lock, self._writing():
            self._write(key(path), data)

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        self.write_started = time.monotonic()
        try:
            yield
        finally:
            self.write_started = None

    def _write(self, k: str, data: bytes) -> None:
        if self.blocked(k):
            self._pending[k] = data
            return
        if self._landable() and not self._retry():
            self._pending[k] = data  # still failing: keep the newest bytes, in order of first failure
            return
        try:
            write_bytes(k, data)
        except OSError as e:
            # Any OSError, not only ENOSPC/EROFS: a card on its way out says EIO, a directory replaced by a
            # file says ENOTDIR. The conversation must outlive all of them.
            self._pending[k] = data
            if self._failing is None:
                self._failing = f"cannot write {k} ({e.strerror})"
                log.error(
                    "session store: %s; the conversation goes on, writes are kept in memory and retried",
                    self._failing,
                )
        else:
            self._pending.pop(k, None)

    def _landable(self) -> list[str]:
        return [k for k in self._pending if not self.blocked(k)]

    def retry(self) -> bool:
        """Try the held writes again, oldest first; True when none is left that may be written."""
        with self._lock, self._writing():
            return self._retry()

    def _retry(self) -> bool:
        for k in self._landable():
            try:
                write_bytes(k, self._pending[k])
            except OSError:
                return False
            del self._pending[k]
        if self._failing is not None:
            kept = len(self._pending)  # only writes to blocked paths are left
            log.warning(
                "session store: writes resumed; %s",
                f"{kept} write(s) to paths the scan left blocked stay in memory"
                if kept
                else "everything held in memory is on disk",
            )
            self._failing = None
        return True

    def read(self, path: str | os.PathLike[str]) -> bytes | None:
        """The held bytes of `path`, if a write of it is held."""
        with self._lock:
            return self._pending.get(key(path))

    def paths_in(self, directory: str | os.PathLike[str]) -> list[str]:
        """Held files directly in `directory`."""
        d = key(directory)
        with self._lock:
            return [k for k in self._pending if os.path.dirname(k) == d]

    # -- status ---------------------------------------------------------------------------------
    @property
    def count(self) -> int:
        return len(self._pending)

    @property
    def problem(self) -> str | None:
        """One line saying why the store is not fully on the flash now, or None when it is."""
        if self._failing is not None:
            return f"{self._failing}; {len(self._pending)} write(s) held in memory"
        if self._blocked:
            path, why = next(iter(self._blocked.items()))
            more = f" (and {len(self._blocked) - 1} more)" if len(self._blocked) > 1 else ""
            return f"{path}: {why}{more}; writes there are kept in memory"
        return None

    def close(self) -> list[str]:
        """A last retry; returns (and logs) the files whose latest bytes never reached the flash."""
        with self._lock:
            self._retry()
            lost = list(self._pending)
        if lost:
            log.error(
                "session store: %d write(s) held in memory are lost at exit, never stored: %s",
                len(lost),
                ", ".join(lost),
            )
        return lost
