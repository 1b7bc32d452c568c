"""What of a session needs uploading, found without re-reading the world.

The store replaces every file it writes (temp file, then rename into place), and a rename changes the
directory's mtime. So a directory whose mtime is the one recorded when it was last listed holds nothing new,
and a look at a quiet session is a few `stat` calls: its directories, not its files. A directory that moved
is listed again and each of its files compared with its record (size and mtime); new subdirectories (a new
agent) are found the same way, through their parent. A full look (`full=True`, at start and for
`--once`) lists everything, whatever the records say.

Racy mtimes (git's "racily clean" problem): a filesystem stamps mtimes with a coarse clock (a few ms on
ext4), so a file renamed in during the same tick as our listing leaves the directory's mtime unchanged. A
directory whose mtime is within `RACY_NS` of the moment it was listed is therefore recorded as `UNSEEN`
(known, so a quiet parent still leads to it, but listed again next time).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..session.layout import QUARANTINE
from .files import upload_order
from .state import SessionState, is_uploaded

UNSEEN = -1
"""A directory's recorded mtime when it must be listed again next time."""
RACY_NS = 2_000_000_000
"""How close to the listing a directory's mtime may be and still be trusted next time (2 s: coarse
filesystem clocks, and FAT's 2 s, are well inside it)."""


@dataclass(frozen=True)
class Pending:
    """A file whose current state S3 has not confirmed."""

    rel: str
    """Path relative to the session directory, with '/': also the key below the session's S3 prefix."""
    size: int
    mtime_ns: int


@dataclass
class Look:
    """What one look at a session found."""

    pending: list[Pending]
    dirs: dict[str, int]
    """The directory mtimes to record once everything pending is confirmed (racy ones as UNSEEN)."""
    gone: list[str]
    """Recorded files that are no longer there (their records can go; S3 keeps its copy)."""


def look(session_path: Path, state: SessionState, *, full: bool, clock_ns: Callable[[], int] = time.time_ns) -> Look:
    """Compare the session on disk with its state. Reads directories and stats; opens no file."""
    pending: list[Pending] = []
    dirs: dict[str, int] = {}
    listed: set[str] = set()
    seen_files: set[str] = set()

    def visit(rel_dir: str) -> None:
        path = session_path / rel_dir if rel_dir else session_path
        try:
            mtime = os.stat(path).st_mtime_ns
        except FileNotFoundError:
            return
        if not full and state.dirs.get(rel_dir) == mtime:
            dirs[rel_dir] = mtime
            for sub in _children(state.dirs, rel_dir):
                visit(sub)
            return
        now = clock_ns()
        listed.add(rel_dir)
        try:
            entries = list(os.scandir(path))
        except FileNotFoundError:
            return
        dirs[rel_dir] = mtime if now - mtime >= RACY_NS else UNSEEN
        for entry in entries:
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            if entry.is_dir(follow_symlinks=False):
                if not (rel_dir == "" and entry.name == QUARANTINE):
                    visit(rel)
                continue
            if not is_uploaded(entry.name) or not entry.is_file(follow_symlinks=False):
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            seen_files.add(rel)
            record = state.files.get(rel)
            if record is None or record.size != st.st_size or record.mtime_ns != st.st_mtime_ns:
                pending.append(Pending(rel, st.st_size, st.st_mtime_ns))

    visit("")
    # Records of files in directories listed this time that were not seen are gone (files are never
    # deleted by the store except with their session; a quarantined file is one).
    gone = [rel for rel in state.files if _parent(rel) in listed and rel not in seen_files]
    pending.sort(key=lambda p: upload_order(p.rel))
    return Look(pending, dirs, gone)


def _children(dirs: dict[str, int], rel_dir: str) -> list[str]:
    return [d for d in dirs if d and _parent(d) == rel_dir]


def _parent(rel: str) -> str:
    return rel.rpartition("/")[0]
