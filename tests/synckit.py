"""Sync state for tests that need a session to read as synced without an S3 round trip."""

from __future__ import annotations

from pathlib import Path

from edgevoice.sync import state
from edgevoice.sync.bucket import crc32_b64


def mark_synced(session_path: Path) -> None:
    """Record every file of the session as S3 would have confirmed it (what the sync service writes after a
    cycle that uploaded all of it)."""
    st = state.load(session_path)
    for rel, info in state.session_files(session_path).items():
        body = (session_path / rel).read_bytes()
        st.files[rel] = state.Record(info.st_size, info.st_mtime_ns, crc32_b64(body), '"etag"')
    state.save(session_path, st)
