"""One writer per `session.dir`: the daemon holds an exclusive lock on the directory for its whole life.

Two daemons on one store (the service running and someone starting `edgevoice run` by hand) would number
their messages alike and write over each other's. `flock(LOCK_EX | LOCK_NB)` on an `O_RDONLY | O_DIRECTORY`
descriptor of `session.dir` keeps the second one out; it works on a read-only filesystem too, needs no
file of its own (nothing to go stale after a crash: the kernel drops the lock with the process), and the
read-only `edgevoice sessions list|show|export` never take it. The holder's pid comes from /proc/locks.
No Strands import.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
from pathlib import Path

from ..errors import UserError
from .atomic import make_dirs

log = logging.getLogger(__name__)


class StoreBusy(UserError):
    """Another process holds the lock on `session.dir`."""


class StoreLock:
    """The held lock; `release()` (or the process's end) lets the next daemon in."""

    def __init__(self, fd: int, path: Path) -> None:
        self._fd: int | None = fd
        self.path = path

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the only descriptor drops the flock
            self._fd = None

    def __enter__(self) -> StoreLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def holder_pid(st: os.stat_result, locks: str = "/proc/locks") -> int | None:
    """The pid holding a FLOCK on the inode `st`, from /proc/locks; None when it cannot be told
    (another pid namespace shows 0 or nothing)."""
    want = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    try:
        with open(locks, encoding="ascii", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        # "1: FLOCK  ADVISORY  WRITE 1234 00:2b:5678 0 EOF"; waiters are listed with "->" after the number.
        parts = line.split()
        if len(parts) >= 6 and parts[1] == "FLOCK" and parts[5] == want:
            with contextlib.suppress(ValueError):
                pid = int(parts[4])
                return pid if pid > 0 else None
    return None


def lock_store(storage_dir: str | os.PathLike[str]) -> StoreLock | None:
    """Take the exclusive lock on `storage_dir` (created if missing) for as long as the result is held.

    StoreBusy (a UserError: one line, exit 2) when another process holds it. None, with a warning, when
    the directory cannot be opened or locked at all (a broken or missing flash): the daemon still runs,
    its store then holds the conversation in memory anyway."""
    path = Path(storage_dir)
    with contextlib.suppress(OSError):  # read-only or full: the open below says what matters
        make_dirs(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        log.warning("session store: cannot lock session.dir %r (%s); a second edgevoice would not be kept out",
                    str(path), e.strerror)
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        st = os.fstat(fd)
        os.close(fd)
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            pid = holder_pid(st)
            who = f" (pid {pid})" if pid is not None else ""
            raise StoreBusy(f"session.dir {str(path)!r} is in use by another edgevoice{who}") from None
        log.warning("session store: cannot lock session.dir %r (%s); a second edgevoice would not be kept out",
                    str(path), e.strerror)
        return None
    return StoreLock(fd, path)
