"""One writer per session.dir: a second `edgevoice run` on the same store exits 2 naming the first one's
pid, the read-only `edgevoice sessions` views keep working, and the lock goes with its process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgevoice.commands.demo import speak_to_raw
from edgevoice.session.lock import StoreBusy, lock_store
from tests.alsa import AsoundRc

EDGEVOICE = str(Path(sys.executable).parent / "edgevoice")
HOLD = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY)
fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
print("locked", flush=True)
time.sleep(60)
"""


def setup_run(tmp_path: Path, text: str = "Hello.") -> tuple[Path, AsoundRc, int]:
    raw = tmp_path / "mic.raw"
    frames = speak_to_raw(text, "en-us", raw)
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    alsa = AsoundRc(home).capture("mic", raw).playback("spk", tmp_path / "out.raw")
    alsa.path.write_text("".join(alsa._parts), encoding="utf-8")  # a subprocess reads it at its first open
    cfg = tmp_path / "edgevoice.toml"
    cfg.write_text(
        f'[audio]\ncapture_device = "mic"\nplayback_device = "spk"\n[session]\ndir = "{tmp_path / "s"}"\n'
        'session_id = "kitchen"\n'
    )
    return cfg, alsa, frames


def run_args(cfg: Path, frames: int, pace: float = 4.0) -> list[str]:
    return [EDGEVOICE, "run", "--config", str(cfg), "--input-pace", str(pace), "--input-frames", str(frames)]


def test_a_second_daemon_exits_2_naming_the_holder(tmp_path: Path) -> None:
    cfg, alsa, frames = setup_run(tmp_path)
    store = tmp_path / "s"
    store.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(store)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        t0 = time.monotonic()
        r = subprocess.run(run_args(cfg, frames), capture_output=True, text=True, timeout=120, env=alsa.env())
        assert r.returncode == 2, r.stderr
        assert r.stderr.strip().splitlines()[-1] == (  # after the start-up log line: one line saying why
            f"edgevoice: session.dir {str(store)!r} is in use by another edgevoice (pid {holder.pid})"
        )
        assert "Traceback" not in r.stderr
        assert time.monotonic() - t0 < 10  # refused at once, before capture or the model start
        assert not (tmp_path / "out.raw").exists()  # it never played anything

        listed = subprocess.run(  # the read-only views do not need the lock
            [EDGEVOICE, "sessions", "--config", str(cfg), "list", "--json"], capture_output=True, text=True, timeout=60
        )
        assert listed.returncode == 0, listed.stderr
        assert [json.loads(line)["session_id"] for line in listed.stdout.splitlines()] == ["kitchen"]
    finally:
        holder.kill()
        holder.wait()
    # The kernel drops the lock with its process: the daemon runs now.
    r = subprocess.run(run_args(cfg, frames), capture_output=True, text=True, timeout=120, env=alsa.env())
    assert r.returncode == 0, r.stderr


def test_two_real_daemons_on_one_store(tmp_path: Path) -> None:
    first_dir, second_dir = tmp_path / "one", tmp_path / "two"
    first_dir.mkdir()
    second_dir.mkdir()
    cfg1, alsa1, frames1 = setup_run(first_dir, "My name is Alice.")
    cfg2, alsa2, frames2 = setup_run(second_dir, "My name is Bob.")
    cfg2.write_text(cfg1.read_text())  # the same session.dir
    log1 = first_dir / "stderr.txt"
    with open(log1, "w") as err:
        first = subprocess.Popen(run_args(cfg1, frames1, pace=1.0), stderr=err, env=alsa1.env())
    try:
        deadline = time.monotonic() + 60
        while "ready: first frame accepted" not in log1.read_text():
            assert first.poll() is None, log1.read_text()
            assert time.monotonic() < deadline, log1.read_text()
            time.sleep(0.1)
        second = subprocess.run(run_args(cfg2, frames2), capture_output=True, text=True, timeout=120, env=alsa2.env())
        assert second.returncode == 2, second.stderr
        assert f"is in use by another edgevoice (pid {first.pid})" in second.stderr
        assert first.wait(timeout=120) == 0, log1.read_text()
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    mdir = first_dir / "s" / "session_kitchen" / "agents" / "agent_edgevoice" / "messages"
    stored = [json.loads((mdir / f"message_{i}.json").read_text())["message"] for i in range(2)]
    assert sorted(p.name for p in mdir.iterdir()) == ["message_0.json", "message_1.json"]
    assert "Alice" in stored[1]["content"][0]["text"]  # the first daemon's conversation, untouched


def test_lock_in_process(tmp_path: Path) -> None:
    store = tmp_path / "new" / "sessions"
    lock = lock_store(store)  # creates the directory
    assert lock is not None and store.is_dir()
    with pytest.raises(StoreBusy, match=rf"is in use by another edgevoice \(pid {os.getpid()}\)"):
        lock_store(store)  # a second open file description conflicts, even in one process
    lock.release()
    with lock_store(store) as again:
        assert again is not None
