"""The start-up scan: make any session directory restorable before Strands reads it.

Unreadable, truncated or schema-invalid files, symlinks, and files where a directory belongs (or the
reverse) move to `session_<id>/quarantine/` with a `.reason` file beside them; stale temp files go;
message files are renumbered without gaps and never over another file (`renumber.py`); a missing or bad
`session.json`/`agent.json` is written anew, so a restore always gets every intact message.

The scan never fails because of what is on disk or because the flash refuses: errors are caught per file
and per directory. What it could not do is reported, and `blocked` names the paths nothing may be
written to: a bad file it could not move aside (a write there would destroy it) and a directory it could
not read (a write there could replace a message it did not see). It parses every message once and hands
the parsed messages to the restore, which then needs no second read.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from strands.types.session import Session, SessionAgent, SessionMessage, SessionType, decode_bytes_values

from .atomic import durable_rename, make_dirs, write_bytes
from .held import HeldWrites
from .jsonfile import BadFile, load_object
from .layout import AGENT_PREFIX, QUARANTINE, is_temp, looks_like_message, message_index, session_dir
from .renumber import Entry, message_name, order_key, renumber
from .validate import UNNUMBERED, check_agent, check_dir, check_message, check_session

log = logging.getLogger(__name__)

@dataclass
class ScanReport:
    quarantined: list[tuple[str, str]] = field(default_factory=list)
    """(path relative to the session directory, why) for every file or directory set aside."""
    skipped: list[tuple[str, str]] = field(default_factory=list)
    """Bad files that could not be moved (read-only flash): left in place, not restored, never written over."""
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    """Directories that could not be read: nothing is restored from or written into them."""
    temp_removed: int = 0
    renumbered: int = 0
    rewritten: list[str] = field(default_factory=list)
    """session.json / agent.json files written anew (or held in memory when the flash refused)."""

    @property
    def clean(self) -> bool:
        return not (
            self.quarantined
            or self.skipped
            or self.unreadable
            or self.temp_removed
            or self.renumbered
            or self.rewritten
        )


@dataclass
class ScanResult:
    report: ScanReport
    messages: dict[str, list[SessionMessage]]
    """agent id -> its intact messages in order, as they are on disk after the scan."""
    blocked: list[Path] = field(default_factory=list)
    """Paths (files, or directories with all below them) that must not be written."""


def dumps(data: dict[str, Any]) -> bytes:
    """The bytes Strands' FileSessionManager would write for `data` (same formatting)."""
    return json.dumps(data, indent=2, ensure_ascii=False).encode("utf-8")


def _session_agent(data: dict[str, Any], agent_id: str) -> SessionAgent:
    check_agent(data, agent_id)
    try:
        return SessionAgent.from_dict(data)
    except Exception as e:
        raise BadFile(f"not a session agent: {e}") from None


def _session_message(data: dict[str, Any]) -> SessionMessage:
    fields = check_message(data)
    try:
        # Built directly: SessionMessage.from_dict inspects the class signature once per key, which
        # was three quarters of a 1,000-message restore.
        return SessionMessage(**decode_bytes_values(fields))
    except Exception as e:
        raise BadFile(f"not a session message: {e}") from None


class _Scanner:
    def __init__(self, root: Path, held: HeldWrites) -> None:
        self.root = root
        self.held = held  # writes through it are held in memory when the flash refuses them
        self.report = ScanReport()
        self.blocked: list[Path] = []

    def block(self, path: Path, why: str) -> None:
        # At once, not after the scan: a rewrite of a blocked file (agent.json) must stay in memory.
        self.blocked.append(path)
        self.held.block([path], why)

    def rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix() or "."

    def quarantine(self, path: Path, why: str) -> bool:
        """Move `path` aside; False (and `path` blocked) when it cannot be moved."""
        rel = self.rel(path)
        qdir = self.root / QUARANTINE
        name = rel.replace("/", "__")
        target = qdir / name
        n = 1
        while os.path.lexists(target) or os.path.lexists(f"{target}.reason"):
            target = qdir / f"{name}.{n}"
            n += 1
        try:
            durable_rename(path, target)
        except OSError as e:
            # Read-only flash, or `quarantine` is not a directory: it stays where it is, is not restored,
            # and nothing may be written or renamed onto it.
            log.error("session scan: cannot quarantine %s (%s): %s; leaving it in place", rel, why, e.strerror)
            self.report.skipped.append((rel, why))
            self.block(path, f"a bad file the start-up scan could not move aside ({why})")
            return False
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        with contextlib.suppress(OSError):  # the file is aside; a missing note only loses the reason
            write_bytes(target.with_name(target.name + ".reason"), f"{stamp} {why}\n".encode())
        self.report.quarantined.append((rel, why))
        log.warning("session scan: quarantined %s: %s", rel, why)
        return True

    def unreadable(self, path: Path, e: OSError) -> None:
        why = f"cannot be read ({e.strerror})"
        log.error("session scan: %s %s; nothing is restored from it or written into it", self.rel(path), why)
        self.report.unreadable.append((self.rel(path), why))
        self.block(path, f"{why} at start-up")

    def directory(self, path: Path) -> bool:
        """Make `path` a usable directory (creating it, or moving aside what is there instead);
        False when it cannot be used (then it is blocked)."""
        try:
            check_dir(path)
            return True
        except FileNotFoundError:
            pass
        except BadFile as e:
            if not self.quarantine(path, str(e)):
                return False
        except OSError as e:
            self.unreadable(path, e)
            return False
        with contextlib.suppress(OSError):  # read-only or full: held writes create it once they land
            make_dirs(path)
        return True

    def listing(self, path: Path) -> list[os.DirEntry[str]] | None:
        try:
            with os.scandir(path) as it:
                return sorted(it, key=lambda e: e.name)
        except FileNotFoundError:
            return []  # could not be created (read-only flash): nothing in it
        except OSError as e:
            self.unreadable(path, e)
            return None

    def remove_temps(self) -> None:
        for dirpath, dirs, files in os.walk(self.root):  # errors (unreadable directories) are skipped
            if Path(dirpath) == self.root and QUARANTINE in dirs:
                dirs.remove(QUARANTINE)
            for name in files:
                if is_temp(name):
                    with contextlib.suppress(OSError):
                        os.unlink(os.path.join(dirpath, name))
                        self.report.temp_removed += 1

    def rewrite(self, path: Path, data: dict[str, Any]) -> None:
        self.held.write(path, dumps(data))
        self.report.rewritten.append(self.rel(path))

    def session(self, session_id: str) -> None:
        path = self.root / "session.json"
        if os.path.lexists(path):
            try:
                check_session(load_object(path), session_id)
                return
            except BadFile as e:
                if not self.quarantine(path, str(e)):
                    return
        self.rewrite(path, Session(session_id=session_id, session_type=SessionType.AGENT).to_dict())

    def agents(self) -> dict[str, list[SessionMessage]]:
        out: dict[str, list[SessionMessage]] = {}
        agents = self.root / "agents"
        if not self.directory(agents) or (entries := self.listing(agents)) is None:
            return out
        for entry in entries:
            if not entry.name.startswith(AGENT_PREFIX):
                continue
            path = Path(entry.path)
            try:
                check_dir(path)
            except BadFile as e:
                self.quarantine(path, str(e))  # the agent then starts anew, as Strands would
                continue
            except OSError as e:
                self.unreadable(path, e)
                continue
            out[entry.name[len(AGENT_PREFIX) :]] = self.agent(path)
        return out

    def agent(self, agent_dir: Path) -> list[SessionMessage]:
        agent_id = agent_dir.name[len(AGENT_PREFIX) :]
        path = agent_dir / "agent.json"
        messages = self.messages(agent_dir / "messages")
        try:
            _session_agent(load_object(path), agent_id)
        except BadFile as e:
            if os.path.lexists(path):
                self.quarantine(path, str(e))
            if messages:
                # Without agent.json Strands would take this for a new agent and write over its messages.
                # With no messages it may: the agent then starts with the state its constructor gives.
                # The conversation manager's state is unknown ({}): the manager fills in the agent's own.
                # Over a bad file that could not be moved aside, the rewrite stays in memory (blocked).
                self.rewrite(path, SessionAgent(agent_id=agent_id, state={}, conversation_manager_state={}).to_dict())
        return messages

    def messages(self, mdir: Path) -> list[SessionMessage]:
        if not self.directory(mdir) or (entries := self.listing(mdir)) is None:
            return []
        found: list[Entry[SessionMessage]] = []
        inodes: dict[tuple[int, int], str] = {}
        reserved: set[int] = set()
        for entry in sorted(entries, key=lambda e: order_key(message_index(e.name) or 0, e.name)):
            n = message_index(entry.name)
            path = Path(entry.path)
            if n is None:
                if looks_like_message(entry.name):
                    self.quarantine(path, UNNUMBERED)
                continue
            try:
                st = entry.stat(follow_symlinks=False)
                if (key := (st.st_dev, st.st_ino)) in inodes:
                    # One file under two names: a no-replace rename (link, then unlink) was cut short.
                    os.unlink(path)
                    log.warning("session scan: removed %s, a second name of %s", self.rel(path), inodes[key])
                    continue
                inodes[key] = entry.name
                found.append(Entry(n, entry.name, _session_message(load_object(path))))
            except BadFile as e:
                if not self.quarantine(path, str(e)) and entry.name == message_name(n):
                    reserved.add(n)  # it keeps its slot: nothing is renamed onto it
            except OSError as e:
                self.unreadable(path, e)
                if entry.name == message_name(n):
                    reserved.add(n)
        result = renumber(mdir, found, reserved)
        out = []
        for msg, n, moved in result.records:
            fix = msg.message_id != n
            if fix:
                msg.message_id = n
                if result.complete:  # the id inside follows the name; a crash before this is mended next time
                    self.held.write(mdir / message_name(n), dumps(msg.to_dict()))
            self.report.renumbered += moved or fix
            out.append(msg)
        return out


def scan_session(storage_dir: str | Path, session_id: str, held: HeldWrites | None = None) -> ScanResult:
    """Scan and repair `session_<id>` under `storage_dir`; a missing session is simply reported clean.

    Rewritten files go through `held` (the manager's), which keeps them in memory when the flash refuses
    them or their path is blocked; the paths the scan blocks are registered there as it goes."""
    root = session_dir(storage_dir, session_id)
    s = _Scanner(root, held or HeldWrites())
    try:
        check_dir(root)
    except FileNotFoundError:
        return ScanResult(s.report, {})
    except BadFile as e:
        # It cannot be set aside into itself: the session is not used (the views skip it alike).
        log.error("session scan: %s is %s; the session is kept in memory only", root, e)
        s.report.unreadable.append((".", str(e)))
        s.block(root, f"{e}: not followed")
        return ScanResult(s.report, {}, s.blocked)
    except OSError as e:
        s.unreadable(root, e)
        return ScanResult(s.report, {}, s.blocked)
    s.remove_temps()
    s.session(session_id)
    messages = s.agents()
    r = s.report
    if not r.clean:
        log.warning(
            "session scan of %s: %d quarantined, %d left in place, %d unreadable, %d temp files removed, "
            "%d messages renumbered, rewrote %s",
            root, len(r.quarantined), len(r.skipped), len(r.unreadable), r.temp_removed, r.renumbered,
            ", ".join(r.rewritten) or "nothing",
        )
    return ScanResult(r, messages, s.blocked)
