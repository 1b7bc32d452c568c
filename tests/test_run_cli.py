"""`edgevoice run` and the console script's edges: flags, signals, the version, the start-up line."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import edgevoice
from tests.alsa import AsoundRc, alsa_home

EDGEVOICE = str(Path(sys.executable).parent / "edgevoice")


@pytest.fixture
def alsa(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[AsoundRc]:
    yield from alsa_home(tmp_path, monkeypatch)


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([EDGEVOICE, *args], capture_output=True, text=True, timeout=60, env=env)


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "-inf", "fast"])
def test_bad_input_pace_is_one_line_naming_the_flag(value: str) -> None:
    r = cli("run", f"--input-pace={value}")  # `--input-pace -inf` is argparse's "expected one argument"
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "--input-pace" in lines[0] and "Traceback" not in r.stderr


@pytest.mark.parametrize("value", ["0", "-5", "1.5", "many"])
def test_bad_input_frames_is_one_line_naming_the_flag(value: str) -> None:
    r = cli("run", f"--input-frames={value}")
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "--input-frames" in lines[0] and "Traceback" not in r.stderr


@pytest.mark.parametrize("kind", ["file", "inside_a_file"])
def test_demo_dir_that_is_not_a_directory(tmp_path: Path, kind: str) -> None:
    f = tmp_path / "plain"
    f.write_text("x")
    d = f if kind == "file" else f / "sub"
    r = cli("demo", "--dir", str(d))
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "--dir" in lines[0] and str(d) in lines[0]


def test_version() -> None:
    r = cli("--version")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"edgevoice {edgevoice.__version__}"


def start_daemon(
    alsa: AsoundRc, tmp_path: Path, session_current: str | None = None
) -> tuple[subprocess.Popen[str], Path, Path]:
    """A daemon reading a file PCM at real time until signalled; stderr goes to a file."""
    raw = tmp_path / "silence.raw"
    raw.write_bytes(bytes(16000 * 2 * 5))  # a file PCM repeats stale data after the end: it never ends
    alsa.capture("mic", raw).playback("spk", tmp_path / "out.raw").write()
    sessions = tmp_path / "sessions"
    if session_current is not None:
        sessions.mkdir()
        (sessions / "current").write_text(session_current + "\n")
    cfg = tmp_path / "edgevoice.toml"
    cfg.write_text(
        f'[audio]\ncapture_device = "mic"\nplayback_device = "spk"\n[session]\ndir = "{sessions}"\n'
        'session_id = "kitchen"\n'
    )
    err = tmp_path / "stderr.txt"
    with err.open("w") as f:
        proc = subprocess.Popen(
            [EDGEVOICE, "run", "--config", str(cfg), "--input-pace", "1"], stderr=f, text=True, env=alsa.env()
        )
    return proc, err, cfg


def wait_for(path: Path, text: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in path.read_text():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{text!r} not seen: {path.read_text()}")
        time.sleep(0.05)


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 0)])
def test_signals_stop_cleanly_with_the_documented_code(
    alsa: AsoundRc, tmp_path: Path, sig: signal.Signals, code: int
) -> None:
    proc, err, _ = start_daemon(alsa, tmp_path)
    try:
        wait_for(err, "ready: first frame accepted")
        time.sleep(0.5)  # past start-up: Strands is being imported or the agent is running
        proc.send_signal(sig)
        assert proc.wait(timeout=30) == code, err.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = err.read_text()
    assert "stopped: {" in text and "Traceback" not in text  # the loop's clean stop ran


def test_start_up_line_names_config_devices_provider_and_session(alsa: AsoundRc, tmp_path: Path) -> None:
    proc, err, cfg = start_daemon(alsa, tmp_path, session_current="kitchen-20261129T120000Z")
    try:
        wait_for(err, "ready: first frame accepted")
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    starts = [line for line in err.read_text().splitlines() if "starting:" in line]
    assert len(starts) == 1, err.read_text()
    line = starts[0]
    assert line.startswith("INFO ")
    for part in (str(cfg), "capture mic", "playback spk", "provider local", "session kitchen-20261129T120000Z"):
        assert part in line, line


def test_start_up_line_says_embedded_defaults_without_a_file(monkeypatch: pytest.MonkeyPatch) -> None:
    import logging

    from edgevoice import config
    from edgevoice.commands import run

    monkeypatch.setattr(config, "DEFAULT_PATH", Path("/nonexistent/edgevoice.toml"))
    records: list[str] = []

    class Grab(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    handler = Grab(level=logging.INFO)
    run.log.addHandler(handler)
    run.log.setLevel(logging.INFO)
    try:
        run._log_start(None, config.Settings())
    finally:
        run.log.removeHandler(handler)
    assert records == [
        "starting: config embedded defaults, capture default, playback default, provider local, session default"
    ]
