"""Durable file writes: the one way edgevoice puts bytes on flash.

A write goes to a unique temp file in the same directory, is fsynced, renamed over the target,
and the directory is fsynced, so after a power cut the target holds either the old bytes or the
new ones, never a mix or nothing. New directories are fsynced into their parents.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from .layout import TEMP_PREFIXES, TEMP_SUFFIX

DIR_MODE = 0o700
FILE_MODE = 0o600


def fsync_dir(path: str | os.PathLike[str]) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs(path: str | os.PathLike[str]) -> None:
    """`mkdir -p` with mode 0700, each new directory fsynced into its parent."""
    p = Path(path)
    missing: list[Path] = []
    while not p.exists():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        with contextlib.suppress(FileExistsError):
            os.mkdir(d, DIR_MODE)
        os.chmod(d, DIR_MODE)  # umask may have narrowed it; never widen beyond 0700
        fsync_dir(d.parent)


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Atomically and durably replace `path` with `data` (mode 0600)."""
    target = Path(path)
    make_dirs(target.parent)
    if target.is_symlink():
        raise OSError(f"refusing to write through the symlink {target}")
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=TEMP_PREFIXES[0], suffix=TEMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(target.parent)


def durable_rename(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """Rename and fsync both directories (quarantine moves, renumbering)."""
    make_dirs(Path(dst).parent)
    os.replace(src, dst)
    fsync_dir(Path(dst).parent)
    if Path(src).parent != Path(dst).parent:
        fsync_dir(Path(src).parent)
