"""The flash under `session.dir`: is there room, can the store write, and has it set corrupt files aside?

The store never stops the speaker (a full or read-only flash holds writes in memory, `session/held.py`), so
the daemon keeps talking while conversations silently stop reaching the flash; this is where that shows.

Free space fails under MIN_FREE_BYTES or under MIN_FREE_FRACTION of the filesystem, whichever comes first:
50 MiB is a few days of the journal and the store's writes on a busy device, and an SD card past 95% full
wears faster and stalls on writes (its controller has few free blocks left to spread writes over). The space
counted is what an unprivileged process may use (`f_bavail`, the root reserve left out), as the daemon's
user sees it.

Quarantined files (`session/scan.py` moved them to `session_<id>/quarantine/` with a `.reason` each) fail
the check: each is a file the store could not read, from a power cut or a failing card. They stay until
someone has read them (`edgevoice sessions show ID` lists them with their reasons) and removed them.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from ..session.inspect import StoreError, list_sessions
from ..session.layout import TEMP_PREFIXES, TEMP_SUFFIX
from . import Check, fail, ok, skip

DISK = "disk"
STORE = "store"

MIN_FREE_BYTES = 50 * 2**20
MIN_FREE_FRACTION = 0.05

StatVfs = Callable[[str], os.statvfs_result]
_MIB = 2**20


def _existing(path: Path) -> Path:
    """`path`, or its nearest ancestor that exists: before the daemon's first start `session.dir` is not
    there yet, and the filesystem it will be made on is the one that matters."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path("/")


def check_disk(
    storage_dir: str,
    *,
    statvfs: StatVfs = os.statvfs,
    min_free_bytes: int = MIN_FREE_BYTES,
    min_free_fraction: float = MIN_FREE_FRACTION,
) -> Check:
    """Free space of `session.dir`'s filesystem: FAIL under `min_free_bytes` or `min_free_fraction`."""
    where = _existing(Path(storage_dir))
    try:
        st = statvfs(str(where))
    except OSError as e:
        return fail(DISK, f"{where}: cannot stat the filesystem ({e.strerror})")
    free = st.f_bavail * st.f_frsize
    total = st.f_blocks * st.f_frsize
    share = free / total if total else 0.0
    detail = f"{free / _MIB:,.0f} MiB free of {total / _MIB:,.0f} MiB ({share:.0%}) on {where}"
    if free < min_free_bytes or share < min_free_fraction:
        floor = f"{min_free_bytes / _MIB:g} MiB or {min_free_fraction:.0%}"
        cap = "session.max_bytes, session.max_age_days"
        return fail(DISK, f"{detail}: under {floor}; free some, or cap the store ({cap})")
    return ok(DISK, detail)


def _write_probe(directory: Path) -> None:
    """Create and write a file in `directory` that nobody sees and nothing leaves behind: O_TMPFILE makes an
    unnamed inode that vanishes when closed, even if doctor is killed meanwhile. Filesystems without it get a
    named temp file (named like the store's own, which the start-up scan removes if a kill leaves it)."""
    try:
        fd = os.open(directory, os.O_TMPFILE | os.O_WRONLY, 0o600)
    except OSError as e:
        if e.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
            raise
        fd, name = tempfile.mkstemp(prefix=f"{TEMP_PREFIXES[0]}doctor-", suffix=TEMP_SUFFIX, dir=directory)
        os.unlink(name)
    try:
        os.write(fd, b"x")
    finally:
        os.close(fd)


def check_store(storage_dir: str, *, statvfs: StatVfs = os.statvfs) -> Check:
    """`session.dir` is a directory on a writable filesystem, the store can write in it, and no stored
    session has quarantined files."""
    path = Path(storage_dir)
    if not path.exists():
        return skip(STORE, f"{storage_dir} does not exist yet (`edgevoice run` creates it at its first start)")
    if not path.is_dir():
        return fail(STORE, f"session.dir {storage_dir} is not a directory")
    try:
        read_only = bool(statvfs(storage_dir).f_flag & os.ST_RDONLY)
    except OSError as e:
        return fail(STORE, f"{storage_dir}: cannot stat the filesystem ({e.strerror})")
    if read_only:
        return fail(
            STORE,
            f"{storage_dir} is on a read-only filesystem: conversations are held in memory and lost at exit "
            "(a failing SD card is remounted read-only; see `dmesg`)",
        )
    try:
        _write_probe(path)
    except OSError as e:
        return fail(STORE, f"{storage_dir}: cannot write ({e.strerror}); doctor runs as uid {os.geteuid()}")
    try:
        sessions = list_sessions(path)
    except StoreError as e:
        return fail(STORE, str(e))
    quarantined = {s.session_id: s.quarantined for s in sessions if s.quarantined}
    if quarantined:
        count = sum(quarantined.values())
        where = ", ".join(sorted(quarantined))
        return fail(
            STORE,
            f"{count} quarantined file(s) in session(s) {where}: files the store could not read and set aside; "
            "see `edgevoice sessions show ID`, then remove session_ID/quarantine/",
        )
    # Writable as this user: the daemon's user may differ (run doctor as it for a like answer).
    return ok(STORE, f"{storage_dir}: writable as uid {os.geteuid()}, {len(sessions)} session(s), nothing quarantined")
