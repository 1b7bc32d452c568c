"""systemd's notify protocol, watchdog and the status file, on a socket the test binds (no systemd here).

The daemon is the real `edgevoice run` on ALSA file PCMs: a subprocess for the whole sequence a unit sees
(STATUS before READY=1, READY=1 once audio flows, WATCHDOG=1 at a third of WATCHDOG_USEC, STOPPING=1 and
exit 0 on SIGTERM), and in this process for what can only be done from inside: blocking its event loop,
wedging its capture thread, hanging a session write. Each asserts the pings stop, and come back.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from edgevoice import config
from edgevoice.appliance.notify import Notifier, watchdog_interval_s
from edgevoice.appliance.status import Facts, Status, line, status_path
from edgevoice.appliance.watchdog import Watchdog, capture_check, store_check
from tests.alsa import AsoundRc, alsa_home
from tests.audiogen import speak, to_s16

EDGEVOICE = str(Path(sys.executable).parent / "edgevoice")


@pytest.fixture
def alsa(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[AsoundRc]:
    yield from alsa_home(tmp_path, monkeypatch)


class Manager:
    """The service manager's end: a bound AF_UNIX datagram socket; `messages` are (time, {key: value})."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.1)
        self.messages: list[tuple[float, dict[str, str]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            fields = dict(ln.split("=", 1) for ln in data.decode().splitlines())
            self.messages.append((time.monotonic(), fields))

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()

    def keys(self) -> list[str]:
        return [f"{k}={v}" if k != "WATCHDOG" else "WATCHDOG=1" for _, m in self.messages for k, v in m.items()]

    def pings(self) -> list[float]:
        return [t for t, m in self.messages if m.get("WATCHDOG") == "1"]

    def wait_for(self, key: str, value: str | None = None, timeout: float = 30.0) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for t, m in self.messages:
                if key in m and (value is None or m[key] == value):
                    return t
            time.sleep(0.02)
        raise AssertionError(f"no {key}={value} within {timeout} s; got {self.keys()}")


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[Manager]:
    m = Manager(tmp_path / "notify.sock")
    yield m
    m.close()


def daemon_config(alsa: AsoundRc, tmp_path: Path, speech: bytes = b"", seconds: float = 30) -> Path:
    mic = tmp_path / "mic.raw"
    mic.write_bytes(bytes(16000 * 2) + speech + bytes(int(16000 * 2 * seconds)))
    alsa.capture("mic", mic).playback("spk", tmp_path / "out.raw").write()
    cfg = tmp_path / "edgevoice.toml"
    cfg.write_text(
        f'[audio]\ncapture_device = "mic"\nplayback_device = "spk"\n'
        f'[session]\ndir = "{tmp_path / "sessions"}"\n[service]\nstatus_file = "{tmp_path / "run" / "status.json"}"\n'
    )
    return cfg


# --- the whole sequence, from outside ------------------------------------------------------------------


def test_the_daemon_tells_systemd_it_is_ready_alive_busy_and_stopping(
    alsa: AsoundRc, manager: Manager, tmp_path: Path
) -> None:
    speech = to_s16(speak("What is the date?", voice="en-gb+f3"))
    cfg = daemon_config(alsa, tmp_path, speech)
    env = {**alsa.env(), "NOTIFY_SOCKET": str(manager.path), "WATCHDOG_USEC": "600000"}  # 0.6 s: a ping each 0.2 s
    started = time.monotonic()
    p = subprocess.Popen(
        [EDGEVOICE, "run", "--config", str(cfg), "--input-pace", "1"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        ready = manager.wait_for("READY", "1")
        first_status = manager.wait_for("STATUS")
        assert first_status <= ready, "a STATUS line comes before (or with) READY=1"
        spoke = manager.wait_for("STATUS", "speaking", timeout=40)  # the local model answered the turn
        deadline = time.monotonic() + 30
        while not any(t > spoke and m.get("STATUS") == "idle" for t, m in manager.messages):
            assert time.monotonic() < deadline, manager.keys()
            time.sleep(0.05)
        # The status file says the same, and `edgevoice status` reads it.
        st = subprocess.run([EDGEVOICE, "status", "--config", str(cfg), "--json"], capture_output=True, text=True)
        assert st.returncode == 0, st.stderr
        data = json.loads(st.stdout)
        assert data["pid"] == p.pid and data["provider"] == "local" and data["session_id"] == "default"
        table = subprocess.run([EDGEVOICE, "status", "--config", str(cfg)], capture_output=True, text=True)
        assert table.returncode == 0 and "provider" in table.stdout and "local" in table.stdout
        time.sleep(1.0)
        p.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        rc = p.wait(timeout=10)
        stopped = time.monotonic()
    finally:
        if p.poll() is None:
            p.kill()
        stderr = p.stderr.read() if p.stderr else ""
    assert rc == 0, stderr
    assert stopped - signalled < 5.0
    manager.wait_for("STOPPING", "1", timeout=2)
    statuses = [m["STATUS"] for _, m in manager.messages if "STATUS" in m]
    assert statuses[0] == "starting"
    # (The offline model answers inside the gate's hangover, so `thinking` may never show.)
    assert statuses[1:5] == ["idle", "listening", "speaking", "idle"] or "thinking" in statuses, statuses
    # The transcript never reaches systemd.
    assert not any("date" in s for s in statuses)
    pings = [t for t in manager.pings() if ready - 1 <= t <= signalled]
    assert len(pings) >= 5, manager.keys()
    gaps = np.diff([ready, *pings, signalled])
    assert gaps.max() < 0.3 + 0.15, f"a watchdog gap of {gaps.max():.2f} s with WATCHDOG_USEC 0.6 s"
    assert started < ready
    # Gone with the daemon: a stale file would tell `status` a dead daemon is listening.
    assert not (tmp_path / "run" / "status.json").exists()
    st = subprocess.run([EDGEVOICE, "status", "--config", str(cfg)], capture_output=True, text=True)
    assert st.returncode == 3 and "not running" in st.stderr


def test_no_pings_for_a_watchdog_meant_for_another_process(alsa: AsoundRc, manager: Manager, tmp_path: Path) -> None:
    cfg = daemon_config(alsa, tmp_path)
    env = {**alsa.env(), "NOTIFY_SOCKET": str(manager.path), "WATCHDOG_USEC": "300000", "WATCHDOG_PID": "1"}
    p = subprocess.Popen(
        [EDGEVOICE, "run", "--config", str(cfg), "--input-pace", "1"], env=env, stderr=subprocess.DEVNULL
    )
    try:
        manager.wait_for("READY", "1")
        time.sleep(1.0)
    finally:
        p.terminate()
        assert p.wait(timeout=10) == 0
    assert manager.pings() == []


def test_without_notify_socket_nothing_is_sent_and_nothing_breaks(alsa: AsoundRc, tmp_path: Path) -> None:
    cfg = daemon_config(alsa, tmp_path)
    r = subprocess.run(
        [EDGEVOICE, "run", "--config", str(cfg), "--input-pace", "4", "--input-frames", "60"],
        env={k: v for k, v in alsa.env().items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr


# --- from inside: a blocked loop, a wedged capture thread, a hung write --------------------------------


def run_inside(cfg: Path, frames: int, during: object, notifier: Notifier) -> None:
    """`edgevoice run`'s own main in this process; `during(loop)` is called from a thread once it runs."""
    from edgevoice.commands import run as run_cmd

    settings = config.load(cfg)

    async def main() -> int:
        loop = asyncio.get_running_loop()
        threading.Thread(target=during, args=(loop,), daemon=True).start()  # type: ignore[arg-type]
        return await run_cmd._main(settings, 1.0, frames, notifier)

    assert asyncio.run(main()) == 0


def test_a_blocked_event_loop_stops_the_pings(alsa: AsoundRc, manager: Manager, tmp_path: Path) -> None:
    cfg = daemon_config(alsa, tmp_path)
    notifier = Notifier(str(manager.path), watchdog_s=0.1)
    blocked: list[float] = []

    def block(loop: asyncio.AbstractEventLoop) -> None:
        manager.wait_for("READY", "1")
        time.sleep(0.5)
        loop.call_soon_threadsafe(lambda: (blocked.append(time.monotonic()), time.sleep(1.5)))

    run_inside(cfg, 150, block, notifier)
    pings = manager.pings()
    during = [t for t in pings if blocked[0] < t < blocked[0] + 1.45]
    assert during == [], "pings went on while the loop was blocked"
    assert any(t > blocked[0] + 1.5 for t in pings), "pings came back once the loop ran again"


def test_a_stuck_capture_read_stops_the_pings(
    alsa: AsoundRc, manager: Manager, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An ALSA read that never returns (a wedged USB mic): the loop runs on, but the watchdog must not say so."""
    import alsaaudio

    from edgevoice.appliance import watchdog
    from edgevoice.daemon import voice

    cfg = daemon_config(alsa, tmp_path)
    monkeypatch.setattr(watchdog, "CAPTURE_STALL_S", 0.5)
    monkeypatch.setattr(watchdog.capture_check, "__defaults__", (0.5, time.monotonic))
    wedge = threading.Event()
    release = threading.Event()

    class Wedging:
        def __init__(self, *args: object, **kw: object) -> None:
            self.pcm = alsaaudio.PCM(*args, **kw)  # type: ignore[arg-type]

        def read(self) -> tuple[int, bytes]:
            if wedge.is_set():
                release.wait(10)
            return self.pcm.read()  # type: ignore[no-any-return]

        def info(self) -> dict[str, object]:
            return self.pcm.info()  # type: ignore[no-any-return]

        def close(self) -> None:
            self.pcm.close()

    made = voice.make_capture

    def make_capture(settings: config.Settings, **kw: object) -> object:
        capture = made(settings, **kw)  # type: ignore[arg-type]
        capture._opener = Wedging
        return capture

    monkeypatch.setattr(voice, "make_capture", make_capture)
    notifier = Notifier(str(manager.path), watchdog_s=0.1)
    marks: list[float] = []

    def wedge_it(loop: asyncio.AbstractEventLoop) -> None:
        manager.wait_for("READY", "1")
        time.sleep(0.5)
        marks.append(time.monotonic())
        wedge.set()
        time.sleep(2.0)
        marks.append(time.monotonic())
        release.set()

    run_inside(cfg, 150, wedge_it, notifier)
    pings = manager.pings()
    assert [t for t in pings if marks[0] + 0.8 < t < marks[1]] == [], "pings went on with capture stuck"
    assert any(t > marks[1] + 0.1 for t in pings), "pings came back once capture read again"


# --- the parts on their own -----------------------------------------------------------------------------


def test_watchdog_interval_is_a_third_of_the_timeout_and_only_for_this_pid() -> None:
    assert watchdog_interval_s({"WATCHDOG_USEC": "30000000"}) == pytest.approx(10.0)
    assert watchdog_interval_s({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}) == pytest.approx(10)
    assert watchdog_interval_s({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_interval_s({}) is None
    assert watchdog_interval_s({"WATCHDOG_USEC": "soon"}) is None
    assert watchdog_interval_s({"WATCHDOG_USEC": "0"}) is None


def test_notifier_reaches_an_abstract_socket_and_survives_a_missing_manager(tmp_path: Path) -> None:
    name = f"edgevoice-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(2)
    try:
        assert Notifier("@" + name).send("READY=1", "STATUS=idle")
        assert sock.recv(100) == b"READY=1\nSTATUS=idle"
    finally:
        sock.close()
    gone = Notifier(str(tmp_path / "nobody.sock"))
    assert gone.send("WATCHDOG=1") is False and gone.send("WATCHDOG=1") is False  # no raise, logged once
    with pytest.raises(ValueError):
        Notifier("@x").send("STATUS=two\nlines")


def test_from_environ_keeps_the_manager_from_children(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", "/run/systemd/notify")
    monkeypatch.setenv("WATCHDOG_USEC", "9000000")
    n = Notifier.from_environ()
    assert n.address == "/run/systemd/notify" and n.watchdog_s == pytest.approx(3.0)
    assert "NOTIFY_SOCKET" not in os.environ and "WATCHDOG_USEC" not in os.environ


def test_checks_name_what_is_stuck_and_the_watchdog_recovers(manager: Manager) -> None:
    now = [100.0]

    class Cap:
        heartbeat = 100.0
        ended = False

    cap = Cap()
    started: list[float | None] = [None]
    dog = Watchdog(
        Notifier(str(manager.path)),
        [capture_check(cap, 10, lambda: now[0]), store_check(lambda: started[0], 20, lambda: now[0])],
    )
    assert dog.tick()
    now[0] = 111.0
    assert not dog.tick() and dog.withheld == "the capture thread has been stuck for 11 s"
    cap.heartbeat = 111.0
    started[0] = 80.0
    assert not dog.tick() and dog.withheld == "a session write has not returned for 31 s"
    started[0] = None
    assert dog.tick() and dog.withheld is None
    cap.ended = True
    now[0] = 1000.0
    assert dog.tick(), "a capture that ended (bounded input) is not stuck"


def test_status_line_reads_like_the_issue_and_the_file_is_atomic(tmp_path: Path, manager: Manager) -> None:
    assert line(Facts(state="listening")) == "listening"
    assert line(Facts(state="offline", sync_backlog=3)) == "offline, 3 sessions waiting to sync"
    assert line(Facts(state="idle", storage="[Errno 30] Read-only file system")) == "idle, storage read-only"
    assert line(Facts(state="idle", connection="fallback", sync_backlog=1)) == (
        "idle, offline model answering, 1 session waiting to sync"
    )
    path = tmp_path / "run" / "status.json"
    s = Status(Notifier(str(manager.path)), str(path), provider="openai_realtime", session_id="s1")
    s.publish()
    s.update(state="offline", last_error="ConnectionLost: Authorization: Bearer sk-evtestQ7f3kZ9pLm2Xw8Rt5")
    data = json.loads(path.read_text())
    assert data["state"] == "offline" and data["session_id"] == "s1"
    assert "sk-evtest" not in data["last_error"] and "[REDACTED]" in data["last_error"]
    assert [p.name for p in path.parent.iterdir()] == ["status.json"]  # no temp file left
    manager.wait_for("STATUS", "offline")
    assert status_path("", {"RUNTIME_DIRECTORY": "/run/edgevoice:/run/other"}) == "/run/edgevoice/status.json"
    assert status_path("", {}) == "" and status_path("/x.json", {"RUNTIME_DIRECTORY": "/run/e"}) == "/x.json"


def test_a_missing_microphone_holds_ready_back_and_the_status_says_why(
    alsa: AsoundRc, manager: Manager, tmp_path: Path
) -> None:
    """A USB mic not plugged in at boot: the unit stays `activating` (no READY=1) with a STATUS that says
    what it waits for, and READY=1 comes once the device appears and audio flows."""
    cfg = daemon_config(alsa, tmp_path)
    mic = tmp_path / "mic.raw"
    mic.rename(tmp_path / "later.raw")  # a capture `file` PCM whose infile is missing does not open
    env = {**alsa.env(), "NOTIFY_SOCKET": str(manager.path), "WATCHDOG_USEC": "900000"}
    p = subprocess.Popen(
        [EDGEVOICE, "run", "--config", str(cfg), "--input-pace", "1"], env=env, stderr=subprocess.DEVNULL
    )
    try:
        manager.wait_for("STATUS", "starting, waiting for the microphone mic", timeout=30)
        time.sleep(1.0)
        assert not any("READY" in m for _, m in manager.messages)
        # systemd arms the watchdog only after READY=1: meanwhile the start timeout is extended, tick by tick.
        extends = [t for t, m in manager.messages if m.get("EXTEND_TIMEOUT_USEC") == "900000"]
        assert len(extends) >= 3, manager.keys()
        (tmp_path / "later.raw").rename(mic)
        ready = manager.wait_for("READY", "1", timeout=30)
        manager.wait_for("STATUS", "idle")
        time.sleep(0.5)
    finally:
        p.terminate()
        assert p.wait(timeout=10) == 0
    assert not [t for t, m in manager.messages if "EXTEND_TIMEOUT_USEC" in m and t > ready + 0.05]


# --- what systemctl status shows in trouble, end to end --------------------------------------------------


def test_offline_with_sessions_waiting_to_sync(alsa: AsoundRc, manager: Manager, tmp_path: Path) -> None:
    """A cloud model that cannot be reached (a closed port), no fallback, sync configured, two conversations
    from before on the flash: `offline, 3 sessions waiting to sync` (those two and the current one)."""
    cfg = daemon_config(alsa, tmp_path)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    for sid in ("monday", "tuesday"):
        d = tmp_path / "sessions" / f"session_{sid}"
        d.mkdir(parents=True)
        (d / "session.json").write_text(json.dumps({"session_id": sid, "session_type": "AGENT"}))
    cfg.write_text(
        cfg.read_text() + f'[model]\nprovider = "openai_realtime"\nendpoint = "ws://127.0.0.1:{port}/v1/realtime"\n'
        'fallback = "none"\n[sync]\nbucket = "fleet-bucket"\ndevice_id = "0123456789abcdef0123456789abcdef"\n'
    )
    env = {**alsa.env(), "NOTIFY_SOCKET": str(manager.path), "OPENAI_API_KEY": "sk-evtest-notify-0123456789"}
    p = subprocess.Popen(
        [EDGEVOICE, "run", "--config", str(cfg), "--input-pace", "1"], env=env, stderr=subprocess.DEVNULL
    )
    try:
        manager.wait_for("STATUS", "offline, 3 sessions waiting to sync", timeout=60)
        st = subprocess.run([EDGEVOICE, "status", "--config", str(cfg), "--json"], capture_output=True, text=True)
        data = json.loads(st.stdout)
        assert data["state"] == "offline" and data["sync_backlog"] == 3 and data["last_error"]
        assert "sk-evtest" not in st.stdout
    finally:
        p.terminate()
        assert p.wait(timeout=10) == 0


def test_a_read_only_flash_shows_in_the_status(alsa: AsoundRc, manager: Manager, tmp_path: Path) -> None:
    """Raspberry Pi OS remounts a failing card read-only: the speaker goes on, and says so."""
    from tests.tmpflash import read_only, small_tmpfs

    flash_gen = small_tmpfs(tmp_path)
    flash = next(flash_gen)
    try:
        cfg = daemon_config(alsa, tmp_path)
        cfg.write_text(cfg.read_text().replace(str(tmp_path / "sessions"), str(flash / "sessions")))
        (flash / "sessions").mkdir()
        read_only(flash, True)
        env = {**alsa.env(), "NOTIFY_SOCKET": str(manager.path)}
        p = subprocess.Popen(
            [EDGEVOICE, "run", "--config", str(cfg), "--input-pace", "1"], env=env, stderr=subprocess.DEVNULL
        )
        try:
            manager.wait_for("STATUS", "idle, storage read-only", timeout=60)
        finally:
            p.terminate()
            assert p.wait(timeout=10) == 0
            read_only(flash, False)
    finally:
        next(flash_gen, None)
