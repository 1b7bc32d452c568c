"""`edgevoice fleet [--config PATH] list [--json] | show DEVICE ID`: the sessions the devices synced to S3.

For the operator, with their own AWS credentials (the standard chain; `sync.endpoint_url` and `sync.region`
from the config). Only reads the bucket. Exit 0; 1 when the bucket cannot be read (network, 5xx, an
object Strands cannot parse), one line; 2 for bad config, refused credentials or an unknown session.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime

from .. import config
from ..errors import UserError


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="PATH", help=config.CONFIG_HELP)
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    actions = {
        "list": "one line per device and session in the bucket: message objects, newest change",
        "show": "a synced conversation as text, read with Strands' S3SessionManager",
    }
    for name, help_ in actions.items():
        p = sub.add_parser(name, help=help_, description=help_[0].upper() + help_[1:] + ".")
        p.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS, help=config.CONFIG_HELP)
        if name == "list":
            p.add_argument("--json", action="store_true", help="one JSON object per line")
        else:
            p.add_argument("device", metavar="DEVICE", help="a device id from `edgevoice fleet list`")
            p.add_argument("session_id", metavar="ID", help="one of its session ids")
        p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..sync.fleet import Unreachable

    s = config.load(args.config).sync
    if not s.bucket:
        raise UserError("config: sync.bucket is empty: there is no bucket to read")
    try:
        if args.action == "list":
            return _list(s, args.json)
        return _show(s, args.device, args.session_id)
    except Unreachable as e:
        print(f"edgevoice: {e}", file=sys.stderr)
        return 1


def _list(s: config.SyncSettings, as_json: bool) -> int:
    from ..sync.bucket import make_client
    from ..sync.fleet import failure, list_fleet

    try:
        client = make_client(s)
    except Exception as e:
        raised = failure(e, f"s3://{s.bucket}")
        if raised is e:
            raise
        raise raised from None
    rows = list_fleet(client, s)
    if as_json:
        for r in rows:
            row = {"device_id": r.device_id, "session_id": r.session_id, "messages": r.messages}
            print(json.dumps(row | {"last_modified": _utc(r.last_modified).strftime("%Y-%m-%dT%H:%M:%SZ")}))
        return 0
    if not rows:
        print(f"no sessions in s3://{s.bucket}/{s.prefix.strip('/')}")
        return 0
    dw = max(len("DEVICE"), *(len(r.device_id) for r in rows))
    sw = max(len("SESSION"), *(len(r.session_id) for r in rows))
    print(f"{'DEVICE':<{dw}}  {'SESSION':<{sw}}  {'MESSAGES':>8}  LAST MODIFIED")
    for r in rows:
        when = _utc(r.last_modified).strftime("%Y-%m-%d %H:%M:%SZ")
        print(f"{r.device_id:<{dw}}  {r.session_id:<{sw}}  {r.messages:>8}  {when}")
    return 0


def _utc(when: datetime) -> datetime:
    return when.astimezone(UTC)  # botocore's are UTC already; a naive one would be taken as local time


def _show(s: config.SyncSettings, device: str, session_id: str) -> int:
    # The message lines are `edgevoice sessions show`'s: a pulled session and its bucket copy read alike.
    from ..sync.fleet import check_device, check_session_id, read_session
    from .sessions import block_text, iso_when

    conv = read_session(s, check_device(device), check_session_id(session_id))
    total = sum(len(a.messages) for a in conv.agents)
    created = f", created {iso_when(conv.created_at)}" if conv.created_at else ""
    print(f"session {session_id} of device {device}: {total} messages in {len(conv.agents)} agent(s){created}")
    for agent in conv.agents:
        print(f"--- agent {agent.agent_id}")
        tools: dict[str, str] = {}
        for m in agent.messages:
            shown = m.to_message()  # the redacted content when there is one, as a restore gives the agent
            who = "you" if shown["role"] == "user" else shown["role"]
            text = " ".join(block_text(dict(b), tools) for b in shown["content"]) or "(empty)"
            note = " (redacted)" if m.redact_message is not None else ""
            print(f"[{iso_when(m.created_at)}] {who}{note}: {text}")
        state = "unknown (no agent.json)" if agent.state is None else json.dumps(agent.state, sort_keys=True)
        print(f"state: {state}")
        if agent.conversation_manager_state:
            print(f"conversation manager state: {json.dumps(agent.conversation_manager_state, sort_keys=True)}")
    return 0
