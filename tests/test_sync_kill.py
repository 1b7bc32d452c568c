"""`edgevoice sync --once` killed with SIGKILL at random points, over and over, while the store keeps growing:
every file still ends up in S3, once, with the checksum of its bytes, and the sync state never claims a file
S3 does not hold, nor reads as corrupt.

Two kinds of kill, from one seeded `random.Random` (set EDGEVOICE_KILL_SEED to replay a failure; the seed is
printed, and pytest shows it with the failure):

- 100 at a delay drawn uniformly over a whole run's life (1.2 x an uninterrupted run, measured first): in
  the interpreter's start, while listing, mid-upload, while saving the state, after the exit;
- 20 aimed: after the k-th request of a run reached S3, or while the run is writing its state file (found
  by its temp file; the runs of this phase get a slow `fsync`, 0.3 s, like a tired SD card, so that the
  kill lands inside the write and not after it).

S3 is moto, reached through `tests/s3proxy.py` in pass mode: the proxy counts the requests each run made
before it was killed. The bucket is versioned, so a file stored twice would show as two versions.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edgevoice.sync import state
from edgevoice.sync.bucket import Bucket, make_client
from edgevoice.sync.service import STALE_TEMP_S, Syncer
from tests.s3proxy import FaultProxy
from tests.s3server import client, s3_server
from tests.synctest import (
    ACCESS_KEY,
    SECRET,
    assert_all_in_s3,
    cli_env,
    confirmed_in_s3,
    edgevoice_exe,
    sessions,
    state_temps,
    sync_settings,
    versioned_bucket,
    write_config,
)
from tests.talk import converse

pytestmark = pytest.mark.timeout(240)

SEED = int(os.environ.get("EDGEVOICE_KILL_SEED", "20240611"))
KILLS = 100
AIMED = 20
SESSION = "kitchen"
NEWER = "hallway"
"""Sorts first: a run syncs it, and saves its state, before the long session."""
SLOW_FSYNC_S = 0.3
# `edgevoice sync` as its console script runs it, with every fsync made slow first: a real process, killed
# with SIGKILL like the other, whose state write lasts long enough to be hit.
SLOW_FLASH = (
    "import os, sys, time\n"
    "_fsync = os.fsync\n"
    f"os.fsync = lambda fd: (time.sleep({SLOW_FSYNC_S}), _fsync(fd))[1]\n"
    "from edgevoice.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


@pytest.fixture(scope="module")
def moto() -> Iterator[str]:
    with s3_server() as endpoint:
        versioned_bucket(endpoint)
        yield endpoint


@pytest.fixture
def proxy(moto: str) -> Iterator[FaultProxy]:
    with FaultProxy.to(moto) as p:
        yield p


class Runs:
    """Starts `edgevoice sync --once` runs and kills them; keeps the counts."""

    def __init__(self, cfg: Path, env: dict[str, str], err: Path, proxy: FaultProxy) -> None:
        self.cfg, self.env, self.err, self.proxy = cfg, env, err, proxy
        self.killed = 0
        self.after_requests = 0
        """Kills that landed after the run's first request reached S3."""
        self.exited = 0

    def start(self, *, slow_flash: bool = False) -> subprocess.Popen[bytes]:
        argv = [sys.executable, "-c", SLOW_FLASH] if slow_flash else [edgevoice_exe()]
        with self.err.open("wb") as err:
            return subprocess.Popen(
                [*argv, "sync", "--once", "--config", str(self.cfg)],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )

    def kill(self, proc: subprocess.Popen[bytes], requests_before: int) -> bool:
        """SIGKILL, unless the run has exited already (then it must have exited 0); True when killed."""
        seen = self.proxy.requests - requests_before
        proc.send_signal(signal.SIGKILL)  # polls first: a run that exited is not signalled (nor its pid reused)
        code = proc.wait(timeout=30)
        assert "cannot be used" not in self.err.read_text(), f"seed {SEED}: {self.err.read_text()}"
        if code == -signal.SIGKILL:
            self.killed += 1
            self.after_requests += seen > 0
            return True
        assert code == 0, f"seed {SEED}: a run exited {code} on its own:\n{self.err.read_text()}"
        self.exited += 1
        return False


def state_file_is_whole(session: Path) -> None:
    """The state on disk is absent or a complete version 1 state: never half of one (atomic writes)."""
    try:
        raw = state.state_path(session).read_bytes()
    except FileNotFoundError:
        return
    data = json.loads(raw)
    assert data["version"] == state.VERSION and isinstance(data["files"], dict), raw[:200]


def once(cfg: Path, env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([edgevoice_exe(), "sync", "--once", "--config", str(cfg)], env=env, capture_output=True)


def wait_for(cond: Callable[[], object], proc: subprocess.Popen[bytes], timeout_s: float = 15.0) -> bool:
    """Polls `cond()` every 2 ms until true (True), or the run exited or the time is up (False)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        if cond():
            return True
        time.sleep(0.002)
    return False


def test_kill_the_sync_process_at_random_points_and_every_file_still_ends_up_in_s3_once_with_its_checksum(
    moto: str, proxy: FaultProxy, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    print(f"seed {SEED} (EDGEVOICE_KILL_SEED={SEED} replays this run)")
    caplog.set_level(logging.WARNING, logger="edgevoice.sync.state")
    rng = random.Random(SEED)
    s3 = client(moto)
    store = tmp_path / "sessions"
    converse(store, SESSION, *(f"this is turn {i}" for i in range(10)))  # 20 messages, agent.json, session.json
    session = store / f"session_{SESSION}"
    env = cli_env(tmp_path / "home")

    # How long a run lives, uninterrupted, uploading the 22 files: the shortest of three on a copy of the
    # store, each into a folder of its own (a load spike on the machine must not stretch every draw).
    shutil.copytree(store, tmp_path / "measure")
    lives = []
    for n in range(3):
        state.forget(tmp_path / "measure" / f"session_{SESSION}")
        measure = write_config(tmp_path / "measure.toml", tmp_path / "measure", proxy.endpoint, f"measure-{n}")
        started = time.monotonic()
        run = once(measure, env)
        lives.append(time.monotonic() - started)
        assert run.returncode == 0 and run.stdout.startswith(b"sync: 22 uploaded, 0 "), run.stdout + run.stderr
    life_s = min(lives)
    print(f"an uninterrupted run uploading 22 files lives {life_s:.2f} s (of {', '.join(f'{t:.2f}' for t in lives)})")

    cfg = write_config(tmp_path / "kill.toml", store, proxy.endpoint, "kill")
    runs = Runs(cfg, env, tmp_path / "run.err", proxy)
    verified: set[tuple[object, ...]] = set()  # records already checked against the bucket
    turns = {SESSION: 0, NEWER: 0}

    def store_a_turn(session_id: str, why: str) -> None:
        converse(store, session_id, f"stored {why}, {turns[session_id]}")
        turns[session_id] += 1

    def after_kill() -> None:
        for path in sessions(store):
            state_file_is_whole(path)
            confirmed_in_s3(s3, "kill", path, verified)  # none marked synced early

    # Kills at uniformly random points of a run's life. The daemon stores a turn every five kills, in a newer
    # session and in the long one in turn (the newer sorts first: a run syncs it, and saves its state, before
    # the long one). A run after
    # a kill lives longer than the measured one (each confirmation the kill lost costs a PUT refused with
    # 412 and a HEAD), a run with nothing to upload shorter.
    for i in range(KILLS):
        before = proxy.requests
        proc = runs.start()
        started = time.monotonic()
        if i % 5 == 0 and i:  # while the run starts, or looks, or uploads
            store_a_turn(NEWER if i % 10 else SESSION, "while sync runs")
        delay = rng.uniform(0, 1.2 * life_s)
        time.sleep(max(0.0, started + delay - time.monotonic()))
        runs.kill(proc, before)
        after_kill()
    print(f"uniform: {runs.killed} killed ({runs.after_requests} after a request reached S3), {runs.exited} exited")
    # A run with nothing to upload lives about the interpreter's start (0.5 s of the 0.6 s measured), so
    # even when the long session got through early, most draws still land in a live run.
    assert runs.killed >= 40, f"seed {SEED}: only {runs.killed} of {KILLS} kills landed in a live run"

    # Aimed kills: each run has a new turn to upload; alternately killed after its k-th request, or while it
    # writes its state file (the newer session's, which sorts first: the run's first state write).
    killed, after_requests = runs.killed, runs.after_requests
    for i in range(AIMED):
        store_a_turn(NEWER if i % 2 else SESSION, "before an aimed kill")
        recorded = {path.name: state.load(path) for path in sessions(store)}
        temps = set(state_temps(store))
        before = proxy.requests
        proc = runs.start(slow_flash=True)
        if i % 2 == 0:
            k = rng.randint(1, 2)  # the run has two new messages to PUT at least
            hit = wait_for(lambda k=k, before=before: proxy.requests - before >= k, proc)
        else:
            hit = wait_for(lambda temps=temps: set(state_temps(store)) - temps, proc)
        assert hit, f"seed {SEED}: aimed kill {i} missed:\n{runs.err.read_text()}"
        assert runs.kill(proc, before), f"seed {SEED}: aimed kill {i} found the run gone"
        after_kill()
        if i % 2 == 1:  # killed inside the state write: the old states stand, whole, without the new turn
            assert {path.name: state.load(path) for path in sessions(store)} == recorded
            assert set(state_temps(store)) - temps  # the temp file the write was filling
    assert runs.killed - killed == AIMED and runs.after_requests - after_requests == AIMED
    assert runs.killed >= 60 and runs.after_requests >= AIMED + 1, f"seed {SEED}"

    # The network and the process are left alone at last: one run confirms everything.
    final = once(cfg, env)
    assert final.returncode == 0, f"seed {SEED}: {final.stderr.decode()}"
    assert SECRET.encode() not in final.stdout + final.stderr and ACCESS_KEY.encode() not in final.stderr
    assert len(state.session_files(session)) == 22 + 2 * turns[SESSION]
    assert len(state.session_files(store / f"session_{NEWER}")) == 2 + 2 * turns[NEWER]
    assert_all_in_s3(s3, "kill", store)  # byte for byte, ChecksumCRC32 of the bytes, one version, no extra key
    for path in sessions(store):
        assert confirmed_in_s3(s3, "kill", path) == len(state.session_files(path))
        state_file_is_whole(path)
        assert state.is_synced(path)
    corrupt = [r.getMessage() for r in caplog.records if "cannot be used" in r.getMessage()]
    assert not corrupt, f"seed {SEED}: a sync state read as corrupt: {corrupt}"
    left = len(state_temps(store))
    print(f"{runs.killed} kills in all, {runs.after_requests} mid-sync; temp files left in .sync/: {left}")


def test_a_temp_file_a_killed_state_write_left_in_the_sync_directory_is_removed_by_the_next_full_cycle(
    moto: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    store = tmp_path / "sessions"
    converse(store, SESSION, "hello")
    settings = sync_settings(moto, "temps")
    syncer = Syncer(store, Bucket(make_client(settings), settings, "dev-a", state.writer_id(store)))
    try:
        assert syncer.cycle(full=True).complete
        # What `atomic.write_bytes` leaves when killed between mkstemp and the rename: a whole or partial state.
        left = store / state.STATE_DIR / ".edgevoice_k1ll3d.tmp"
        left.write_bytes(state.state_path(store / f"session_{SESSION}").read_bytes()[:40])
        old = time.time() - STALE_TEMP_S - 1
        os.utime(left, (old, old))
        # One being written right now by another sync process (an operator's --once) is spared.
        live = store / state.STATE_DIR / ".edgevoice_l1ve.tmp"
        live.write_bytes(b"{")
        assert state_temps(store) == sorted([left.name, live.name])
        again = Syncer(store, syncer.bucket)  # the next start of the service: a full look
        try:
            assert again.cycle(full=True).complete
        finally:
            again.close()
    finally:
        syncer.close()
    assert state_temps(store) == [live.name]
