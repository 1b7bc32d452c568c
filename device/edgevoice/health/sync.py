"""The sync bucket and the sync backlog.

S3: a HEAD of `sync.bucket` through the sync service's own client (`sync.bucket.make_client`: its endpoint,
region, credential chain and timeouts). The least-privilege device policy in the README allows listing only
the device's own prefix, and S3 refuses a HEAD of the bucket to such a policy (403, with no body to say why:
bad credentials look the same). So a 403 is followed by what that policy allows, a one-key listing of
`<prefix>/<device_id>/`, whose error names the cause (AccessDenied, InvalidAccessKeyId, ...).

The backlog is the sessions `edgevoice sessions list` shows as not synced. Some backlog is normal: the
current conversation is unsynced from its latest message until the service's next look (`sync.interval_s`),
and everything waits while S3 cannot be reached (the S3 row fails then, not this one). It fails when S3
answers and yet a session has had unsynced changes for longer than the service could have taken
(`stale_after_s`: twice its longest wait, the backoff cap plus one interval, and at least 10 minutes): the
sync service is not running, or cannot upload what the HEAD could reach (a PUT the policy refuses, a
conflict with another device, an unusable local file; `edgevoice sync --once` names them). A new device
that has never synced passes until its first session is that old, and a device whose sync service died
after months of work fails as soon as a conversation waits too long.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..session.inspect import StoreError, list_sessions
from ..settings import ConfigError, SessionSettings, SyncSettings
from ..sync.bucket import describe, error_code, make_client, object_key
from ..sync.names import device_id
from . import Check, fail, ok, skip

S3 = "s3"
SYNC_BACKLOG = "sync_backlog"

STALE_MIN_S = 600.0


def stale_after_s(sync: SyncSettings) -> float:
    """How long a change may wait for its upload while S3 answers before the sync counts as stuck."""
    return max(STALE_MIN_S, 2 * (sync.backoff_max_s + sync.interval_s))


def _where(sync: SyncSettings) -> str:
    return f"s3://{sync.bucket}" + (f" at {sync.endpoint_url}" if sync.endpoint_url else "")


def check_s3(sync: SyncSettings, *, client_factory: Callable[[SyncSettings], Any] | None = None) -> Check:
    """HEAD the bucket (a 403 is followed by a listing of this device's prefix); skip when sync is off.
    `client_factory`: the sync's `make_client` by default."""
    if not sync.bucket:
        return skip(S3, "sync is off (sync.bucket is empty)")
    client_factory = client_factory or make_client
    where = _where(sync)
    try:
        client = client_factory(sync)
    except Exception as e:  # botocore: a bad profile, region or endpoint
        return fail(S3, f"{where}: no client ({describe(e)})")
    try:
        client.head_bucket(Bucket=sync.bucket)
    except Exception as e:  # botocore's errors: no credentials, no connection, an HTTP error
        code = error_code(e)
        if code in ("404", "NoSuchBucket"):
            return fail(S3, f"{where}: no such bucket ({describe(e)})")
        if code not in ("403", "AccessDenied"):
            return fail(S3, f"{where}: {describe(e)}")
        return _own_prefix(client, sync, where)
    return ok(S3, f"{where}: the bucket answers")


def _own_prefix(client: Any, sync: SyncSettings, where: str) -> Check:
    """After a 403 on the bucket: list one key of this device's folder, which the device policy allows."""
    try:
        prefix = object_key(sync, device_id(sync), "") + "/"
    except ConfigError as e:
        return fail(S3, f"{where}: HEAD refused (403), and {str(e).removeprefix('config: ')}")
    try:
        client.list_objects_v2(Bucket=sync.bucket, Prefix=prefix, MaxKeys=1)
    except Exception as e:
        return fail(S3, f"{where}: HEAD refused (403); listing {prefix}: {describe(e)}")
    return ok(S3, f"{where}: HEAD refused (403: a policy for this device's prefix), listing {prefix} works")


def _ago(seconds: float) -> str:
    s = max(0, int(seconds))
    if s >= 86400:
        return f"{s // 86400} d {s % 86400 // 3600} h"
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 60} min {s % 60} s"


def check_sync_backlog(
    session: SessionSettings,
    sync: SyncSettings,
    *,
    done: Mapping[str, Check] | None = None,
    now: Callable[[], float] = time.time,
) -> Check:
    """How many stored sessions wait for sync; FAIL when S3 answers (the `s3` check in `done` passed) and one
    has waited longer than `stale_after_s`. Skip when sync is off."""
    if not sync.bucket:
        return skip(SYNC_BACKLOG, "sync is off (sync.bucket is empty)")
    if not Path(session.dir).exists():
        return ok(SYNC_BACKLOG, "nothing stored yet")
    try:
        sessions = list_sessions(session.dir)
    except StoreError as e:
        return fail(SYNC_BACKLOG, str(e))
    waiting = [s for s in sessions if not s.synced]
    if not waiting:
        return ok(SYNC_BACKLOG, f"all {len(sessions)} stored session(s) synced")
    t = now()
    oldest = min(s.last_activity for s in waiting)
    detail = f"{len(waiting)} of {len(sessions)} session(s) not yet synced, oldest change {_ago(t - oldest)} ago"
    s3 = (done or {}).get(S3)
    if s3 is None or s3.failed:
        return ok(SYNC_BACKLOG, detail + " (waiting for S3)")
    limit = stale_after_s(sync)
    stale = sorted(s.session_id for s in waiting if t - s.last_activity > limit)
    if stale:
        named = ", ".join(stale[:3]) + (f" and {len(stale) - 3} more" if len(stale) > 3 else "")
        return fail(
            SYNC_BACKLOG,
            f"{detail}: S3 answers, yet {named} waited over {_ago(limit)}; is `edgevoice sync` "
            "running? (`edgevoice sync --once` names what cannot be uploaded)",
        )
    return ok(SYNC_BACKLOG, detail)
