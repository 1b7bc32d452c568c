"""`edgevoice sync pull ID [--device D]`: a session brought back from the bucket into the local store.

What a replacement device runs (the daemon stopped: the store's lock is held throughout). Each object is
fetched with its checksum checked twice (botocore checks the CRC32 S3 stored as it reads, then we compute
it again from the bytes we hold), checked as a session file of its kind (the upload's own check), and
written as the store writes: atomically and durably, with the object's LastModified as its mtime. A local
file that differs and is newer than the object is kept, never replaced.

Pulled from this device's own folder, the files are recorded as confirmed in the sync state, with the
ETags read: the sync service's next PUT of a pulled file is then conditional on that ETag, where it would
otherwise meet a copy another store's writer id made (a conflict, `bucket.py`). Pulled from another
device's folder nothing is recorded, and this device's uploads go to its own folder as new objects.
"""

from __future__ import annotations

import calendar
import os
import stat
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import ConfigError, Settings
from ..errors import UserError
from ..session.atomic import write_bytes
from ..session.layout import SESSION_PREFIX
from ..session.lock import StoreBusy, lock_store
from . import state as sync_state
from .bucket import crc32_b64, describe, is_transient, make_client
from .files import Unusable, check_file, is_restored, upload_order
from .fleet import Unreachable, check_device, check_session_id, failure, objects, session_key
from .names import device_id
from .state import Record


@dataclass
class Outcome:
    pulled: int = 0
    same: int = 0
    """Already here with the same bytes."""
    kept: int = 0
    """A newer, different local file kept."""
    failed: int = 0
    recorded: int = 0
    """Files recorded as confirmed in the sync state (own folder only)."""
    unchecked: int = 0
    """Objects that carry no full-object CRC32 (put by something other than the sync service)."""
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Object:
    rel: str
    body: bytes
    crc: str
    etag: str
    mtime_ns: int


def pull(settings: Settings, session_id: str, device: str | None) -> int:
    """0: every file pulled or already identical; 1: something could not be fetched or a newer local file was
    kept; UserError (exit 2): bad config, the session not in the bucket, the store in use."""
    s = settings.sync
    if not s.bucket:
        raise UserError("config: sync.bucket is empty: there is no bucket to pull from")
    check_session_id(session_id)
    try:
        own: str | None = device_id(s)
    except ConfigError:
        if device is None:
            raise
        own = None  # this device's id is unknown, so the folder named is not its own: nothing is recorded
    folder = check_device(device) if device is not None else str(own)
    base = session_key(s, folder, session_id)
    where = f"s3://{s.bucket}/{base}/"
    try:
        client = make_client(s)
        listed = list(objects(client, s.bucket, f"{base}/"))
    except Exception as e:
        raised = failure(e, where)
        if raised is e:
            raise
        if isinstance(raised, Unreachable):
            print(f"edgevoice: pull: {raised}", file=sys.stderr)
            return 1
        raise raised from None
    if not listed:
        raise UserError(f"no session {session_id!r} of device {folder!r} in {where}")
    storage = Path(settings.session.dir)
    session_path = storage / f"{SESSION_PREFIX}{session_id}"
    with _locked(storage):
        outcome = _pull_all(client, s.bucket, s.max_concurrency, listed, base, session_path, record=folder == own)
    if outcome.unchecked:
        outcome.notes.append(f"{outcome.unchecked} object(s) carry no CRC32: checked as session files only")
    for line in outcome.notes:
        print(f"edgevoice: pull: {line}", file=sys.stderr)
    recorded = f", {outcome.recorded} recorded as synced" if folder == own else ""
    print(
        f"pull {folder}/{session_id}: {outcome.pulled} pulled, {outcome.same} already here, "
        f"{outcome.kept} newer local kept, {outcome.failed} failed{recorded}"
    )
    return 1 if outcome.failed or outcome.kept else 0


@contextmanager
def _locked(storage: Path) -> Iterator[None]:
    """The store's lock (the daemon's, `session/lock.py`), for the whole pull. Files written by another
    user (root, say) would be unreadable to the daemon (mode 0600), so a store that is not ours is refused."""
    try:
        owner = storage.stat().st_uid
    except FileNotFoundError:
        owner = os.geteuid()  # created below, by us
    if owner != os.geteuid():
        raise UserError(f"session.dir {str(storage)!r} belongs to uid {owner}: pull as that user (the daemon's)")
    try:
        lock = lock_store(storage)
    except StoreBusy as e:
        raise UserError(f"{e}: stop the daemon before pulling a session into its store") from None
    if lock is None:
        raise UserError(f"session.dir {str(storage)!r} cannot be opened and locked")
    with lock:
        yield


def _pull_all(
    client: Any, bucket: str, concurrency: int, listed: list[dict[str, Any]], base: str, session_path: Path,
    *, record: bool,
) -> Outcome:
    out = Outcome()
    wanted = []
    for obj in listed:
        rel = str(obj["Key"])[len(base) + 1 :]
        if is_restored(rel):  # nothing else is written: a key never names a path out of the session
            wanted.append(rel)
        else:
            out.failed += 1
            out.notes.append(f"{rel}: not a file of a stored session; left in the bucket")
    if "session.json" not in wanted:
        # The sync service uploads it last: its first upload did not finish. What is there is still pulled.
        out.failed += 1
        out.notes.append("session.json is not in the bucket (the session's first upload did not finish?)")
    wanted.sort(key=upload_order)  # messages, then agent.json, then session.json: as the sync service uploads
    st = sync_state.load(session_path) if record else None
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="edgevoice-pull") as pool:
        fetches = [(rel, pool.submit(_fetch, client, bucket, f"{base}/{rel}")) for rel in wanted]
        for rel, fut in fetches:
            got = _verified(rel, fut, session_path.name, out)
            if got is None:
                continue
            placed = _place(session_path, got, out)
            if placed is not None and st is not None:
                st.files[rel] = Record(placed.st_size, placed.st_mtime_ns, got.crc, got.etag)
                out.recorded += 1
    if st is not None and out.recorded:
        sync_state.save(session_path, st)
    return out


def _fetch(client: Any, bucket: str, key: str) -> tuple[bytes, dict[str, Any]]:
    """The object's bytes and answer. Runs on a pool thread. botocore checks the stored CRC32 as the body
    is read (FlexibleChecksumError on a mismatch)."""
    answer = dict(client.get_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED"))
    return answer.pop("Body").read(), answer


def _verified(rel: str, fut: Future[tuple[bytes, dict[str, Any]]], session_name: str, out: Outcome) -> _Object | None:
    try:
        body, answer = fut.result()
    except Exception as e:
        if not is_transient(e):
            raise  # a bug keeps its traceback
        out.failed += 1
        out.notes.append(f"{rel}: not fetched: {describe(e)}")
        return None
    crc = crc32_b64(body)
    stored = answer.get("ChecksumCRC32")
    # A multipart object's checksum ("...-3") is of its parts, not of the bytes: like none at all.
    if not stored or "-" in str(stored):
        out.unchecked += 1
    elif stored != crc:
        out.failed += 1
        out.notes.append(f"{rel}: the bytes read do not match the object's CRC32; not written")
        return None
    try:
        check_file(rel, body, session_name)
    except Unusable as e:
        out.failed += 1
        out.notes.append(f"{rel}: not a usable session file ({e}); not written")
        return None
    when = answer["LastModified"]
    mtime_ns = calendar.timegm(when.utctimetuple()) * 1_000_000_000 + when.microsecond * 1000
    return _Object(rel, body, crc, str(answer["ETag"]), mtime_ns)


def _place(session_path: Path, got: _Object, out: Outcome) -> os.stat_result | None:
    """Write `got` unless an identical or newer local file is there. The stat of the file that now holds
    the object's bytes, or None (kept, failed)."""
    path = session_path / got.rel
    try:
        _real_dirs(session_path, got.rel)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            st = None
        if st is not None:
            if not stat.S_ISREG(st.st_mode):
                out.failed += 1
                out.notes.append(f"{got.rel}: the local one is not a regular file; not replaced")
                return None
            if path.read_bytes() == got.body:
                out.same += 1
                return st
            if st.st_mtime_ns > got.mtime_ns:
                out.kept += 1
                out.notes.append(f"{got.rel}: the local file differs and is newer than the object; kept")
                return None
        write_bytes(path, got.body)
        os.utime(path, ns=(got.mtime_ns, got.mtime_ns))
        # The mtime is what the sync state records; fsynced, a power cut does not make the file read as unsynced.
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            placed = os.fstat(fd)
        finally:
            os.close(fd)
    except OSError as e:
        out.failed += 1
        out.notes.append(f"{got.rel}: cannot be written ({e.strerror or e})")
        return None
    out.pulled += 1
    return placed


def _real_dirs(session_path: Path, rel: str) -> None:
    """OSError unless the directories from the store down to `rel`'s are real ones or absent: a symlinked
    session or agent directory is never written through (the daemon does not follow them either)."""
    path = session_path
    for part in ("", *rel.split("/")[:-1]):
        path = path / part if part else path
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            return
        if not stat.S_ISDIR(mode):
            raise OSError(f"{path} is not a directory (symlinks are not followed)")
