"""What the outage and kill tests of the sync service check against the bucket, and how they run the CLI.

The checks read moto directly (never through the fault proxy), so what they see is what S3 holds:

- `confirmed_in_s3`: "none marked synced early": every file the saved sync state records as confirmed
  is in the bucket with the recorded checksum and size.
- `assert_all_in_s3`: "everything uploaded": every local file is in the bucket byte for byte with the
  `ChecksumCRC32` of its bytes, once (one version in a versioned bucket), nothing else is there, and
  `state.is_synced` says so.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from edgevoice import config
from edgevoice.session.layout import is_temp
from edgevoice.settings import SyncSettings
from edgevoice.sync import state
from edgevoice.sync.bucket import crc32_b64
from tests.s3server import client

BUCKET = "edgevoice-outages"
DEVICE = "dev-a"
ACCESS_KEY = "AKIAEDGEVOICEOUTAGE01"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYOUTAGEKEY9"
"""Dummy credentials, distinctive so that a leak into any output is found by a plain substring search."""


def versioned_bucket(endpoint: str, name: str = BUCKET) -> None:
    """Create `name` with versioning on: a second PUT of a key shows as a second version."""
    s3 = client(endpoint)
    s3.create_bucket(Bucket=name)
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})


def sync_settings(endpoint: str, prefix: str, **keys: object) -> SyncSettings:
    extra = "".join(f"{k} = {json.dumps(v)}\n" for k, v in keys.items())
    toml = f'[sync]\nbucket = "{BUCKET}"\nendpoint_url = "{endpoint}"\nprefix = "{prefix}"\ndevice_id = "{DEVICE}"\n'
    return config.parse(toml + extra).sync


def key(prefix: str, session: str, rel: str) -> str:
    return f"{prefix}/{DEVICE}/{session}/{rel}"


def sessions(store: Path) -> list[Path]:
    return sorted(p for p in store.glob("session_*") if p.is_dir())


def local_files(store: Path) -> dict[tuple[str, str], bytes]:
    """(session directory name, relative path) -> bytes, for every file the sync service uploads."""
    return {(s.name, rel): (s / rel).read_bytes() for s in sessions(store) for rel in state.session_files(s)}


def head(s3: Any, k: str) -> dict[str, Any] | None:
    try:
        return dict(s3.head_object(Bucket=BUCKET, Key=k, ChecksumMode="ENABLED"))
    except Exception as e:
        if getattr(e, "response", {}).get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return None
        raise


def confirmed_in_s3(s3: Any, prefix: str, session: Path, verified: set[tuple[object, ...]] | None = None) -> int:
    """Every record of the session's saved state is backed by an object whose `ChecksumCRC32` and size are
    the record's. (A record of a file rewritten since may find the newer bytes there, uploaded by a run that
    did not get to save its state: it does not claim the file as it is now, and `is_synced` does not count
    it.) `verified`: records already checked, skipped (a record that still stands names the same bytes).
    Returns the number of records."""
    st = state.load(session)
    for rel, rec in st.files.items():
        ident = (session.name, rel, rec)
        if verified is not None and ident in verified:
            continue
        obj = head(s3, key(prefix, session.name, rel))
        assert obj is not None, f"{session.name}/{rel} is recorded as confirmed but is not in the bucket"
        try:
            now = (session / rel).stat()
            current = now.st_size == rec.size and now.st_mtime_ns == rec.mtime_ns
        except FileNotFoundError:
            current = False
        if current or obj["ChecksumCRC32"] == rec.crc32:
            assert (obj["ChecksumCRC32"], obj["ContentLength"]) == (rec.crc32, rec.size), f"{session.name}/{rel}"
            if current:
                assert crc32_b64((session / rel).read_bytes()) == rec.crc32, f"{session.name}/{rel}"
        else:
            assert obj["ChecksumCRC32"] == crc32_b64((session / rel).read_bytes()), f"{session.name}/{rel}"
            continue  # not cached: the file may be rewritten again
        if verified is not None:
            verified.add(ident)
    return len(st.files)


def missing_from_s3(s3: Any, prefix: str, store: Path) -> list[str]:
    """The local files that are not in the bucket with these very bytes (empty: all there)."""
    missing = []
    for (session, rel), body in local_files(store).items():
        try:
            got = s3.get_object(Bucket=BUCKET, Key=key(prefix, session, rel))["Body"].read()
        except Exception:
            got = None
        if got != body:
            missing.append(f"{session}/{rel}")
    return missing


def assert_all_in_s3(s3: Any, prefix: str, store: Path) -> None:
    """Every local file in the bucket, byte for byte, with the checksum of its bytes, stored once; no other
    key under the device's folder; every session synced, and its state file readable."""
    files = local_files(store)
    assert files
    want = {key(prefix, session, rel): body for (session, rel), body in files.items()}
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{prefix}/{DEVICE}/")
    assert not listed["IsTruncated"]
    assert sorted(o["Key"] for o in listed.get("Contents", [])) == sorted(want)
    for k, body in want.items():
        obj = s3.get_object(Bucket=BUCKET, Key=k, ChecksumMode="ENABLED")
        assert obj["Body"].read() == body, k
        assert obj["ChecksumCRC32"] == crc32_b64(body), k
    versions = s3.list_object_versions(Bucket=BUCKET, Prefix=f"{prefix}/{DEVICE}/").get("Versions", [])
    twice = sorted(k for k in {v["Key"] for v in versions} if sum(v["Key"] == k for v in versions) > 1)
    assert not twice, f"uploaded more than once: {twice}"
    for session in sessions(store):
        assert state.is_synced(session), session.name
        data = json.loads(state.state_path(session).read_bytes())
        assert data["version"] == state.VERSION


def state_temps(store: Path) -> list[str]:
    """Temp files in the sync service's own directory (what a kill during a state write leaves)."""
    try:
        return sorted(n for n in os.listdir(store / state.STATE_DIR) if is_temp(n))
    except FileNotFoundError:
        return []


def cli_env(home: Path) -> dict[str, str]:
    """An environment for `edgevoice` subprocesses: dummy credentials, no ~/.aws, no instance metadata."""
    home.mkdir(parents=True, exist_ok=True)
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def write_config(path: Path, store: Path, endpoint: str, prefix: str, **sync: object) -> Path:
    keys = "".join(f"{k} = {json.dumps(v)}\n" for k, v in sync.items())
    path.write_text(
        f'[session]\ndir = "{store}"\n[sync]\nbucket = "{BUCKET}"\nendpoint_url = "{endpoint}"\n'
        f'prefix = "{prefix}"\ndevice_id = "{DEVICE}"\n{keys}'
    )
    return path


def edgevoice_exe() -> str:
    return str(Path(sys.executable).parent / "edgevoice")
