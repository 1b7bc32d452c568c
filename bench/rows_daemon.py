"""Start-up to ready and idle peak RSS of `edgevoice run`, against a bare `import strands.bidi`."""

from __future__ import annotations

import statistics
import subprocess
import sys
from collections.abc import Iterator

from bench.common import Row
from bench.daemon_env import bare_import, run_daemon

CLOUD = ("nova_sonic", "openai_realtime", "gemini_live")
# The offline fallback (`model.fallback`, `local` by default) loads the local model once the cloud is away
# (about 14 MB): the provider rows turn it off so that they measure the provider, and one row measures it on.
NO_FALLBACK = {"fallback": "none"}
# The log lines the idling waits for (`daemon/connection.py`): the first attempt failed; the fallback answers.
FAILED = "model stopped:"
FALLBACK = "the offline model answers meanwhile"


def rows(quick: bool) -> Iterator[Row]:
    n = 3 if quick else 7
    bare = [bare_import() for _ in range(n)]
    bare_t = statistics.median(t for t, _ in bare)
    bare_rss = statistics.median(r for _, r in bare)
    idle_s = 2.0 if quick else 5.0
    local = [run_daemon("local", idle_s) for _ in range(n)]
    yield Row(
        "daemon.startup_to_ready_s (local model)",
        statistics.median(t for t, _ in local),
        "s",
        bare_t,
        "ratio <= 1.3",
    )
    yield Row(
        "daemon.idle_peak_rss_mib (local model)",
        statistics.median(r for _, r in local),
        "MiB",
        bare_rss,
        "ratio <= 2.5",
    )
    # What the Nova Sonic client costs on its own (AWS CRT, smithy, the SDK), imported the way the daemon
    # imports it (models/nova_sonic.py keeps aiohttp out), for reading the rows below.
    code = (
        "import strands.bidi, edgevoice.models.nova_sonic\n"
        "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM:')][0])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    yield Row("import.peak_rss_mib (nova_sonic client, as loaded)", int(out) / 1024, "MiB", bare_rss)
    # No network here: a cloud provider's connection fails and the daemon idles offline, retrying. Measured
    # idle_s after the first attempt failed (the provider's client is loaded by then, however slow the machine).
    runs = 1 if quick else 3
    for provider in CLOUD:
        cloud = [run_daemon(provider, idle_s, NO_FALLBACK, settle=FAILED) for _ in range(runs)]
        yield Row(
            f"daemon.idle_peak_rss_mib ({provider}, offline)",
            statistics.median(r for _, r in cloud),
            "MiB",
            bare_rss,
            "ratio <= 1.5",
        )
    # The shipped default: offline, the local model answers. That is the local model's daemon plus the
    # provider's client, so it gets the local model's budget.
    cloud = [run_daemon("nova_sonic", idle_s, {"fallback": "local"}, settle=FALLBACK) for _ in range(runs)]
    yield Row(
        "daemon.idle_peak_rss_mib (nova_sonic, fallback)",
        statistics.median(r for _, r in cloud),
        "MiB",
        bare_rss,
        "ratio <= 2.5",
    )
