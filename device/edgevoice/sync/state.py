"""What S3 has confirmed of each stored session: the sync state, written only by the sync service.

One JSON file per session, beside the sessions rather than inside them, so that writing it never changes
the session's own directories (whose mtimes say what changed, `sync/plan.py`):

    <session.dir>/.sync/session_<id>.json   {"version": 1,
                                              "files": {"agents/agent_a/messages/message_0.json":
                                                          [size, mtime_ns, crc32, etag], ...},
                                              "dirs": {"": mtime_ns, "agents/agent_a/messages": mtime_ns, ...}}

A file is confirmed when S3 answered its PUT (which carried the file's CRC32, so S3 checked the bytes) or
showed the same checksum and size on a HEAD: the record holds the size and mtime the bytes were read at. A
session is synced when every file it holds now has a record with its current size and mtime, so a message
written after the last confirmed upload, or a message rewritten in place (a barge-in's cut transcript),
reads as not synced until it is confirmed too. Retention deletes only synced sessions.

A state file that is missing or cannot be read is an empty state: the next cycle checks every file against
the bucket again (conditional PUTs and HEADs, `sync/bucket.py`), which costs requests but loses nothing.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..session.atomic import make_dirs, write_bytes
from ..session.layout import QUARANTINE, is_temp

log = logging.getLogger(__name__)

STATE_DIR = ".sync"
"""Under `session.dir`: the sync service's own files (states, the writer id)."""
VERSION = 1


@dataclass(frozen=True)
class Record:
    """One file as S3 confirmed it."""

    size: int
    mtime_ns: int
    """The local file's mtime when the confirmed bytes were read: a later write changes it."""
    crc32: str
    """Base64 of the big-endian CRC32 of the bytes, as S3 reports `ChecksumCRC32`."""
    etag: str
    """The object's ETag after the PUT: the next PUT of this key is conditional on it (`IfMatch`)."""


@dataclass
class SessionState:
    """One session's confirmed files, and the directory mtimes the last look saw (see `sync/plan.py`)."""

    files: dict[str, Record] = field(default_factory=dict)
    dirs: dict[str, int] = field(default_factory=dict)
    """Relative directory path ("" for the session's own) -> mtime_ns when it was last listed in full."""


def writer_id(storage_dir: Path) -> str:
    """This store's random id, made once: what marks the objects it wrote (`sync/bucket.py`). It lives in the
    store, so a replacement device that pulls sessions gets its own, and a cloned card's copy is what makes
    two devices sharing a device id visible as conflicts rather than silent overwrites of each other."""
    path = storage_dir / STATE_DIR / "writer"
    try:
        text = path.read_text().strip()
        if len(text) == 32 and all(c in "0123456789abcdef" for c in text):
            return text
    except FileNotFoundError:
        pass
    make_dirs(path.parent)
    text = secrets.token_hex(16)
    write_bytes(path, text.encode())
    return text


def state_path(session_path: Path) -> Path:
    """Where the state of the session directory `session_path` lives."""
    return session_path.parent / STATE_DIR / f"{session_path.name}.json"


def load(session_path: Path) -> SessionState:
    """The session's state; empty when there is none or it cannot be used (logged, never fatal)."""
    path = state_path(session_path)
    try:
        data = json.loads(path.read_bytes())
        if not isinstance(data, dict) or data.get("version") != VERSION:
            raise ValueError("not a version 1 sync state")
        files = {str(k): Record(int(v[0]), int(v[1]), str(v[2]), str(v[3])) for k, v in data["files"].items()}
        dirs = {str(k): int(v) for k, v in data["dirs"].items()}
    except FileNotFoundError:
        return SessionState()
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError) as e:
        # The next cycle re-checks every file against the bucket: requests, not data, are what this costs.
        log.warning("sync state %s cannot be used (%s); every file is checked again", path, type(e).__name__)
        return SessionState()
    return SessionState(files, dirs)


def save(session_path: Path, state: SessionState) -> None:
    """Write the state atomically and durably (a power cut leaves the old state or the new one)."""
    path = state_path(session_path)
    make_dirs(path.parent)
    data = {
        "version": VERSION,
        "files": {k: [r.size, r.mtime_ns, r.crc32, r.etag] for k, r in sorted(state.files.items())},
        "dirs": dict(sorted(state.dirs.items())),
    }
    write_bytes(path, json.dumps(data, separators=(",", ":")).encode())


def forget(session_path: Path) -> None:
    """Remove the state of a session that is gone (retention deleted it)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(state_path(session_path))


def is_uploaded(name: str) -> bool:
    """A file name the sync service uploads (outside `quarantine/`): not a temp file, not a dotfile."""
    return not (is_temp(name) or name.startswith("."))


def session_files(session_path: Path) -> dict[str, os.stat_result]:
    """Every file the sync service uploads from the session: relative path (with '/') -> its stat.
    Quarantined files and temp files are never uploaded, so they do not count."""
    found: dict[str, os.stat_result] = {}
    for root, dirs, files in os.walk(session_path):
        rel_root = os.path.relpath(root, session_path)
        if rel_root == ".":
            dirs[:] = [d for d in dirs if d != QUARANTINE]
            rel_root = ""
        for name in files:
            if not is_uploaded(name):
                continue
            rel = f"{rel_root}/{name}" if rel_root else name
            try:
                found[rel.replace(os.sep, "/")] = os.lstat(os.path.join(root, name))
            except FileNotFoundError:
                continue
    return found


def is_synced(session_path: Path, files: Mapping[str, os.stat_result] | None = None) -> bool:
    """True when every file of the session is confirmed in S3 as it is now (and there is at least one).
    `files`: the session's `session_files`, when the caller has just walked it anyway."""
    state = load(session_path)
    files = session_files(session_path) if files is None else files
    if not files:
        return False
    for rel, st in files.items():
        record = state.files.get(rel)
        if record is None or record.size != st.st_size or record.mtime_ns != st.st_mtime_ns:
            return False
    return True
