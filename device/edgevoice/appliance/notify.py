"""systemd's notify protocol (sd_notify(3)), spoken directly: one datagram of `KEY=value` lines to the
AF_UNIX socket named by `$NOTIFY_SOCKET`.

No libsystemd: the protocol is a datagram, and systemd-python is source-only on PyPI (it compiles against
libsystemd-dev) with no watchdog helper anyway. What the daemon sends is in `appliance/watchdog.py` and
`appliance/status.py`; this module only knows how.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger(__name__)


class Notifier:
    """Sends to the service manager when one listens (`NOTIFY_SOCKET` set), else does nothing.

    `address` is a filesystem path or, with a leading `@`, a Linux abstract socket name. Sends never
    block and never raise: a manager that went away (or a full socket buffer) costs a debug line, not
    the daemon."""

    def __init__(self, address: str | None, watchdog_s: float | None = None) -> None:
        self.address = address
        self.watchdog_s = watchdog_s
        """Seconds between watchdog pings, or None: no watchdog was asked for (`watchdog_interval_s`)."""
        self._sock: socket.socket | None = None
        self._warned = False

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None, *, unset: bool = True) -> Notifier:
        """The notifier `$NOTIFY_SOCKET` names, with the watchdog interval of `$WATCHDOG_USEC`. `unset`
        removes those variables from os.environ, as sd_notify's unset_environment does: espeak-ng and other
        children must not think the manager is theirs to talk to."""
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET") or None
        watchdog_s = watchdog_interval_s(env) if address else None
        if unset and environ is None:
            for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
                os.environ.pop(name, None)
        return cls(address, watchdog_s)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *lines: str) -> bool:
        """Send `lines` (each `KEY=value`, no newline inside) as one datagram; True when it went."""
        if self.address is None:
            return False
        for line in lines:
            if "\n" in line or "=" not in line:
                raise ValueError(f"not a KEY=value line: {line!r}")  # a bug of the caller, not an outage
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)
            self._sock.sendto("\n".join(lines).encode(), target)
        except OSError as e:
            if not self._warned:  # once: a manager that went away would otherwise fill the log
                self._warned = True
                log.warning("service manager: cannot notify %s (%s)", self.address, e.strerror or e)
            return False
        return True

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def watchdog_interval_s(environ: Mapping[str, str] | None = None, pid: int | None = None) -> float | None:
    """Seconds between watchdog pings for this process, or None when no watchdog is asked for.

    `WATCHDOG_USEC` is the service's `WatchdogSec=`; `WATCHDOG_PID`, when set, must name this process
    (otherwise the request was for another one, e.g. a parent shell). Pings go at a third of the timeout:
    sd_watchdog_enabled(3) asks for at least every half, and a third leaves room for one late tick."""
    env = os.environ if environ is None else environ
    raw = env.get("WATCHDOG_USEC")
    if not raw:
        return None
    owner = env.get("WATCHDOG_PID")
    if owner and owner.strip() != str(os.getpid() if pid is None else pid):
        return None
    try:
        usec = int(raw)
    except ValueError:
        log.warning("service manager: WATCHDOG_USEC=%r is not a number; no watchdog", raw)
        return None
    return usec / 1e6 / 3 if usec > 0 else None
