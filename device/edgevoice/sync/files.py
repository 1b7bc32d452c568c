"""Session files as the sync service reads and checks them: what may go to the bucket, and come back."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from ..session.jsonfile import BadFile
from ..session.layout import SESSION_PREFIX, message_index
from ..session.validate import check_agent, check_message, check_session

# The relative paths of Strands' layout inside a session directory: what `check_file` checks by kind.
_AGENT_JSON = re.compile(r"^agents/agent_([^/]+)/agent\.json$")
_MESSAGE = re.compile(r"^agents/agent_[^/]+/messages/message_[0-9]+\.json$")
# The same files with ids as the config allows them: all `sync pull` writes, so a key never names a path
# out of the session directory.
_ID = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}"
_RESTORED = re.compile(
    rf"^(session\.json|agents/agent_{_ID}/agent\.json|agents/agent_{_ID}/messages/message_\d+\.json)$"
)


def is_restored(rel: str) -> bool:
    """`rel` is a file the daemon restores: `session.json`, an `agent.json`, a numbered message."""
    return _RESTORED.match(rel) is not None


def upload_order(rel: str) -> tuple[int, str, int, str]:
    """Messages first, in their numbering, then agent.json, then session.json: a reader of the bucket never
    sees an agent or session whose messages are not there yet. Uploads and pulls both go in this order."""
    parent, _, name = rel.rpartition("/")
    n = message_index(name)
    if n is not None:
        return (0, parent, n, name)
    return (2 if rel == "session.json" else 1, rel, 0, name)


class Unusable(Exception):
    """A local file that must not be uploaded, or an object that must not be written locally (half-written,
    corrupt, or not a session file of its kind)."""


def read_file(path: Path) -> tuple[bytes, int, int]:
    """The file's bytes with the size and mtime of the very file read (it may be replaced meanwhile)."""
    with open(path, "rb") as f:
        st = os.fstat(f.fileno())
        return f.read(), st.st_size, st.st_mtime_ns


def check_file(rel: str, body: bytes, session_name: str) -> None:
    """Unusable unless `body` is a whole, valid session file of its kind: a half-written or corrupt local
    file never replaces a good remote copy. Other JSON files in the session (Strands' `multi_agents/`) only
    need to be JSON objects."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise Unusable("not valid JSON") from None
    if not isinstance(data, dict):
        raise Unusable("not a JSON object")
    try:
        if rel == "session.json":
            check_session(data, session_name[len(SESSION_PREFIX) :])
        elif m := _AGENT_JSON.match(rel):
            check_agent(data, m.group(1))
        elif _MESSAGE.match(rel):
            check_message(data)
    except BadFile as e:
        raise Unusable(str(e)) from None
