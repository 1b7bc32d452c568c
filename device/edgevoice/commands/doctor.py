"""`edgevoice doctor [--config PATH] [--json]`: can this speaker work? One row per check (`edgevoice.health`).

Exit 0 when no check failed (a skipped check is one that does not apply, or whose prerequisite already
failed), 1 when one did, 2 on bad config. Rows are printed as they come in, in a fixed order; every detail
goes through the log filter's redaction as well, though no check puts a secret in one.
"""

from __future__ import annotations

import argparse
import json

from .. import config

FAILED = 1


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="PATH", help=config.CONFIG_HELP)
    parser.add_argument("--json", action="store_true", help="one JSON object per check and line: name, status, detail")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..health.plan import ORDER, plan
    from ..health.runner import run as run_checks
    from ..logs import redact

    settings = config.load(args.config)
    width = max(len("CHECK"), *map(len, ORDER))
    if not args.json:
        print(f"{'CHECK':<{width}}  STATUS  DETAIL", flush=True)
    failed = []
    for check in run_checks(plan(settings), ORDER):
        detail = redact(check.detail)
        if check.failed:
            failed.append(check.name)
        if args.json:
            print(json.dumps({"name": check.name, "status": check.status, "detail": detail}), flush=True)
        else:
            print(f"{check.name:<{width}}  {check.status:<6}  {detail}", flush=True)
    if not args.json:
        print(f"doctor: {len(failed)} of {len(ORDER)} checks failed: {', '.join(failed)}" if failed else "doctor: ok")
    return FAILED if failed else 0
