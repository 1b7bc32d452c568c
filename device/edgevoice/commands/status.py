"""`edgevoice status`: what the running daemon is doing now, from the file it keeps (`appliance/status.py`).

A file alone proves nothing (a daemon killed by SIGKILL leaves its last one behind), so the pid in it must
be alive. Exit codes follow `systemctl status`: 0 running, 3 not running; 1 when the file cannot be read.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from .. import config

NOT_RUNNING = 3
"""As `systemctl status` (LSB's "program is not running")."""


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="PATH", help=config.CONFIG_HELP)
    parser.add_argument("--json", action="store_true", help="print the daemon's status as one JSON object")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..appliance.status import DEFAULT_PATH, FORMAT

    settings = config.load(args.config)
    path = Path(settings.service.status_file or DEFAULT_PATH)
    try:
        data: Any = json.loads(path.read_text())
    except FileNotFoundError:
        print(f"edgevoice: not running (no {path})", file=sys.stderr)
        return NOT_RUNNING
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        print(f"edgevoice: cannot read {path} ({getattr(e, 'strerror', None) or e})", file=sys.stderr)
        return 1
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        print(f"edgevoice: {path} is not a status file of this version (format {FORMAT})", file=sys.stderr)
        return 1
    pid = data.get("pid")
    if not isinstance(pid, int) or not _alive(pid):
        print(f"edgevoice: not running (the daemon {pid} that wrote {path} is gone)", file=sys.stderr)
        return NOT_RUNNING
    if args.json:
        print(json.dumps(data))
        return 0
    print(_table(data))
    return 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, as another user (the service's own)
    return True


def _ago(t: object, now: float) -> str:
    if not isinstance(t, int | float):
        return ""
    s = max(0, int(now - t))
    return f"{s // 3600}h{s % 3600 // 60:02d}m ago" if s >= 3600 else f"{s // 60}m{s % 60:02d}s ago"


def _table(d: dict[str, Any]) -> str:
    now = time.time()
    error = d.get("last_error")
    backlog = d.get("sync_backlog")
    rows = [
        ("status", d.get("status", "")),
        ("state", d.get("state", "")),
        ("connection", d.get("connection", "")),
        ("provider", d.get("provider", "")),
        ("session", d.get("session_id", "")),
        ("storage", d.get("storage") or "ok"),
        ("sync backlog", "sync off" if backlog is None else f"{backlog} session(s)"),
        ("last error", f"{error} ({_ago(d.get('last_error_at'), now)})" if error else "none"),
        ("pid", f"{d.get('pid')}, up {_ago(d.get('started_at'), now).removesuffix(' ago')}"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
