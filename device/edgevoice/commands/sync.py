"""`edgevoice sync [--once]`: copy the stored sessions to S3; `edgevoice sync pull ID`: bring one back.

`--once` uploads everything pending and exits 0 when all of it is confirmed by S3, 1 when something could
not be uploaded (network, 5xx, throttling, a conflict, an unusable local file), 2 on bad config. Without it,
the service runs until SIGTERM (its own process and unit, beside the daemon).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from .. import config
from ..errors import UserError

log = logging.getLogger("edgevoice.sync")

if TYPE_CHECKING:
    from ..sync.service import Syncer

NOT_SYNCED = 1
STOP_GRACE_S = 5.0
"""SIGTERM: the longest wait for uploads in flight before the service exits anyway (exit 0)."""


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="PATH", help=config.CONFIG_HELP)
    parser.add_argument("--once", action="store_true", help="upload what is pending, then exit (0: all confirmed)")
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    pull = sub.add_parser("pull", help="bring a session from the bucket into the local store")
    pull.add_argument("session_id", metavar="ID", help="the session id to bring back")
    pull.add_argument("--device", metavar="DEVICE_ID", help="whose folder to read (default: this device's)")
    pull.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS, help=config.CONFIG_HELP)
    parser.set_defaults(func=run, action=None)


def run(args: argparse.Namespace) -> int:
    settings = config.load(args.config)
    if args.action == "pull":
        from ..sync.pull import pull

        return pull(settings, args.session_id, args.device)
    if not settings.sync.bucket:
        if args.once:
            raise UserError("config: sync.bucket is empty: there is no bucket to sync to")
        print("edgevoice: sync is off (sync.bucket is empty)", file=sys.stderr)
        return 0
    from ..sync.names import device_id

    device = device_id(settings.sync)  # a bad or missing machine id is bad config: exit 2 before anything
    storage = Path(settings.session.dir)
    if args.once:
        if not storage.is_dir():  # the daemon has stored nothing yet (it creates session.dir)
            print("sync: nothing stored yet")
            return 0
        return _once(_syncer(settings, device))
    stop = threading.Event()
    running: list[Syncer] = []

    def on_signal(*_: object) -> None:
        stop.set()
        for syncer in running:
            syncer.stop()
        # Uploads in flight may be waiting out a stalled network (3 attempts of 20 s). Killing the service is
        # safe (nothing is recorded before S3 confirms it; a cut-off upload is repeated next time), so it is
        # gone within STOP_GRACE_S whatever the network does.
        timer = threading.Timer(STOP_GRACE_S, os._exit, args=(0,))
        timer.daemon = True
        timer.start()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    # Started before the daemon ever ran: wait for its store rather than create it (as another user, maybe).
    while not storage.is_dir():
        if stop.wait(settings.sync.interval_s):
            return 0
    running.append(_syncer(settings, device))
    _serve(running[0], settings.sync, stop)
    return 0


def _syncer(settings: config.Settings, device: str) -> Syncer:
    """A Syncer for the store at `session.dir`, which exists: its writer id lives there."""
    from ..sync.bucket import Bucket, make_client
    from ..sync.service import Syncer
    from ..sync.state import writer_id
    from ..sync.throttle import Throttle

    s = settings.sync
    storage = Path(settings.session.dir)
    bucket = Bucket(make_client(s), s, device, writer_id(storage))
    return Syncer(storage, bucket, concurrency=s.max_concurrency, throttle=Throttle(s.max_bytes_per_s))


def _once(syncer: Syncer) -> int:
    try:
        report = syncer.cycle(full=True)
    finally:
        syncer.close()
    for line in report.errors:
        print(f"edgevoice: sync: {line}", file=sys.stderr)
    print(
        f"sync: {report.uploaded} uploaded, {report.already} already confirmed, {report.failed} failed, "
        f"{report.conflicts} conflicts, {report.unusable} unusable"
    )
    return 0 if report.complete else NOT_SYNCED


def _serve(syncer: Syncer, s: config.SyncSettings, stop: threading.Event) -> None:
    from ..sync.service import run_forever

    try:
        run_forever(syncer, s.interval_s, s.backoff_max_s, stop.wait)
    finally:
        syncer.close()
    log.info("sync: stopped")
