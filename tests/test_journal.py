"""Logs to journald with structured fields, over its native datagram protocol, to a socket the test binds."""

from __future__ import annotations

import io
import logging
import os
import socket
import struct
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgevoice import journal, logs
from edgevoice.daemon.state import Event, StateMachine


def parse(data: bytes) -> dict[str, str]:
    """journald's native format: `KEY=value\\n`, or `KEY\\n<u64 le length><bytes>\\n`."""
    out: dict[str, str] = {}
    i = 0
    while i < len(data):
        nl = data.index(b"\n", i)
        line = data[i:nl]
        if b"=" in line:
            key, _, value = line.partition(b"=")
            out[key.decode()] = value.decode()
            i = nl + 1
        else:
            (n,) = struct.unpack("<Q", data[nl + 1 : nl + 9])
            out[line.decode()] = data[nl + 9 : nl + 9 + n].decode()
            assert data[nl + 9 + n : nl + 10 + n] == b"\n"
            i = nl + 10 + n
    return out


journald_stderr: list[io.TextIOWrapper] = []


def as_stderr(monkeypatch: pytest.MonkeyPatch) -> None:
    """stderr becomes the journal's stream (inside the test: pytest's capture sets sys.stderr per phase)."""
    monkeypatch.setattr(sys, "stderr", journald_stderr[-1])


@pytest.fixture
def journald(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    """A bound journal socket, stderr a file whose dev:inode is in JOURNAL_STREAM, as systemd arranges it."""
    path = tmp_path / "journal.socket"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(2)
    monkeypatch.setattr(journal, "SOCKET", str(path))
    err = (tmp_path / "stderr").open("w")
    st = os.fstat(err.fileno())
    monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
    monkeypatch.setattr(journal, "context", {})
    journald_stderr.append(err)
    root = logging.getLogger()
    saved = list(root.handlers), root.level
    try:
        yield sock
    finally:
        for h in list(root.handlers):
            root.removeHandler(h)
        for h in saved[0]:
            root.addHandler(h)
        root.setLevel(saved[1])
        sock.close()
        err.close()
        logs._forget_all()


def test_under_systemd_records_carry_the_session_the_state_and_the_reason(
    journald: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    as_stderr(monkeypatch)
    handler = logs.setup()
    assert isinstance(handler, journal.JournalHandler)
    journal.context["session"] = "kitchen-1"
    StateMachine().fire(Event.TURN_STARTED)
    rec = parse(journald.recv(65536))
    assert rec["MESSAGE"] == "edgevoice.daemon.state: state idle -> listening on turn_started"
    assert rec["EDGEVOICE_STATE"] == "listening" and rec["EDGEVOICE_SESSION"] == "kitchen-1"
    assert rec["PRIORITY"] == "6" and rec["SYSLOG_IDENTIFIER"] == "edgevoice" and rec["CODE_FUNC"] == "fire"
    # A reason that quotes a key is redacted in its field as in the message; a traceback travels whole.
    logs.register_secret("sk-evtest-Q7f3kZ9pLm2Xw8Rt5Yb1")
    try:
        raise ConnectionError("server said: bad key sk-evtest-Q7f3kZ9pLm2Xw8Rt5Yb1")
    except ConnectionError:
        logging.getLogger("edgevoice.daemon.connection").error(
            "model stopped: %s",
            "bad key sk-evtest-Q7f3kZ9pLm2Xw8Rt5Yb1",
            exc_info=True,
            extra={"reason": "bad key sk-evtest-Q7f3kZ9pLm2Xw8Rt5Yb1"},
        )
    raw = journald.recv(65536)
    assert b"Q7f3kZ9p" not in raw
    rec = parse(raw)
    assert rec["PRIORITY"] == "3" and rec["EDGEVOICE_REASON"] == "bad key [REDACTED]"
    assert "Traceback" in rec["MESSAGE"] and "\n" in rec["MESSAGE"]


def test_plain_lines_on_stderr_when_not_under_systemd(journald: socket.socket, monkeypatch: pytest.MonkeyPatch) -> None:
    as_stderr(monkeypatch)
    monkeypatch.setenv("JOURNAL_STREAM", "1:2")  # another stream's: stderr was redirected since
    buf = io.StringIO()
    handler = logs.setup(stream=buf)
    assert not isinstance(handler, journal.JournalHandler)
    StateMachine().fire(Event.TURN_STARTED)
    assert "INFO edgevoice.daemon.state: state idle -> listening" in buf.getvalue()
    monkeypatch.setenv("JOURNAL_STREAM", "1:2")
    assert not isinstance(logs.setup(), journal.JournalHandler)


def test_a_journal_that_went_away_gets_the_line_on_stderr(
    journald: socket.socket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    as_stderr(monkeypatch)
    handler = logs.setup()
    assert isinstance(handler, journal.JournalHandler)
    journald.close()
    (tmp_path / "journal.socket").unlink()
    logging.getLogger("edgevoice.x").warning("still here")
    sys.stderr.flush()
    assert "WARNING edgevoice.x: still here" in (tmp_path / "stderr").read_text()
