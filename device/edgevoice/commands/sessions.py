"""`edgevoice sessions [--config PATH] list | show ID | export ID | reset`: the stored conversations.

All but `reset` only read: no scan, no repair; an unusable file is skipped and reported.
`reset` only writes `<session.dir>/current`, making a new session id current; the old session stays.
Like the others it needs an existing `session.dir` (the daemon creates it, as the user it runs as).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from typing import Any

from .. import config


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="PATH", help=config.CONFIG_HELP)
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    actions = {
        "list": "one line per stored session: size, messages, last activity, sync state (* = current)",
        "show": "a conversation as text",
        "export": "a conversation as JSON lines, one message per line",
        "reset": "start a new session id for the device (the old session is kept)",
    }
    for name, help_ in actions.items():
        p = sub.add_parser(name, help=help_, description=help_[0].upper() + help_[1:] + ".")
        # Also accepted after the action; SUPPRESS keeps a value given before it.
        p.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS, help=config.CONFIG_HELP)
        if name in ("show", "export"):
            p.add_argument("session_id", metavar="ID", help="a session id from `edgevoice sessions list`")
        if name == "list":
            p.add_argument("--json", action="store_true", help="one JSON object per line")
        p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..session.inspect import StoreError, UnknownSession

    settings = config.load(args.config).session
    try:
        if args.action == "list":
            return _list(settings, args.json)
        if args.action == "show":
            return _show(settings, args.session_id)
        if args.action == "export":
            return _export(settings, args.session_id)
        return _reset(settings)
    except (StoreError, UnknownSession) as e:
        print(f"edgevoice: {e}", file=sys.stderr)
        return 2


def _when(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(epoch))


def iso_when(stamp: str) -> str:
    try:
        return datetime.fromisoformat(stamp).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    except ValueError:
        return stamp or "time unknown"


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{n} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _list(settings: config.SessionSettings, as_json: bool) -> int:
    from ..session.current import current_session_id
    from ..session.inspect import list_sessions

    sessions = list_sessions(settings.dir)
    current = current_session_id(settings)
    rows: list[dict[str, Any]] = [
        {
            "session_id": s.session_id,
            "current": s.session_id == current,
            "stored": True,
            "size_bytes": s.size_bytes,
            "messages": s.message_count,
            "messages_by_agent": s.messages,
            "last_activity": _when(s.last_activity).replace(" ", "T"),
            "synced": s.synced,
            "quarantined": s.quarantined,
        }
        for s in sessions
    ]
    if all(s.session_id != current for s in sessions):
        # Just after a reset: current, nothing written yet.
        rows.append(
            {
                "session_id": current,
                "current": True,
                "stored": False,
                "size_bytes": 0,
                "messages": 0,
                "messages_by_agent": {},
                "last_activity": None,
                "synced": False,
                "quarantined": 0,
            }
        )
    if as_json:
        for row in rows:
            print(json.dumps(row))
        return 0
    width = max(len("SESSION"), *(len(r["session_id"]) for r in rows))
    print(f"  {'SESSION':<{width}}  {'SIZE':>20}  {'MESSAGES':<20}  {'LAST ACTIVITY':<20}  SYNCED  QUARANTINED")
    for r in rows:
        mark = "*" if r["current"] else " "
        if not r["stored"]:
            print(f"{mark} {r['session_id']:<{width}}  (current; nothing stored yet)")
            continue
        size = f"{r['size_bytes']} B" + ("" if r["size_bytes"] < 1024 else f" ({human_size(r['size_bytes'])})")
        per_agent = ", ".join(f"{a} {n}" for a, n in r["messages_by_agent"].items())
        msgs = f"{r['messages']} ({per_agent})" if per_agent else "0"
        when = r["last_activity"].replace("T", " ")
        synced = "yes" if r["synced"] else "no"
        print(f"{mark} {r['session_id']:<{width}}  {size:>20}  {msgs:<20}  {when:<20}  {synced:<6}  {r['quarantined']}")
    return 0


def _clip(text: str, limit: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _result_text(result: dict[str, Any]) -> str:
    parts = []
    for item in result.get("content") or []:
        if isinstance(item, dict) and "text" in item:
            parts.append(str(item["text"]))
        elif isinstance(item, dict) and "json" in item:
            parts.append(json.dumps(item["json"], ensure_ascii=False))
        elif isinstance(item, dict):
            parts.append(f"[{', '.join(item)}]")
    return " ".join(parts)


def block_text(block: dict[str, Any], tools: dict[str, str]) -> str:
    if "text" in block:
        return str(block["text"]) or "(empty)"
    if isinstance(use := block.get("toolUse"), dict):
        tools[str(use.get("toolUseId"))] = name = str(use.get("name", "?"))
        return f"[tool use {name} {_clip(json.dumps(use.get('input'), ensure_ascii=False), 80)}]"
    if isinstance(result := block.get("toolResult"), dict):
        name = tools.get(str(result.get("toolUseId")), "?")
        return f"[tool result {name} ({result.get('status', '?')}): {_clip(_result_text(result), 80)}]"
    return "[" + ", ".join(block) + "]"  # images, documents, reasoning...: named, not shown


def _show(settings: config.SessionSettings, session_id: str) -> int:
    from ..session.inspect import Problem, StoredMessage, read_conversation

    conv = read_conversation(settings.dir, session_id)
    total = sum(len(a.messages) for a in conv.agents)
    created = f", created {iso_when(conv.created_at)}" if conv.created_at else ""
    print(f"session {conv.session_id}: {total} messages in {len(conv.agents)} agent(s){created}")
    for p in conv.problems:
        if p.index is None:
            print(f"! skipped {p.path}: {p.reason}")
    for agent in conv.agents:
        print(f"--- agent {agent.agent_id}")
        tools: dict[str, str] = {}
        # Skipped message files shown where they were, so the gap is visible.
        entries: list[tuple[int, StoredMessage | Problem]] = [(m.index, m) for m in agent.messages]
        entries += [(p.index, p) for p in agent.problems if p.index is not None]
        for _, e in sorted(entries, key=lambda t: t[0]):
            if isinstance(e, Problem):
                print(f"! skipped {e.path}: {e.reason}")
                continue
            who = "you" if e.role == "user" else e.role
            text = " ".join(block_text(b, tools) for b in e.content) or "(empty)"
            note = " (redacted)" if e.redacted else ""
            print(f"[{iso_when(e.created_at)}] {who}{note}: {text}")
        state = "unknown (agent.json unusable)" if agent.state is None else json.dumps(agent.state, sort_keys=True)
        print(f"state: {state}")
        if agent.conversation_manager_state:
            print(f"conversation manager state: {json.dumps(agent.conversation_manager_state, sort_keys=True)}")
    for name, reason in conv.quarantine:
        print(f"quarantined: {name}: {reason}")
    if conv.problems:
        print(f"{len(conv.problems)} file(s) could not be read and were skipped")
    return 0


def _export(settings: config.SessionSettings, session_id: str) -> int:
    from ..session.inspect import read_conversation

    conv = read_conversation(settings.dir, session_id)
    for agent in conv.agents:
        for m in agent.messages:
            obj = {
                "agent_id": m.agent_id,
                "message_id": m.message_id,
                "role": m.role,
                "content": m.content,
                "created_at": m.created_at,
            }
            print(json.dumps(obj, ensure_ascii=False))
    for p in conv.problems:
        print(f"edgevoice: session {session_id}: skipped {p.path}: {p.reason}", file=sys.stderr)
    return 0


def _reset(settings: config.SessionSettings) -> int:
    from pathlib import Path

    from ..session.current import current_session_id, new_session_id, set_current
    from ..session.inspect import check_store

    check_store(Path(settings.dir))  # as `list` does: a missing store is an error, not created here
    old = current_session_id(settings)
    new = new_session_id(settings, datetime.now(UTC))
    try:
        set_current(settings.dir, new)
    except OSError as e:
        print(f"edgevoice: session.dir {settings.dir!r}: cannot write the current session id ({e})", file=sys.stderr)
        return 2
    print(new)
    print(f"edgevoice: session {new} is current; {old} is kept", file=sys.stderr)
    return 0
