"""Durable file writes: the one way edgevoice puts bytes on flash.

A write goes to a unique temp file in the same directory, is fsynced, renamed over the target,
and the directory is fsynced, so after a power cut the target holds either the old bytes or the
new ones, never a mix or nothing. New directories are fsynced into their parents.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import tempfile
from collections.abc import Callable
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
    """Rename without replacing anything (FileExistsError), and fsync both directories (quarantine moves)."""
    make_dirs(Path(dst).parent)
    rename_noreplace(src, dst)
    fsync_dir(Path(dst).parent)
    if Path(src).parent != Path(dst).parent:
        fsync_dir(Path(src).parent)


_AT_FDCWD = -100
_RENAME_NOREPLACE = 1
_renameat2: Callable[..., int] | None
try:
    _renameat2 = ctypes.CDLL(None, use_errno=True).renameat2  # glibc >= 2.28
except (AttributeError, OSError):
    _renameat2 = None


def rename_noreplace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """Rename `src` to `dst`, or FileExistsError when `dst` exists: never replaces a file.

    renameat2(RENAME_NOREPLACE) is one atomic step. Where the filesystem lacks it, link() then unlink():
    link() refuses an existing target atomically; a crash in between leaves one file under two names,
    which the scan recognises by its inode. Where links are not supported either (FAT), check, then
    rename: the store lock (`lock.py`) keeps other edgevoice writers out of that gap.
    """
    s, d = os.fsencode(src), os.fsencode(dst)
    if _renameat2 is not None:
        if _renameat2(_AT_FDCWD, s, _AT_FDCWD, d, _RENAME_NOREPLACE) == 0:
            return
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):  # those: no support here, fall back
            raise OSError(err, os.strerror(err), os.fsdecode(d))  # EEXIST becomes FileExistsError
    try:
        os.link(s, d, follow_symlinks=False)
    except FileExistsError:
        raise
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS, errno.EXDEV, errno.EMLINK):
            raise
        if os.path.lexists(d):
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), os.fsdecode(d)) from None
        os.rename(s, d)
        return
    os.unlink(s)
