"""Credentials for what the config uses: the cloud provider's API key or AWS credentials, and AWS
credentials for the sync bucket. Whether they are present and usable, never what they are.

Keys are looked up by the functions the daemon and the sync service use (`apikeys.read_api_key`, the
sync's `boto_session`), so a new source added there (systemd credentials were) is seen here too, and every
value read is registered with the log filter like theirs. A check sees doctor's own environment: under
systemd the daemon may get keys (`LoadCredential=`, `Environment=`) that a login shell does not.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..apikeys import API_KEY_ENV, read_api_key
from ..settings import ConfigError, Settings
from ..sync.bucket import boto_session, describe
from . import Check, fail, ok, skip

CREDENTIALS = "credentials"


def _api_key(settings: Settings) -> tuple[bool, str]:
    m = settings.model
    env_var = API_KEY_ENV[m.provider]
    try:
        key = read_api_key(m, env_var)
    except ConfigError as e:  # names where the key came from, never its value
        return False, str(e).removeprefix("config: ")
    if key is None:
        return False, (
            f"no {env_var} for {m.provider} (environment, systemd credential edgevoice_{env_var}, or a file "
            "named by model.api_key_file)"
        )
    return True, f"{env_var} found" + (" (model.api_key_file)" if m.api_key_file else "")


def _aws(purpose: str, session_maker: Callable[[], Any]) -> tuple[bool, str]:
    try:
        creds = session_maker().get_credentials()
    except Exception as e:  # botocore: a missing profile, a failing credential_process or SSO token, ...
        return False, f"AWS credentials for {purpose} cannot be resolved ({describe(e)})"
    if creds is None:
        return False, f"no AWS credentials for {purpose} (environment, ~/.aws, SSO, an instance or IoT role)"
    return True, f"AWS credentials for {purpose} found ({getattr(creds, 'method', 'resolved')})"


def check_credentials(settings: Settings, *, aws_session: Callable[[], Any] | None = None) -> Check:
    """FAIL when a credential the config needs is missing or malformed; skip when it needs none (the
    `local` model with sync off). `aws_session`: a boto3 Session maker (the sync's `boto_session`)."""
    aws_session = aws_session or boto_session
    provider = settings.model.provider
    found: list[tuple[bool, str]] = []
    if provider in API_KEY_ENV:
        found.append(_api_key(settings))
    aws = [p for p, needed in ((provider, provider == "nova_sonic"), ("sync", bool(settings.sync.bucket))) if needed]
    if aws:
        found.append(_aws(" and ".join(aws), aws_session))
    if not found:
        return skip(CREDENTIALS, "none needed (the local model, sync off)")
    detail = "; ".join(text for _, text in found)
    if all(good for good, _ in found):
        return ok(CREDENTIALS, detail)
    return fail(CREDENTIALS, detail)
