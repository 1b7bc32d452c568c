"""ALSA device names through real alsa-lib: a name nothing defines is a config error (exit 2); a defined
device whose card or file is absent is waited for, quietly; alsa-lib's own stderr goes through logging."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.alsa import AsoundRc, alsa_home

EDGEVOICE = str(Path(sys.executable).parent / "edgevoice")


@pytest.fixture
def alsa(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[AsoundRc]:
    yield from alsa_home(tmp_path, monkeypatch)


def write_config(tmp_path: Path, capture: str, playback: str, extra: str = "") -> Path:
    cfg = tmp_path / "edgevoice.toml"
    cfg.write_text(
        f'[audio]\ncapture_device = "{capture}"\nplayback_device = "{playback}"\n{extra}'
        f'[session]\ndir = "{tmp_path / "sessions"}"\n'
    )
    return cfg


def run_for(alsa: AsoundRc, args: list[str], seconds: float, sig: int = signal.SIGTERM) -> tuple[int, str]:
    """Start `edgevoice run ARGS`, signal it after `seconds`; (exit code, stderr)."""
    proc = subprocess.Popen([EDGEVOICE, "run", *args], stderr=subprocess.PIPE, text=True, env=alsa.env())
    try:
        time.sleep(seconds)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, err


@pytest.mark.parametrize("key", ["capture_device", "playback_device"])
def test_unknown_pcm_exits_2_naming_the_key_and_the_pcms_that_exist(
    alsa: AsoundRc, tmp_path: Path, key: str
) -> None:
    alsa.capture("mic", tmp_path / "in.raw").playback("spk", tmp_path / "out.raw").write()
    devices = {"capture_device": "mic", "playback_device": "spk"} | {key: "nosuch"}
    cfg = write_config(tmp_path, devices["capture_device"], devices["playback_device"])
    r = subprocess.run(
        [EDGEVOICE, "run", "--config", str(cfg)], capture_output=True, text=True, timeout=20, env=alsa.env()
    )
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert f"audio.{key}" in lines[0] and "'nosuch'" in lines[0]
    assert "mic" in lines[0] and "spk" in lines[0]  # the PCMs that do exist (alsaaudio.pcms)


def test_defined_or_not_is_told_apart_without_opening(alsa: AsoundRc, tmp_path: Path) -> None:
    from edgevoice.audio.alsalib import pcm_defined

    alsa.capture("mic", tmp_path / "missing.raw").raw('pcm.typo "nosuch"\npcm.alias "mic"\n').write()
    # Defined, even though opening each fails now: no card `Nope`, no input file, no card at all.
    for name in ("mic", "alias", "plughw:CARD=Nope,DEV=0", "hw:5,0", "default", "null"):
        assert pcm_defined(name), name
    for name in ("nosuch", "nosuch:FOO=1", "typo", "", " ", "mic "):
        assert not pcm_defined(name), name


@pytest.mark.parametrize("absent", ["card", "infile"])
def test_absent_device_is_retried_without_flooding_stderr(alsa: AsoundRc, tmp_path: Path, absent: str) -> None:
    """A USB mic not plugged in: today's retry with backoff, one warning, and alsa-lib's own message
    ("cannot get card index", "open ... failed") no longer printed on every try."""
    alsa.capture("mic", tmp_path / "missing.raw").playback("spk", tmp_path / "out.raw").write()
    device = "plughw:CARD=Nope,DEV=0" if absent == "card" else "mic"
    cfg = write_config(tmp_path, device, "spk", "reopen_max_s = 0.05\n")  # about 20 tries a second
    code, err = run_for(alsa, ["--config", str(cfg)], 3.0)
    assert code == 0, err
    lines = err.splitlines()
    assert sum("unavailable" in line for line in lines) == 1, err
    assert not [line for line in lines if line.startswith("ALSA lib")], err
    # About 60 failed opens in 3 s: the outage is one line (the start-up line names the device too).
    about_it = [line for line in lines if "Nope" in line or "missing.raw" in line or "alsa" in line.lower()]
    assert len(about_it) <= 2, err


def test_input_frames_ends_when_the_device_never_opens(alsa: AsoundRc, tmp_path: Path) -> None:
    from edgevoice.audio.capture import BOUNDED_OPEN_S

    alsa.capture("mic", tmp_path / "never.raw").playback("spk", tmp_path / "out.raw").write()
    cfg = write_config(tmp_path, "mic", "spk")
    t0 = time.monotonic()
    r = subprocess.run(
        [EDGEVOICE, "run", "--config", str(cfg), "--input-frames", "50", "--input-pace", "4"],
        capture_output=True, text=True, timeout=BOUNDED_OPEN_S + 25, env=alsa.env(),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert time.monotonic() - t0 < BOUNDED_OPEN_S + 20
    assert "did not open within" in r.stderr


HANDLER_SCRIPT = """
import logging, sys, alsaaudio
logging.basicConfig(level=logging.DEBUG, format="%(levelname)s %(name)s: %(message)s", stream=sys.stdout)
from edgevoice.audio import alsalib
assert alsalib.install_error_handler()
for _ in range(5):
    for name in ("nosuch", "mic"):
        try:
            alsaaudio.PCM(alsaaudio.PCM_CAPTURE, device=name)
        except alsaaudio.ALSAAudioError as e:
            print("refused", name, e)
print("done")
"""


def test_error_handler_rate_limits_into_logging_and_keeps_errno(alsa: AsoundRc, tmp_path: Path) -> None:
    """In a subprocess: alsa-lib's file plugin returns -errno right after reporting, so a handler that
    let Python clobber errno turned that failed open into a "success" and a segfault."""
    alsa.capture("mic", tmp_path / "missing.raw").write()
    r = subprocess.run(
        [sys.executable, "-c", HANDLER_SCRIPT], capture_output=True, text=True, timeout=30, env=alsa.env()
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stderr == ""  # nothing printed by alsa-lib itself
    out = r.stdout.splitlines()
    assert out[-1] == "done" and sum(line.startswith("refused") for line in out) == 10
    unknown = [line for line in out if "Unknown PCM nosuch" in line]
    infile = [line for line in out if "missing.raw" in line and "edgevoice.alsa" in line]
    assert len(unknown) == 1 and unknown[0].startswith("WARNING edgevoice.alsa: alsa-lib pcm.c:")
    assert len(infile) == 1 and "No such file or directory" in infile[0]  # formatted with its arguments


def test_repeats_are_counted_when_the_window_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    import logging

    from edgevoice.audio import alsalib

    seen: list[str] = []

    class Grab(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    handler = Grab()
    alsalib.log.addHandler(handler)
    clock = [1000.0]
    monkeypatch.setattr(alsalib.time, "monotonic", lambda: clock[0])
    try:
        for _ in range(4):
            alsalib._emit("x.c:1:(f)", "test message only for this test")
        clock[0] += alsalib.REPEAT_WINDOW_S + 1
        alsalib._emit("x.c:1:(f)", "test message only for this test")
    finally:
        alsalib.log.removeHandler(handler)
    assert len(seen) == 2 and "(3 more since it was last logged)" in seen[1]
