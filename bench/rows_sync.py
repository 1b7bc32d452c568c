"""The S3 sync service against stock `S3SessionManager` writing the same conversation to the same S3.

S3 is moto in its own process (so it shares no GIL with what is measured), reached through tests/s3proxy.py
adding `RTT_S` per request (a home uplink to a nearby region; 127.0.0.1 alone would measure moto's CPU, not
a network): both sides pay the same round trips. Stock is driven the way a `BidiAgent` drives it, appending
through the agent's own `_append_messages` (the message, then `sync_agent`); ours syncs a store written the
same way by `DurableFileSessionManager`.

Rows: S3 requests per message (goal <= 1.05, ours made once the backlog is there; stock makes about 4),
messages per second while draining a 10,000-message backlog (2,000 with --quick) against stock's messages
per second while it writes (goal >= 10x), and `edgevoice sync --once`'s peak RSS while draining, against
the daemon's idle peak with the `local` model measured in the same run (goal: below it).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.common import Row
from bench.daemon_env import run_daemon
from bench.rows_session import _message

BUCKET = "edgevoice-bench"
RTT_S = 0.02
AGENT_ID = "edgevoice"


def _env() -> None:
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_EC2_METADATA_DISABLED="true")


def _write(manager: Any, n: int) -> float:
    """Seconds for n appends through a real BidiAgent (the restore at construction not counted)."""
    from strands.bidi import BidiAgent

    from edgevoice.models.local import LocalModel

    async def go() -> float:
        agent = BidiAgent(model=LocalModel(), session_manager=manager, agent_id=AGENT_ID)
        t0 = time.perf_counter()
        for i in range(n):
            await agent._append_messages(_message(i))
        return time.perf_counter() - t0

    return asyncio.run(go())


def _stock(endpoint: str, n: int) -> tuple[float, float]:
    """(requests per message, messages per second) of stock S3SessionManager writing n messages."""
    from strands.session.s3_session_manager import S3SessionManager

    from tests.s3server import boto_session

    manager = S3SessionManager(
        session_id="stock", bucket=BUCKET, prefix="stock", boto_session=boto_session(), endpoint_url=endpoint
    )
    calls: Counter[str] = Counter()
    manager.client.meta.events.register("before-send.s3.*", lambda request, **_: calls.update([request.method]))
    seconds = _write(manager, n)
    return sum(calls.values()) / n, n / seconds


def _store(root: Path, n: int) -> Path:
    from edgevoice.session import DurableFileSessionManager

    store = root / "sessions"
    _write(DurableFileSessionManager("backlog", storage_dir=str(store)), n)
    return store


def _ours(endpoint: str, store: Path, prefix: str) -> tuple[int, float]:
    """(requests, seconds) of one full cycle over `store` (every file uploaded, or it raises)."""
    from edgevoice import config
    from edgevoice.sync.bucket import Bucket, make_client
    from edgevoice.sync.service import Syncer
    from edgevoice.sync.state import writer_id

    s = config.parse(f'[sync]\nbucket = "{BUCKET}"\nendpoint_url = "{endpoint}"\nprefix = "{prefix}"\n').sync
    s3 = make_client(s)
    calls: Counter[str] = Counter()
    s3.meta.events.register("before-send.s3.*", lambda request, **_: calls.update([request.method]))
    syncer = Syncer(store, Bucket(s3, s, "bench-device", writer_id(store)), concurrency=s.max_concurrency)
    try:
        t0 = time.perf_counter()
        report = syncer.cycle(full=True)
        seconds = time.perf_counter() - t0
    finally:
        syncer.close()
    if not report.complete:
        raise RuntimeError(f"bench sync: the cycle did not complete: {report.errors}")
    return sum(calls.values()), seconds


def _sync_once_rss(endpoint: str, store: Path, prefix: str) -> float:
    """Peak RSS (MiB) of `edgevoice sync --once` draining `store` in its own process."""
    cfg = store.parent / "sync.toml"
    cfg.write_text(
        f'[session]\ndir = "{store}"\n[sync]\nbucket = "{BUCKET}"\nendpoint_url = "{endpoint}"\n'
        f'prefix = "{prefix}"\ndevice_id = "bench-device"\n'
    )
    code = (
        "import sys\nfrom edgevoice.cli import main\n"
        f"rc = main(['sync', '--config', {str(cfg)!r}, '--once'])\n"
        "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM:')][0])\n"
        "sys.exit(rc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=1800)
    if out.returncode != 0:
        raise RuntimeError(f"bench sync: edgevoice sync --once exited {out.returncode}: {out.stderr[-500:]}")
    return int(out.stdout.strip().splitlines()[-1]) / 1024


def rows(quick: bool) -> Iterator[Row]:
    from tests.s3proxy import FaultProxy
    from tests.s3server import client, moto_process

    _env()
    backlog = 2000 if quick else 10_000
    with tempfile.TemporaryDirectory() as d, moto_process() as moto, FaultProxy.to(moto) as proxy:
        client(moto).create_bucket(Bucket=BUCKET)
        proxy.latency(RTT_S)
        root = Path(d)
        stock_rpm, stock_rate = _stock(proxy.endpoint, 100)
        small = _store(root / "small", 100)
        requests, _ = _ours(proxy.endpoint, small, "small")
        yield Row("sync.requests_per_message (100-message backlog)", requests / 100, "req", stock_rpm, "value <= 1.05")
        big = _store(root / "big", backlog)
        _, seconds = _ours(proxy.endpoint, big, "big")
        yield Row(
            f"sync.drain_messages_per_s (large backlog, {RTT_S * 1000:.0f} ms RTT)",  # --quick: 2,000; else 10,000
            backlog / seconds,
            "msg/s",
            stock_rate,
            "ratio >= 10",
        )
        rss = _sync_once_rss(proxy.endpoint, big, "rss")
    daemon = statistics.median(run_daemon("local", 2.0)[1] for _ in range(1 if quick else 3))
    yield Row("sync.peak_rss_mib (sync --once draining a large backlog)", rss, "MiB", daemon, "ratio < 1.0")
