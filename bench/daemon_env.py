"""A throwaway HOME with ALSA file PCMs and a config, for running `edgevoice run` with no sound card."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

VENV_BIN = Path(sys.executable).parent


def make_env(
    root: Path, provider: str = "local", seconds_of_silence: int = 60, model: dict[str, str] | None = None
) -> tuple[dict[str, str], Path]:
    """The environment and config file for `edgevoice run`; `model` adds `[model]` keys (string values)."""
    home = root / "home"
    home.mkdir(parents=True, exist_ok=True)
    mic = root / "mic.raw"
    from edgevoice.pcm import ms_bytes

    mic.write_bytes(bytes(ms_bytes(1000 * seconds_of_silence)))
    (home / ".asoundrc").write_text(
        f'pcm.bench_mic {{ type file slave.pcm "null" file "/dev/null" infile "{mic}" format "raw" }}\n'
        f'pcm.bench_spk {{ type file slave.pcm "null" file "/dev/null" format "raw" }}\n'
    )
    cfg = root / "edgevoice.toml"
    extra = "".join(f'{key} = "{value}"\n' for key, value in (model or {}).items())
    cfg.write_text(
        f'[audio]\ncapture_device = "bench_mic"\nplayback_device = "bench_spk"\n'
        f'[model]\nprovider = "{provider}"\n{extra}[session]\ndir = "{root / "sessions"}"\n'
    )
    # As a unit starts it: no SSL_CERT_FILE / SSL_CERT_DIR (a machine behind a TLS-inspecting proxy sets them
    # for everything; the daemon would trust that bundle, parsed whole, instead of the system's hashed
    # directory, read lazily: `edgevoice/models/castore.py`).
    inherited = {k: v for k, v in os.environ.items() if k not in ("SSL_CERT_FILE", "SSL_CERT_DIR")}
    env = dict(
        inherited,
        HOME=str(home),
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_EC2_METADATA_DISABLED="true",
        OPENAI_API_KEY="sk-bench",
        GOOGLE_API_KEY="bench-google-key",
        PYTHONUNBUFFERED="1",
    )
    return env, cfg


def vm_hwm_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM")


def run_daemon(
    provider: str, idle_s: float, model: dict[str, str] | None = None, settle: str | None = None
) -> tuple[float, float]:
    """(seconds from spawn to 'ready', peak RSS MiB after idling idle_s) of `edgevoice run`; `model` as in
    make_env. With `settle`, the idling starts only once a log line containing it appeared (at most
    WAIT_S after ready): a fixed wait from ready can end before a slow provider's client is even
    imported (Gemini's takes 2-3 s here), and what the row should see is the daemon idling with it loaded."""
    with tempfile.TemporaryDirectory() as d:
        env, cfg = make_env(Path(d), provider, model=model)
        t0 = time.perf_counter()
        p = subprocess.Popen(
            [str(VENV_BIN / "edgevoice"), "run", "--config", str(cfg), "--input-pace", "1"],
            env=env,
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
        )
        # stderr is read to its end in a thread (each line with the time it came): waits get deadlines, and a
        # daemon that logs while it idles never blocks on a full pipe.
        lines: queue.Queue[tuple[float, str] | None] = queue.Queue()
        assert p.stderr is not None
        stderr = p.stderr

        def read() -> None:
            for line in stderr:
                lines.put((time.perf_counter(), line))
            lines.put(None)

        threading.Thread(target=read, daemon=True).start()
        try:
            at = _wait_for(lines, "ready: first frame accepted", WAIT_S)
            if at is None:
                rc = p.poll()
                why = f"exited before it was ready: rc={rc}" if rc is not None else f"not ready within {WAIT_S:g} s"
                raise RuntimeError(f"edgevoice run ({provider}) {why}")
            ready = at - t0
            if settle and _wait_for(lines, settle, WAIT_S) is None:
                raise RuntimeError(f"edgevoice run ({provider}) never logged {settle!r} (rc={p.poll()})")
            time.sleep(idle_s)
            rss = vm_hwm_kib(p.pid) / 1024
        finally:
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        return ready, rss


WAIT_S = 60.0
"""The longest wait for the ready line, and then for the `settle` line."""


def _wait_for(lines: queue.Queue[tuple[float, str] | None], text: str, timeout_s: float) -> float | None:
    """When a line containing `text` came (perf_counter), or None: not within timeout_s, or stderr ended."""
    deadline = time.monotonic() + timeout_s
    while (left := deadline - time.monotonic()) > 0:
        try:
            item = lines.get(timeout=left)
        except queue.Empty:
            return None
        if item is None:
            return None
        if text in item[1]:
            return item[0]
    return None


def bare_import() -> tuple[float, float]:
    """(wall seconds, peak RSS MiB) of `python -c "import strands.bidi"`."""
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss across fork and exec, so a child would report ours.
    code = "import strands.bidi\nprint([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM:')][0])"
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return time.perf_counter() - t0, int(out) / 1024
