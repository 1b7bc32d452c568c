"""The names the sync service builds keys from, checked once with the config: bucket, prefix, device id."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from ..settings import ConfigError

if TYPE_CHECKING:
    from ..settings import SyncSettings

MACHINE_ID = Path("/etc/machine-id")
# S3's rules for new buckets: 3-63 lowercase letters, digits, dots and hyphens, starting and ending with a
# letter or digit, no "..", not shaped like an IP address.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_IP = re.compile(r"^\d+\.\d+\.\d+\.\d+$")
_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.=-]{0,127}$")


def is_segment(name: str) -> bool:
    """A key segment the prefix and device ids are made of: 1-128 letters, digits, '_', '.', '=' or '-',
    no '..'."""
    return bool(_SEGMENT.match(name)) and ".." not in name


def check_sync_settings(s: SyncSettings) -> None:
    if s.bucket and (not _BUCKET.match(s.bucket) or ".." in s.bucket or _IP.match(s.bucket)):
        raise ConfigError(f"config: sync.bucket {s.bucket!r} is not a valid S3 bucket name (3-63 of a-z 0-9 . -)")
    parts = s.prefix.split("/")
    if s.prefix and not all(is_segment(p) for p in parts):
        raise ConfigError(
            f"config: sync.prefix {s.prefix!r} must be '/'-separated segments of letters, digits, '_', '.', "
            "'=' or '-' (no leading, trailing or double '/', no '..')"
        )
    if s.device_id and not is_segment(s.device_id):
        raise ConfigError(f"config: sync.device_id {s.device_id!r} must be 1-128 letters, digits, '_', '.', '=' or '-'")
    if s.endpoint_url and not re.match(r"^https?://[^/\s]+(/\S*)?$", s.endpoint_url):
        raise ConfigError(f"config: sync.endpoint_url {s.endpoint_url!r} must be an http:// or https:// URL")
    if s.sse == "aws:kms" and not s.kms_key_id:
        raise ConfigError('config: sync.kms_key_id is needed with sync.sse = "aws:kms"')


def device_id(s: SyncSettings, machine_id: Path = MACHINE_ID) -> str:
    """`sync.device_id`, or this machine's id. Raises ConfigError (one line) when neither is usable."""
    if s.device_id:
        return s.device_id
    try:
        text = machine_id.read_text().strip()
    except OSError as e:
        raise ConfigError(f"config: sync.device_id is empty and {machine_id} cannot be read ({e.strerror})") from None
    if not re.fullmatch(r"[0-9a-f]{32}", text):
        raise ConfigError(f"config: sync.device_id is empty and {machine_id} does not hold a machine id")
    return text
