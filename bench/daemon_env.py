"""A throwaway HOME with ALSA file PCMs and a config, for running `edgevoice run` with no sound card."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VENV_BIN = Path(sys.executable).parent


def make_env(root: Path, provider: str = "local", seconds_of_silence: int = 60) -> tuple[dict[str, str], Path]:
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
    cfg.write_text(
        f'[audio]\ncapture_device = "bench_mic"\nplayback_device = "bench_spk"\n'
        f'[model]\nprovider = "{provider}"\n[session]\ndir = "{root / "sessions"}"\n'
    )
    env = dict(
        os.environ,
        HOME=str(home),
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_EC2_METADATA_DISABLED="true",
        OPENAI_API_KEY="sk-bench",
        PYTHONUNBUFFERED="1",
    )
    return env, cfg


def vm_hwm_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM")


def run_daemon(provider: str, idle_s: float) -> tuple[float, float]:
    """(seconds from spawn to 'ready', peak RSS MiB after idling idle_s) of `edgevoice run`."""
    with tempfile.TemporaryDirectory() as d:
        env, cfg = make_env(Path(d), provider)
        t0 = time.perf_counter()
        p = subprocess.Popen(
            [str(VENV_BIN / "edgevoice"), "run", "--config", str(cfg), "--input-pace", "1"],
            env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
        )
        try:
            assert p.stderr is not None
            ready = None
            for line in p.stderr:
                if "ready: first frame accepted" in line:
                    ready = time.perf_counter() - t0
                    break
            if ready is None:
                raise RuntimeError(f"edgevoice run ({provider}) exited before it was ready: rc={p.wait()}")
            time.sleep(idle_s)
            rss = vm_hwm_kib(p.pid) / 1024
        finally:
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        return ready, rss


def bare_import() -> tuple[float, float]:
    """(wall seconds, peak RSS MiB) of `python -c "import strands.bidi"`."""
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss across fork and exec, so a child would report ours.
    code = (
        "import strands.bidi\n"
        "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM:')][0])"
    )
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return time.perf_counter() - t0, int(out) / 1024
