"""journald's native protocol, for structured fields: under systemd the daemon's records carry
`EDGEVOICE_SESSION`, `EDGEVOICE_STATE` and `EDGEVOICE_REASON` beside the message, so an operator can ask
`journalctl -u edgevoice EDGEVOICE_STATE=offline` or follow one session.

The protocol is a datagram of fields to `/run/systemd/journal/socket` (`KEY=value` lines; a value with a
newline, such as a traceback, as the key, a newline, its length as 64-bit little endian, the bytes and a
newline). systemd-python would do the same through libsystemd, but it is source-only on PyPI. `logs.setup`
picks this handler only when stderr is the journal's own stream (`$JOURNAL_STREAM`, as sd_journal_stream_fd
documents it); everywhere else logs stay plain lines on stderr.
"""

from __future__ import annotations

import logging
import os
import socket
import struct
import sys
from collections.abc import Mapping

SOCKET = "/run/systemd/journal/socket"

context: dict[str, str] = {}
"""Fields for every record from now on (`session`: the current session id, set by the daemon)."""

FIELDS = {"session": "EDGEVOICE_SESSION", "state": "EDGEVOICE_STATE", "reason": "EDGEVOICE_REASON"}
"""Record attributes (`log.info(..., extra={"state": ...})` or `context`) and the journal field each becomes."""

_PRIORITY = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6, logging.DEBUG: 7}


def stderr_is_journal(environ: Mapping[str, str] | None = None, fd: int | None = None) -> bool:
    """True when stderr is connected to journald (systemd sets `JOURNAL_STREAM=<dev>:<inode>` of it)."""
    value = (os.environ if environ is None else environ).get("JOURNAL_STREAM", "")
    try:
        dev, ino = (int(x) for x in value.split(":"))
        st = os.fstat(sys.stderr.fileno() if fd is None else fd)
    except (ValueError, OSError, AttributeError):
        return False
    return (st.st_dev, st.st_ino) == (dev, ino)


def encode(fields: Mapping[str, str]) -> bytes:
    out = bytearray()
    for key, value in fields.items():
        data = value.encode("utf-8", "replace")
        if b"\n" in data:
            out += key.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
        else:
            out += key.encode() + b"=" + data + b"\n"
    return bytes(out)


class JournalHandler(logging.Handler):
    """Sends each record to journald with its fields. A record journald will not take (the socket is gone,
    or it is larger than a datagram may be) is written to stderr instead, which is the journal too."""

    def __init__(self, path: str | None = None, identifier: str = "edgevoice") -> None:
        super().__init__()
        self.path = path or SOCKET
        self.identifier = identifier
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    def fields(self, record: logging.LogRecord) -> dict[str, str]:
        from .logs import redact  # the filter redacts message and args; these fields are ours to clean

        out = {
            "MESSAGE": self.format(record),
            "PRIORITY": str(_PRIORITY.get(record.levelno, 6)),
            "SYSLOG_IDENTIFIER": self.identifier,
            "LOGGER": record.name,
            "CODE_FILE": record.pathname,
            "CODE_LINE": str(record.lineno),
            "CODE_FUNC": record.funcName,
            "THREAD_NAME": record.threadName or "",
        }
        for attr, key in FIELDS.items():
            value = getattr(record, attr, None) or context.get(attr)
            if value:
                out[key] = redact(str(value))
        return out

    def emit(self, record: logging.LogRecord) -> None:
        try:
            data = encode(self.fields(record))
        except Exception:
            self.handleError(record)
            return
        try:
            self._sock.sendto(data, self.path)
        except OSError:
            try:
                sys.stderr.write(f"{record.levelname} {self.format(record)}\n")  # the format names the logger
            except Exception:
                self.handleError(record)

    def close(self) -> None:
        self._sock.close()
        super().close()
