"""Start-up to ready and idle peak RSS of `edgevoice run`, against a bare `import strands.bidi`."""

from __future__ import annotations

import statistics
import subprocess
import sys
from collections.abc import Iterator

from bench.common import Row
from bench.daemon_env import bare_import, run_daemon


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
    yield Row("daemon.idle_peak_rss_mib (local model)", statistics.median(r for _, r in local), "MiB", bare_rss,
              "ratio <= 2.5")
    # What the Nova Sonic client costs on its own (AWS CRT, smithy), for reading the row below.
    code = (
        "import strands.bidi.models.bedrock\n"
        "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM:')][0])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    yield Row("import.peak_rss_mib (strands nova_sonic client alone)", int(out) / 1024, "MiB", bare_rss)
    # No network here: a cloud provider's connection fails and the daemon idles offline, retrying.
    for provider in ("nova_sonic", "openai_realtime"):
        cloud = [run_daemon(provider, idle_s) for _ in range(1 if quick else 3)]
        yield Row(
            f"daemon.idle_peak_rss_mib ({provider}, offline)",
            statistics.median(r for _, r in cloud),
            "MiB",
            bare_rss,
            "ratio <= 1.5",
        )
