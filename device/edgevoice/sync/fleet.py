"""The bucket as the operator reads it: its devices and sessions (`edgevoice fleet list`), one conversation
through stock Strands' S3SessionManager (`fleet show`), and the names and S3 errors `sync pull` shares.

Nothing here writes to the bucket. S3SessionManager creates a session it does not find, so `read_session`
checks `session.json` first and builds the manager on a boto3 session that refuses every write, which also
covers the session vanishing between that check and the manager's own read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..config import validate_session_id
from ..errors import UserError
from ..session.layout import AGENT_PREFIX, SESSION_PREFIX, message_index
from ..settings import ConfigError, SyncSettings
from .bucket import boto_session, client_config, describe, error_code, object_key
from .names import is_segment

if TYPE_CHECKING:
    from strands.session.s3_session_manager import S3SessionManager
    from strands.types.session import SessionMessage

# S3 answers that the operator's config or credentials must fix (exit 2), not waiting (exit 1).
_USER_CODES = frozenset(
    {"NoSuchBucket", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken"}
)
_WRITES = ("PutObject", "CopyObject", "DeleteObject", "DeleteObjects", "CreateMultipartUpload")


class Unreachable(Exception):
    """The bucket could not be read (network, 5xx, throttling, an unreadable object); one line."""


class ReadOnly(Exception):
    """A write was attempted through a read-only boto3 session (Strands creating a missing session)."""


@dataclass(frozen=True)
class StoredSession:
    """One session folder in the bucket."""

    device_id: str
    session_id: str
    messages: int
    """Message objects, every agent's."""
    last_modified: datetime
    """Newest LastModified of its objects."""


@dataclass(frozen=True)
class RemoteAgent:
    agent_id: str
    state: dict[str, Any] | None
    """The agent's key-value state from agent.json; None when agent.json is not there (yet)."""
    conversation_manager_state: dict[str, Any] | None
    messages: list[SessionMessage]


@dataclass(frozen=True)
class RemoteConversation:
    created_at: str | None
    agents: list[RemoteAgent]


def check_session_id(session_id: str) -> str:
    try:
        return validate_session_id(session_id, "session id")
    except ConfigError as e:
        raise UserError(str(e).removeprefix("config: ")) from None


def check_device(device: str) -> str:
    """A device id usable as a key segment, by the rule `sync.device_id` follows."""
    if not is_segment(device):
        raise UserError(f"device id {device!r} must be 1-128 letters, digits, '_', '.', '=' or '-'")
    return device


def session_key(s: SyncSettings, device: str, session_id: str, rel: str = "") -> str:
    """The key of `rel` in a device's session folder, as the sync service builds it."""
    return object_key(s, device, f"{SESSION_PREFIX}{session_id}", rel)


def failure(e: Exception, where: str) -> Exception:
    """What to raise for a failed S3 call: UserError (exit 2) for what the operator must fix (no such bucket,
    no or refused credentials), Unreachable (exit 1) for the rest of botocore's errors, `e` itself otherwise
    (a bug keeps its traceback)."""
    from botocore.exceptions import (  # type: ignore[import-untyped]
        BotoCoreError,
        ClientError,
        NoCredentialsError,
        ProfileNotFound,
    )

    if isinstance(e, (NoCredentialsError, ProfileNotFound)) or error_code(e) in _USER_CODES:
        return UserError(f"{where}: {describe(e)}")
    if isinstance(e, (BotoCoreError, ClientError)):
        return Unreachable(f"{where}: {describe(e)}")
    return e


def objects(client: Any, bucket: str, prefix: str) -> Iterator[dict[str, Any]]:
    """Every object under `prefix` (Key, LastModified, Size, ETag), page after page."""
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        yield from page.get("Contents", [])


def folders(client: Any, bucket: str, prefix: str) -> list[str]:
    """The names of the "folders" directly under `prefix` (which ends with '/' or is empty)."""
    out = []
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix, Delimiter="/")
    for page in pages:
        out += [str(p["Prefix"])[len(prefix) :].rstrip("/") for p in page.get("CommonPrefixes", [])]
    return out


def list_fleet(client: Any, s: SyncSettings) -> list[StoredSession]:
    """Every device's sessions: one listing of the devices, then one (paginated) per device."""
    root = f"{s.prefix.strip('/')}/" if s.prefix.strip("/") else ""
    out = []
    try:
        for device in sorted(folders(client, s.bucket, root)):
            found: dict[str, tuple[int, datetime]] = {}
            for obj in objects(client, s.bucket, f"{root}{device}/"):
                session, _, rel = str(obj["Key"])[len(root) + len(device) + 1 :].partition("/")
                if not session.startswith(SESSION_PREFIX) or len(session) == len(SESSION_PREFIX):
                    continue
                count, newest = found.get(session, (0, obj["LastModified"]))
                found[session] = (count + _is_message(rel), max(newest, obj["LastModified"]))
            out += [StoredSession(device, name[len(SESSION_PREFIX) :], n, when) for name, (n, when) in found.items()]
    except Exception as e:
        raised = failure(e, f"s3://{s.bucket}/{root}")
        if raised is e:
            raise
        raise raised from None
    return sorted(out, key=lambda r: (r.device_id, r.session_id))


def _is_message(rel: str) -> bool:
    """`agents/agent_<id>/messages/message_<n>.json`: what the daemon restores as a message."""
    parts = rel.split("/")
    return len(parts) == 4 and parts[::2] == ["agents", "messages"] and message_index(parts[3]) is not None


POOL = 32
"""Strands reads an agent's messages with a thread each (up to 32): a pool that size keeps urllib3 quiet."""


def read_only_manager(boto_session: Any, s: SyncSettings, device: str, session_id: str) -> S3SessionManager:
    """Stock S3SessionManager over the device's folder, on a boto3 session whose clients refuse every write:
    a missing session raises ReadOnly instead of being created."""
    from strands.session.s3_session_manager import S3SessionManager

    def refuse(**kwargs: Any) -> None:
        raise ReadOnly(f"{kwargs.get('event_name', 'a write')}: reading the bucket never writes to it")

    for op in _WRITES:
        boto_session.events.register(f"before-call.s3.{op}", refuse)
    return S3SessionManager(
        session_id=session_id,
        bucket=s.bucket,
        prefix=object_key(s, device, ""),
        boto_session=boto_session,
        boto_client_config=client_config(s, pool=POOL),
        endpoint_url=s.endpoint_url or None,
    )


def read_session(s: SyncSettings, device: str, session_id: str) -> RemoteConversation:
    """Every agent's messages, in order. UserError when the session is not in the bucket (nothing created)."""
    base = session_key(s, device, session_id)
    where = f"s3://{s.bucket}/{base}/"
    missing = UserError(f"no session {session_id!r} of device {device!r} in {where}")
    try:
        session = boto_session()
        client = session.client("s3", endpoint_url=s.endpoint_url or None, config=client_config(s, pool=POOL))
        try:
            client.head_object(Bucket=s.bucket, Key=f"{base}/session.json")
        except Exception as e:
            if error_code(e) in ("404", "NoSuchKey", "NotFound"):
                raise missing from None
            raise
        names = folders(client, s.bucket, f"{base}/agents/")
        agent_ids = sorted(n[len(AGENT_PREFIX) :] for n in names if n.startswith(AGENT_PREFIX) and n != AGENT_PREFIX)
        return _conversation(lambda: read_only_manager(session, s, device, session_id), agent_ids, where)
    except ReadOnly:
        raise missing from None  # deleted since the HEAD: Strands tried to create it
    except (UserError, Unreachable):
        raise
    except Exception as e:
        raised = failure(e, where)
        if raised is e:
            raise
        raise raised from None


def _conversation(open_manager: Callable[[], S3SessionManager], agent_ids: list[str], where: str) -> RemoteConversation:
    from strands.types.exceptions import SessionException

    agents = []
    try:
        manager = open_manager()
        for agent_id in agent_ids:
            agent = manager.read_agent(manager.session_id, agent_id)
            messages = manager.list_messages(manager.session_id, agent_id)
            if agent is None:
                agents.append(RemoteAgent(agent_id, None, None, messages))
            else:
                agents.append(RemoteAgent(agent_id, agent.state, agent.conversation_manager_state, messages))
    except SessionException as e:
        # Strands wraps S3's errors; an object that is not JSON is wrapped with no botocore error inside.
        cause = e.__cause__
        if isinstance(cause, Exception) and (raised := failure(cause, where)) is not cause:
            raise raised from None
        raise Unreachable(f"{where}: {str(e).splitlines()[0][:200]}") from None
    except (TypeError, ValueError) as e:
        # Strands' parsing of a malformed object: a record without its fields, a message name without a number.
        raise Unreachable(f"{where}: Strands cannot read an object there ({type(e).__name__})") from None
    return RemoteConversation(manager.session.created_at, agents)
